import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify } from 'jose';
import * as oidcClient from 'openid-client';
import { oidcKeysetPath, parseOidcKeyset, rotateOidcKeyset, type OidcKeysetFile } from '../adapters/oidc-keys';
import { startStack, type TestStack } from './harness';
import { agentKeysActorOf, emailLogin, lastMintRows, mintOidc, walletLogin, type WalletSession } from './mint-client';

const run = promisify(execFile);
const ROOT = join(__dirname, '..');
const TTL = 120;
const VERIFIER_CACHE = 600;

let stack: TestStack;
/** Shifts the API's clock (what the JWKS uses to drop retired keys). */
let apiClockShiftMs = 0;
let main: WalletSession;

before(async () => {
  stack = await startStack({
    env: {
      BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000',
      BROKER_OIDC_JWT_TTL_SECONDS: String(TTL),
      BROKER_OIDC_VERIFIER_CACHE_SECONDS: String(VERIFIER_CACHE),
      BROKER_OIDC_KEY_RECHECK_MS: '0',
    },
    apiDeps: { now: () => Date.now() + apiClockShiftMs },
  });
  main = await walletLogin(stack);
});
after(async () => {
  await stack?.stop();
});

const jwksUrl = () => new URL(`${stack.url}/.well-known/jwks.json`);

/** Verifies like an outside OIDC consumer: a fresh remote JWKS (no cache), audience sts.amazonaws.com. */
function verifyAsSts(jwt: string) {
  return jwtVerify(jwt, createRemoteJWKSet(jwksUrl()), { audience: 'sts.amazonaws.com', issuer: stack.url, algorithms: ['ES256'] });
}

void describe('OIDC issuer', () => {
  void test('discovery is consumed by openid-client and names the JWKS', async () => {
    const config = await oidcClient.discovery(new URL(stack.url), 'agentkeys-cli', undefined, undefined, { execute: [oidcClient.allowInsecureRequests] });
    const meta = config.serverMetadata();
    assert.equal(meta.issuer, stack.url);
    assert.equal(meta.jwks_uri, `${stack.url}/.well-known/jwks.json`);
    assert.deepEqual(meta.id_token_signing_alg_values_supported, ['ES256']);
    assert.deepEqual(meta.response_types_supported, ['id_token']);
    assert.deepEqual(meta.subject_types_supported, ['public']);
    assert.deepEqual(meta.scopes_supported, ['openid']);
    assert.deepEqual(meta.token_endpoint_auth_methods_supported, ['none']);
    for (const claim of [
      'iss',
      'sub',
      'aud',
      'iat',
      'exp',
      'nbf',
      'agentkeys_user_wallet',
      'agentkeys_child_wallet',
      'agentkeys_grant_id',
      'agentkeys_operation',
      'agentkeys_actor_omni',
      'https://aws.amazon.com/tags',
    ]) {
      assert.ok(meta.claims_supported?.includes(claim), `claims_supported lacks ${claim}`);
    }
  });

  void test('the JWKS holds public EC P-256 keys only', async () => {
    const res = await stack.request('GET', '/.well-known/jwks.json');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('cache-control') ?? '', /max-age=\d+/);
    const { keys } = res.body as { keys: Record<string, unknown>[] };
    assert.equal(keys.length, 1);
    for (const k of keys) {
      assert.deepEqual(Object.keys(k).sort(), ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
      assert.equal(k.kty, 'EC');
      assert.equal(k.crv, 'P-256');
      assert.equal(k.alg, 'ES256');
      assert.equal(k.use, 'sig');
    }
    const ready = await stack.request('GET', '/readyz', { token: stack.config.BROKER_OPS_TOKEN });
    const part = (ready.body as { parts: Record<string, { ok: boolean; detail?: string }> }).parts.oidc_keys;
    assert.equal(part?.ok, true, ready.text);
    assert.match(part?.detail ?? '', new RegExp(`active kid ${keys[0]?.kid as string}`));
  });
});

