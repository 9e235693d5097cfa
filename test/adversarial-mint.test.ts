import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { verifyAuditChain } from '../db/audit-query';
import { generateTeeKeyPair, signTeeJwt, teeClaims, type TeeKeyPair } from '../fixtures/tee/jwt';
import { bindAgent } from './grant-client';
import { startStack, type TestStack } from './harness';
import { assertRefused, expectAllRefused as expectRefusals, spyWorkflowStarts, type RefusalCase, type WorkflowStartSpy } from './adversarial-probes';
import { expiredSession, forgedBearers } from './adversarial-tokens';
import { auditRowsOf, mintOidc, type WalletSession, walletLogin } from './mint-client';

/**
 * POST /v1/mint-oidc-jwt and /v1/mint-aws-creds against malformed, oversized, expired, replayed,
 * forged and concurrent input. A refusal is a clear 4xx that writes no audit row, starts no mint
 * workflow and never reaches STS; concurrent mints each get their own audit pair on an intact chain.
 */

const MAX_DURATION = 7200;
const MINTS = ['/v1/mint-oidc-jwt', '/v1/mint-aws-creds'] as const;
let stack: TestStack;
let tee: TeeKeyPair;
let main: WalletSession;
let starts: WorkflowStartSpy;

before(async () => {
  tee = await generateTeeKeyPair();
  stack = await startStack({
    env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000', BROKER_TEE_JWT_PUBLIC_KEY: tee.publicKeyPem, BROKER_STS_SESSION_DURATION_SECONDS: String(MAX_DURATION) },
  });
  stack.sts.setJwksUrl(`${stack.url}/.well-known/jwks.json`);
  main = await walletLogin(stack);
  starts = spyWorkflowStarts(stack.temporal);
});
after(async () => {
  starts?.restore();
  await stack?.stop();
});

const nowS = () => Math.floor(Date.now() / 1000);
const assumeCalls = () => stack.sts.calls().filter((c) => c.action === 'AssumeRoleWithWebIdentity').length;

/** Refusals of a mint: besides the usual checks, no credential in the answer and STS untouched. */
const expectAllRefused = (cases: RefusalCase[]) =>
  expectRefusals(
    {
      stack,
      starts,
      eachAnswer: (res, c) =>
        assert.ok(!/eyJ[\w-]+\.[\w-]+\.[\w-]+/.test(res.text) && !/ASIA[A-Z2-7]{16}/.test(res.text), `${c.name}: a credential in a refusal`),
      counters: { 'STS AssumeRoleWithWebIdentity calls': assumeCalls },
    },
    cases,
  );

/** Mint rows per request_id of one account: [event, outcome] pairs in seq order. */
async function mintPairs(omni: string): Promise<Map<string, [string, string][]>> {
  const pairs = new Map<string, [string, string][]>();
  for (const r of await auditRowsOf(stack, omni)) {
    if (!r.event.startsWith('mint.') || !r.request_id) continue;
    pairs.set(r.request_id, [...(pairs.get(r.request_id) ?? []), [r.event, r.outcome]]);
  }
  return pairs;
}

void describe('mint: malformed input', () => {
  void test('grant_id that is no grant id → 400 at the edge: no workflow, no audit row', async () => {
    const bad: [string, unknown][] = [
      ['empty', ''],
      ['free text', 'not-a-grant'],
      ['31 hex digits', `grt_${'a'.repeat(31)}`],
      ['upper-case hex', `grt_${'A'.repeat(32)}`],
      ['128 characters', `grt_${'a'.repeat(124)}`],
      ['129 characters', 'g'.repeat(129)],
      ['SQL', "grt_' OR '1'='1"],
      ['a number', 42],
      ['null', null],
      ['an array', [`grt_${'a'.repeat(32)}`]],
      ['an object', { id: `grt_${'a'.repeat(32)}` }],
    ];
    await expectAllRefused(
      MINTS.flatMap((path) =>
        bad.map(([name, grant_id]) => ({ name, path, token: main.token, body: { grant_id }, status: 400, error: 'bad_request', message: /grant_id/ })),
      ),
    );
  });

  void test('duration_seconds out of range or not an integer → 400: no workflow, no audit row, no STS call', async () => {
    const bad: unknown[] = [0, -1, -900, 899, MAX_DURATION + 1, 43_201, 900.5, '900', null, true, [900], Number.MAX_SAFE_INTEGER + 2];
    await expectAllRefused([
      ...bad.map((duration_seconds) => ({
        name: `duration_seconds ${JSON.stringify(duration_seconds)}`,
        path: '/v1/mint-aws-creds',
        token: main.token,
        body: { duration_seconds },
        status: 400,
        error: 'bad_request',
        message: /duration_seconds/,
      })),
      {
        name: 'duration_seconds 1e400',
        path: '/v1/mint-aws-creds',
        token: main.token,
        body: '{"duration_seconds":1e400}',
        status: 400,
        error: 'bad_request',
        message: /duration_seconds/,
      },
    ]);
  });

  void test('bodies that are no mint request → 4xx: no workflow, no audit row', async () => {
    const cases = MINTS.flatMap((path): RefusalCase[] => [
      { name: 'malformed JSON', path, token: main.token, body: '{"grant_id":', status: 400, error: 'bad_request' },
      { name: 'a JSON array', path, token: main.token, body: '[]', status: 400, error: 'bad_request' },
      { name: 'a JSON string', path, token: main.token, body: '"mint"', status: 400, error: 'bad_request' },
      { name: 'a JSON number', path, token: main.token, body: '7', status: 400, error: 'bad_request' },
      { name: '__proto__ key', path, token: main.token, body: '{"__proto__":{"grant_id":"x"}}', status: 400, error: 'bad_request' },
      { name: 'constructor.prototype', path, token: main.token, body: '{"constructor":{"prototype":{"x":1}}}', status: 400, error: 'bad_request' },
      {
        name: 'text/plain',
        path,
        token: main.token,
        body: 'grant_id=x',
        headers: { 'content-type': 'text/plain' },
        status: 415,
        error: 'bad_request',
        message: /JSON/,
      },
    ]);
    await expectAllRefused(cases);
  });
});