void describe('POST /v1/mint-oidc-jwt', () => {
  void test('a wallet account gets a JWT with exactly the docs/contracts.md §4 claims, verified against the served JWKS', async () => {
    const before = Math.floor(Date.now() / 1000);
    const minted = await mintOidc(stack, main.token);
    assert.deepEqual(Object.keys(minted).sort(), ['expiration', 'jwt', 'wallet']);
    assert.equal(minted.wallet, main.wallet.lower);

    const { payload, protectedHeader } = await verifyAsSts(minted.jwt);
    assert.equal(protectedHeader.alg, 'ES256');
    assert.equal(protectedHeader.typ, 'JWT');
    assert.ok(protectedHeader.kid);
    const w = main.wallet.lower;
    assert.deepEqual(Object.keys(payload).sort(), [
      'agentkeys_actor_omni',
      'agentkeys_user_wallet',
      'aud',
      'exp',
      'https://aws.amazon.com/tags',
      'iat',
      'iss',
      'nbf',
      'sub',
    ]);
    // AgentKeys' actor identifier of the wallet (lib/actor-omni.ts), not its OmniAccount.
    const actor = agentKeysActorOf('evm', w);
    assert.notEqual(actor, main.omni_account.slice(2));
    assert.equal(payload.agentkeys_actor_omni, actor);
    assert.equal(payload.iss, stack.url);
    assert.equal(payload.sub, `agentkeys:agent:${w}`);
    assert.equal(payload.aud, 'sts.amazonaws.com');
    assert.equal(payload.agentkeys_user_wallet, w);
    assert.deepEqual(payload['https://aws.amazon.com/tags'], {
      principal_tags: { agentkeys_user_wallet: [w], agentkeys_actor_omni: [actor] },
      transitive_tag_keys: ['agentkeys_user_wallet', 'agentkeys_actor_omni'],
    });
    assert.ok((payload.iat ?? 0) >= before - 1 && (payload.iat ?? 0) <= Math.floor(Date.now() / 1000) + 1);
    assert.equal(payload.nbf, payload.iat);
    assert.equal(payload.exp, (payload.iat ?? 0) + TTL);
    assert.equal(minted.expiration, payload.exp);

    // Audited before it was handed out: intent then ok, with a digest of the JWT and never the JWT.
    const rows = await lastMintRows(stack, main.omni_account);
    assert.deepEqual(
      rows.map((r) => [r.event, r.outcome]),
      [
        ['mint.oidc.intent', 'ok'],
        ['mint.oidc', 'ok'],
      ],
    );
    const ok = rows[1]?.details ?? {};
    assert.equal(ok.kid, protectedHeader.kid);
    assert.match(String(ok.jwt_hash), /^[0-9a-f]{32}$/);
    assert.equal(ok.wallet, w);
    const everything = JSON.stringify(rows);
    assert.ok(!everything.includes(minted.jwt) && !everything.includes(minted.jwt.split('.')[2] ?? '-'), 'the JWT is in the audit log');
    assert.ok(!everything.includes(main.token), 'the bearer is in the audit log');
  });

  void test('an account without an EVM wallet mints for its OmniAccount; sub, the wallet claim, the tags and the answer carry its bare actor', async () => {
    const session = await emailLogin(stack);
    const minted = await mintOidc(stack, session.token);
    const { payload } = await verifyAsSts(minted.jwt);
    // As AgentKeys' build_oidc_jwt_claims falls back: the bare actor, never a 0x (it breaks S3 prefix policies).
    const bare = agentKeysActorOf('email', session.email.toLowerCase());
    // The answer's wallet is what the credential names (AgentKeys' provisioner builds bots/<wallet>/ from it).
    assert.equal(minted.wallet, bare);
    assert.equal(bare, session.omni_account.slice(2)); // an email's actor is its OmniAccount
    assert.equal(payload.sub, `agentkeys:agent:${bare}`);
    assert.equal(payload.agentkeys_user_wallet, bare);
    assert.deepEqual(payload['https://aws.amazon.com/tags'], {
      principal_tags: { agentkeys_user_wallet: [bare], agentkeys_actor_omni: [bare] },
      transitive_tag_keys: ['agentkeys_user_wallet', 'agentkeys_actor_omni'],
    });
    assert.equal(payload.agentkeys_actor_omni, bare);
  });

  void test('a body is optional; an empty JSON body and unknown fields are accepted; a malformed one is a 400', async () => {
    const empty = await stack.request('POST', '/v1/mint-oidc-jwt', { token: main.token, headers: { 'content-type': 'application/json' }, body: '' });
    assert.equal(empty.status, 200, empty.text);
    const extra = await stack.request('POST', '/v1/mint-oidc-jwt', { token: main.token, body: { request_id: 'demo-1', intent: { service: 's3' } } });
    assert.equal(extra.status, 200, extra.text);
    const bad = await stack.request('POST', '/v1/mint-oidc-jwt', { token: main.token, body: '{"grant_id":' });
    assert.equal(bad.status, 400, bad.text);
    assert.equal((bad.body as { error: string }).error, 'bad_request');
  });

  void test('without a valid bearer: 401 and nothing minted or audited', async () => {
    const before = await stack.db.query("SELECT count(*) AS n FROM audit_log WHERE event LIKE 'mint.%'");
    const attempts: Record<string, string>[] = [{}, { authorization: 'Bearer nope' }, { authorization: 'Basic abc' }];
    for (const headers of attempts) {
      const res = await stack.request('POST', '/v1/mint-oidc-jwt', { headers });
      assert.equal(res.status, 401, res.text);
      assert.equal((res.body as { error: string }).error, 'unauthorized');
    }
    const after = await stack.db.query("SELECT count(*) AS n FROM audit_log WHERE event LIKE 'mint.%'");
    assert.deepEqual(after.rows, before.rows);
  });
});

void describe('session and OIDC keys are separate', () => {
  void test('a session token does not verify against the published OIDC keys, and an OIDC JWT is no bearer', async () => {
    const sessionKid = decodeProtectedHeader(main.token).kid;
    const { keys } = (await stack.request('GET', '/.well-known/jwks.json')).body as { keys: { kid: string }[] };
    assert.ok(!keys.some((k) => k.kid === sessionKid), 'the session key is published in the OIDC JWKS');
    await assert.rejects(jwtVerify(main.token, createRemoteJWKSet(jwksUrl())), joseErrors.JWKSNoMatchingKey);

    const minted = await mintOidc(stack, main.token);
    const asBearer = await stack.request('POST', '/v1/mint-oidc-jwt', { token: minted.jwt });
    assert.equal(asBearer.status, 401, asBearer.text);
    const me = await stack.request('GET', '/v1/session/me', { token: minted.jwt });
    assert.equal(me.status, 401, me.text);
  });
});

void describe('key rotation', () => {
  void test('the new key signs; a token signed before rotation verifies until the retired key is dropped', async () => {
    const before = await mintOidc(stack, main.token);
    const oldKid = decodeProtectedHeader(before.jwt).kid;

    const rotated = await run(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts/oidc-rotate.ts')], { cwd: ROOT, env: stack.childEnv() });
    assert.match(rotated.stdout, new RegExp(`retired kid ${oldKid}`));

    // Served without a restart: both keys published, the new one first.
    const { keys } = (await stack.request('GET', '/.well-known/jwks.json')).body as { keys: { kid: string }[] };
    assert.equal(keys.length, 2);
    assert.equal(keys[1]?.kid, oldKid);
    const newKid = keys[0]?.kid;
    assert.notEqual(newKid, oldKid);

    const afterRotation = await mintOidc(stack, main.token);
    assert.equal(decodeProtectedHeader(afterRotation.jwt).kid, newKid, 'the worker still signs with the retired key');
    await verifyAsSts(afterRotation.jwt);
    await verifyAsSts(before.jwt);

    // The retired key stays published for TTL + verifier cache time after the rotation, then goes.
    const file = JSON.parse(await readFile(oidcKeysetPath(stack.config), 'utf8')) as OidcKeysetFile;
    const retired = file.keys.find((k) => k.jwk.kid === oldKid);
    assert.ok(retired?.retired_at && retired.drop_after);
    assert.equal(Date.parse(retired.drop_after) - Date.parse(retired.retired_at), (TTL + VERIFIER_CACHE) * 1000);
    assert.ok(
      Date.parse(retired.drop_after) >= decodeJwt(before.jwt).exp! * 1000 + VERIFIER_CACHE * 1000,
      'dropped before its last token expired plus the cache time',
    );

    apiClockShiftMs = Date.parse(retired.drop_after) - Date.now() - 5_000;
    // Only the JWKS's clock is shifted: jose checks the token's exp on the real clock.
    await verifyAsSts(before.jwt);
    apiClockShiftMs = Date.parse(retired.drop_after) - Date.now() + 1_000;
    const later = (await stack.request('GET', '/.well-known/jwks.json')).body as { keys: { kid: string }[] };
    assert.deepEqual(
      later.keys.map((k) => k.kid),
      [newKid],
    );
    await assert.rejects(verifyAsSts(before.jwt), joseErrors.JWKSNoMatchingKey);
    apiClockShiftMs = 0;

    // A later rotation prunes keys past their drop_after from the file (on a copy of it).
    const copy = join(await mkdtemp(join(tmpdir(), 'akb-oidc-')), 'oidc-keys.json');
    await writeFile(copy, JSON.stringify(file));
    const pruned = await rotateOidcKeyset(copy, { retentionSeconds: TTL + VERIFIER_CACHE, nowMs: Date.parse(retired.drop_after) + 1 });
    assert.deepEqual(pruned.dropped, [oldKid]);
    assert.equal(pruned.retiredKid, newKid);
    const kept = await parseOidcKeyset(await readFile(copy, 'utf8'), copy);
    assert.deepEqual(
      kept.entries.map((e) => e.jwk.kid),
      [pruned.activeKid, newKid],
    );
    await rm(dirname(copy), { recursive: true, force: true });
  });
});