void describe('mint: oversized', () => {
  void test('a body over the 16 KB limit → 413 (401 first without a bearer): no workflow, no audit row', async () => {
    const big = { grant_id: `grt_${'a'.repeat(32)}`, padding: 'x'.repeat(16 * 1024) };
    const huge = { padding: 'x'.repeat(2 * 1024 * 1024) };
    await expectAllRefused(
      MINTS.flatMap((path): RefusalCase[] => [
        { name: 'just over 16 KB', path, token: main.token, body: big, status: 413, error: 'payload_too_large' },
        { name: '2 MB', path, token: main.token, body: huge, status: 413, error: 'payload_too_large' },
        // The bearer is checked before the body is read: no one parses megabytes for a stranger.
        { name: '2 MB without a bearer', path, body: huge, status: 401, error: 'unauthorized' },
        { name: 'a 9 KB bearer', path, headers: { authorization: `Bearer ${'a'.repeat(9000)}.b.c` }, status: 401, error: 'unauthorized', message: /too long/ },
      ]),
    );
  });
});

void describe('mint: expired, forged and replayed bearers', () => {
  void test('forged, expired, logged-out, OIDC and TEE id bearers → 401: no workflow, no audit row, no STS call', async () => {
    const victim = await walletLogin(stack);
    const oidcJwt = (await mintOidc(stack, victim.token)).jwt;
    const expired = await expiredSession(stack, { omniAccount: victim.omni_account, wallet: victim.wallet.lower });
    const loggedOut = await walletLogin(stack, victim.wallet);
    assert.equal((await stack.request('POST', '/v1/session/logout', { token: loggedOut.token })).status, 204);
    const teeId = signTeeJwt(tee.privateKey, teeClaims(victim.omni_account, 'id', 'agentkeys', nowS()));
    const teeOtherKey = signTeeJwt((await generateTeeKeyPair()).privateKey, teeClaims(victim.omni_account, 'access', 'agentkeys', nowS()));
    const teeExpired = signTeeJwt(tee.privateKey, { ...teeClaims(victim.omni_account, 'access', 'agentkeys', nowS()), exp: nowS() - 1 });
    const bearers = [
      ...(await forgedBearers(stack, victim.token)),
      { name: 'expired (signed by the broker, session row live)', token: expired, message: /token expired/ },
      { name: 'replayed after logout', token: loggedOut.token, message: /logged out/ },
      { name: 'an OIDC JWT the broker minted', token: oidcJwt, message: /SIGNATURE_VERIFICATION_FAILED/ },
      { name: 'a TEE id token', token: teeId, message: /typ "id"/ },
      { name: 'a TEE access token by another RSA key', token: teeOtherKey, message: /TEE token refused/ },
      { name: 'an expired TEE access token', token: teeExpired, message: /TEE token refused.*expired/ },
    ];
    await expectAllRefused(
      MINTS.flatMap((path) =>
        bearers.map((b) => ({ name: b.name, path, token: b.token, body: { duration_seconds: 900 }, status: 401, error: 'unauthorized', message: b.message })),
      ),
    );
    // Positive controls: the victim's live session and a TEE access token of the same account mint.
    assert.equal((await mintOidc(stack, victim.token)).wallet, victim.wallet.lower);
    const teeAccess = signTeeJwt(tee.privateKey, teeClaims(victim.omni_account, 'access', 'agentkeys', nowS()));
    assert.equal((await mintOidc(stack, teeAccess)).wallet, victim.wallet.lower);
  });

  void test('a replayed mint request is a new, separately audited mint (nothing is deduplicated into a shared answer)', async () => {
    const before = await mintPairs(main.omni_account);
    const first = await mintOidc(stack, main.token, { request_id: 'cli-retry-1' });
    const second = await mintOidc(stack, main.token, { request_id: 'cli-retry-1' });
    assert.notEqual(first.jwt, second.jwt);
    const after = await mintPairs(main.omni_account);
    const fresh = [...after].filter(([id]) => !before.has(id));
    assert.equal(fresh.length, 2);
    for (const [, rows] of fresh) {
      assert.deepEqual(rows, [
        ['mint.oidc.intent', 'ok'],
        ['mint.oidc', 'ok'],
      ]);
    }
  });
});

void describe('mint: concurrent', () => {
  void test('10 concurrent OIDC and 10 concurrent AWS mints: 20 answers, 20 distinct audit pairs, the chain intact', async () => {
    const session = await walletLogin(stack);
    stack.sts.clear();
    const results = await Promise.all([
      ...Array.from({ length: 10 }, () => stack.request('POST', '/v1/mint-oidc-jwt', { token: session.token })),
      ...Array.from({ length: 10 }, () => stack.request('POST', '/v1/mint-aws-creds', { token: session.token, body: { duration_seconds: 900 } })),
    ]);
    for (const r of results) assert.equal(r.status, 200, r.text);
    const jwts = new Set(results.slice(0, 10).map((r) => (r.body as { jwt: string }).jwt));
    const keys = new Set(results.slice(10).map((r) => (r.body as { access_key_id: string }).access_key_id));
    assert.equal(jwts.size, 10);
    assert.equal(keys.size, 10);
    assert.equal(assumeCalls(), 10);

    const pairs = await mintPairs(session.omni_account);
    assert.equal(pairs.size, 20);
    const byKind = { oidc: 0, aws: 0 };
    for (const rows of pairs.values()) {
      const kind = rows[0]?.[0] === 'mint.oidc.intent' ? 'oidc' : 'aws';
      byKind[kind] += 1;
      assert.deepEqual(rows, [
        [`mint.${kind}.intent`, 'ok'],
        [`mint.${kind}`, 'ok'],
      ]);
    }
    assert.deepEqual(byKind, { oidc: 10, aws: 10 });
    const okKeys = (await auditRowsOf(stack, session.omni_account)).filter((r) => r.event === 'mint.aws').map((r) => r.details.access_key_id);
    assert.deepEqual(new Set(okKeys), keys, 'each issued access key has its own ok row');
    const chain = await verifyAuditChain(stack.db);
    assert.ok(chain.ok, JSON.stringify(chain));
  });

  void test('mints racing a logout: each is either a 200 with its audit pair or a 401 with nothing; afterwards 401', async () => {
    const session = await walletLogin(stack);
    const mints = Array.from({ length: 10 }, () => stack.request('POST', '/v1/mint-oidc-jwt', { token: session.token }));
    const logout = stack.request('POST', '/v1/session/logout', { token: session.token });
    const [results, out] = await Promise.all([Promise.all(mints), logout]);
    assert.equal(out.status, 204, out.text);
    const ok = results.filter((r) => r.status === 200).length;
    for (const r of results) if (r.status !== 200) assertRefused(r, 401, 'unauthorized', /logged out/);
    const pairs = await mintPairs(session.omni_account);
    assert.equal(pairs.size, ok, 'an audit pair per minted token, none for a refused one');
    for (const rows of pairs.values())
      assert.deepEqual(
        rows.map(([, o]) => o),
        ['ok', 'ok'],
      );
    assertRefused(await stack.request('POST', '/v1/mint-oidc-jwt', { token: session.token }), 401, 'unauthorized', /logged out/);
  });

  void test('agent mints racing the grant’s revocation: each is a 200 under the grant or a 403 denied, each audited once', async () => {
    const owner = await walletLogin(stack);
    const agent = await walletLogin(stack);
    const grantId = await bindAgent(stack, owner.token, agent.wallet);
    const mints = Array.from({ length: 10 }, () => stack.request('POST', '/v1/mint-oidc-jwt', { token: agent.token, body: { grant_id: grantId } }));
    const revoke = stack.request('DELETE', `/v1/grants/${grantId}`, { token: owner.token });
    const [results, revoked] = await Promise.all([Promise.all(mints), revoke]);
    assert.equal(revoked.status, 204, revoked.text);
    for (const r of results) {
      if (r.status === 200) assert.equal((r.body as { wallet: string }).wallet, owner.wallet.lower);
      else assertRefused(r, 403, 'forbidden', /not an active grant/);
    }
    const pairs = await mintPairs(agent.omni_account);
    assert.equal(pairs.size, 10);
    const outcomes = [...pairs.values()].map((rows) => rows.map(([e, o]) => `${e}:${o}`).join(' '));
    assert.equal(outcomes.filter((o) => o === 'mint.oidc.intent:ok mint.oidc:ok').length, results.filter((r) => r.status === 200).length);
    assert.equal(outcomes.filter((o) => o === 'mint.oidc:denied').length, results.filter((r) => r.status === 403).length);
    // After the revocation every mint is refused.
    assertRefused(await stack.request('POST', '/v1/mint-oidc-jwt', { token: agent.token, body: { grant_id: grantId } }), 403, 'forbidden');
  });
});
