import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CompactEncrypt, compactDecrypt, createLocalJWKSet, importJWK, jwtVerify, type JSONWebKeySet } from 'jose';
import type { Payload } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { AUDIT_HEAD_TYP } from '../lib/audit-head';
import { verifySessionToken } from '../lib/session-token';
import { createSealKeyPair, sealJson, unsealJson, type SealPublicJwk } from '../lib/seal';
import { latestCode, requestCode, submitCode, uniqueEmail } from './email-login-client';
import { collectPayloads, decodeThroughCodec } from './codec-client';
import { startStack, type TestStack } from './harness';
import { auditRowsOf, mintAws, mintOidc, walletLogin, type Session } from './mint-client';
import { REPLAY_TEST_ONLY_ENV } from './replay-keys';
import { newWallet } from './wallet-client';

/**
 * Issue: nothing usable in Temporal history, not even for operators. Runs every flow that hands
 * something out, then reads every payload of every history on the task queue the way an operator
 * would — through the codec endpoint with the ops token — and looks for anything that works as a
 * credential: a session token or OIDC JWT that verifies against the broker's keys, an AWS secret,
 * an email code, or any bearer the API handed out.
 */

const OPS_TOKEN = `ops-${randomBytes(24).toString('hex')}`;
let stack: TestStack;

before(async () => {
  // The recorded histories' (public, test-only) payload key: the codec endpoint then opens them too.
  stack = await startStack({ env: { ...REPLAY_TEST_ONLY_ENV, BROKER_OPS_TOKEN: OPS_TOKEN } });
});
after(async () => {
  await stack?.stop();
});

const decodeAsOperator = (payloads: Payload[]) => decodeThroughCodec(stack, OPS_TOKEN, payloads);

async function historyTexts(workflowIds: string[]): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const id of workflowIds) {
    const history = await stack.temporal.workflow.getHandle(id).fetchHistory();
    out.set(id, await decodeAsOperator(collectPayloads(history.events)));
  }
  return out;
}

async function flowIdsOnQueue(minimum: number): Promise<string[]> {
  let ids: string[] = [];
  for (let i = 0; i < 100; i++) {
    ids = [];
    for await (const w of stack.temporal.workflow.list({ query: `TaskQueue = '${stack.config.BROKER_TASK_QUEUE}'` })) ids.push(w.workflowId);
    if (ids.length >= minimum) return ids;
    await new Promise((r) => setTimeout(r, 100)); // visibility is eventually consistent
  }
  return ids;
}

const COMPACT_JWS = /[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{20,}/g;

void describe('what flows hand out is sealed: nothing usable in history', () => {
  void test('every history of every login and mint, decoded with the ops token, holds no working credential', async () => {
    const handedOut: string[] = [];

    // Email login (code + session).
    const email = uniqueEmail('sealed');
    const { request_id } = await requestCode(stack, email);
    const code = await latestCode(stack, email);
    const emailRes = await submitCode(stack, request_id, code);
    assert.equal(emailRes.status, 200, emailRes.text);
    const emailSession = emailRes.body as Session;
    handedOut.push(emailSession.token);

    // Wallet login by SIWE challenge (a workflow), and the stateless form.
    const w = newWallet();
    const ch = await stack.request('POST', '/v1/session/wallet_challenge', { body: { address: w.address, format: 'siwe' } });
    assert.equal(ch.status, 200, ch.text);
    const { request_id: challengeId, message } = ch.body as { request_id: string; message: string };
    const siwe = await stack.request('POST', '/v1/session/wallet_login', { body: { request_id: challengeId, signature: await w.sign(message) } });
    assert.equal(siwe.status, 200, siwe.text);
    handedOut.push((siwe.body as Session).token);
    const walletSession = await walletLogin(stack, w);
    handedOut.push(walletSession.token);

    // Both mints.
    const oidc = await mintOidc(stack, walletSession.token);
    const aws = await mintAws(stack, walletSession.token);
    handedOut.push(oidc.jwt, aws.secret_access_key, aws.session_token);

    // What was handed out works (the scan below would be vacuous otherwise).
    const me = await stack.request('GET', '/v1/session/me', { token: emailSession.token });
    assert.equal(me.status, 200, me.text);
    const jwks = createLocalJWKSet((await stack.request('GET', '/.well-known/jwks.json')).body as JSONWebKeySet);
    await jwtVerify(oidc.jwt, jwks, { issuer: stack.config.publicUrl });

    const ids = await flowIdsOnQueue(4);
    assert.ok(
      ids.some((id) => id.startsWith('email-login/')),
      `an email flow is listed: ${ids.join(', ')}`,
    );
    assert.ok(
      ids.some((id) => id.startsWith('wallet-login/')),
      'a wallet flow is listed',
    );
    assert.ok(ids.filter((id) => id.startsWith('mint/')).length >= 2, 'both mint flows are listed');
    const texts = await historyTexts(ids);

    let decodedPayloads = 0;
    let sealedResults = 0;
    for (const [id, payloadTexts] of texts) {
      for (const text of payloadTexts) {
        decodedPayloads++;
        for (const secret of handedOut) assert.ok(!text.includes(secret), `${id}: a handed-out credential is in the history`);
        assert.ok(!text.includes(`"${code}"`), `${id}: the email code is in the history`);
        assert.doesNotMatch(text, /secret_?access_?key|session_?token"|"token"/i, `${id}: ${text.slice(0, 200)}`);
        for (const candidate of text.match(COMPACT_JWS) ?? []) {
          await assert.rejects(verifySessionToken(stack.secrets.sessionKey, candidate, stack.config.publicUrl), `${id}: a session token that verifies`);
          await assert.rejects(jwtVerify(candidate, jwks), `${id}: an OIDC JWT that verifies`);
        }
        if (/"sealed":"[^"]+"/.test(text)) sealedResults++;
      }
    }
    assert.ok(decodedPayloads > 20, `the scan read the histories (${decodedPayloads} payloads)`);
    // The two mint results and what the mint activities returned are JWEs.
    assert.ok(sealedResults >= 4, `sealed results found: ${sealedResults}`);

    // The operator's reads are on the record.
    const codecRows = await stack.db.query<{ n: string }>(`SELECT count(*)::text AS n FROM audit_log WHERE event = 'ops.codec.decode'`);
    assert.equal(Number(codecRows.rows[0]?.n), ids.length, 'one audit row per codec call');
    const mintRows = await auditRowsOf(stack, walletSession.omni_account);
    assert.ok(
      mintRows.some((r) => r.event === 'mint.aws'),
      'the mint itself is audited as before',
    );
  });

  void test('every recorded history, read through the codec endpoint, holds no credential', async () => {
    const dir = join(__dirname, 'histories');
    const files = (await readdir(dir)).filter((f) => f.endsWith('.bin'));
    assert.ok(files.length >= 10, `recorded histories since sealing: ${files.join(', ')}`);
    const flows = new Set(files.map((f) => f.split('-')[0]));
    for (const flow of ['emailLoginRequestWorkflow', 'walletLoginWorkflow', 'mintWorkflow', 'googleLoginWorkflow']) {
      assert.ok(flows.has(flow), `a recorded ${flow} history`);
    }
    let payloads = 0;
    let sealed = 0;
    for (const file of files) {
      const history = temporal.api.history.v1.History.decode(await readFile(join(dir, file)));
      for (const text of await decodeAsOperator(collectPayloads(history.events))) {
        payloads++;
        assert.doesNotMatch(text, /secret_?access_?key|session_?token"|"token"|"access_token"|"id_token"|"refresh_token"/i, `${file}: ${text.slice(0, 200)}`);
        assert.doesNotMatch(text, /"code":"\d{6}"/, `${file}: an email code`);
        // No compact JWS at all (a session token, an OIDC JWT, an id_token); the only JWEs are sealed results.
        for (const m of text.matchAll(/"([A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*){2,4})"/g)) {
          const parts = (m[1] ?? '').split('.');
          if (parts.length !== 3 || !parts.every((x) => x.length >= 10)) continue;
          // A signed audit head is a public statement meant to be kept everywhere (docs/mint.md), not a credential.
          const header = JSON.parse(Buffer.from(parts[0] ?? '', 'base64url').toString()) as { typ?: string };
          if (header.typ === AUDIT_HEAD_TYP) continue;
          assert.fail(`${file}: a compact JWS in history: ${(m[1] ?? '').slice(0, 40)}…`);
        }
        sealed += (text.match(/"sealed":"[\w-]+\.[\w-]*\.[\w-]+\.[\w-]+\.[\w-]+"/g) ?? []).length;
      }
    }
    assert.ok(payloads > 50, `payloads read: ${payloads}`);
    assert.ok(sealed >= 4, `sealed mint results in the recorded mints: ${sealed}`);
  });

  void test('a sealed value opens only with its own key', async () => {
    const a = await createSealKeyPair();
    const b = await createSealKeyPair();
    const jwe = await sealJson(a.publicJwk, { jwt: 'x' });
    assert.deepEqual(await unsealJson(a.privateKey, jwe), { jwt: 'x' });
    await assert.rejects(unsealJson(b.privateKey, jwe), /could not open/);
    assert.notEqual(await sealJson(a.publicJwk, { jwt: 'x' }), jwe, 'fresh ephemeral key and IV each time');
    assert.equal(a.publicJwk.kty, 'OKP', 'an X25519 key pair since 2026-12-06');
    await assert.rejects(sealJson({ ...a.publicJwk, crv: 'X448' } as unknown as SealPublicJwk, {}), /X25519/);
    await assert.rejects(sealJson({ ...a.publicJwk, x: 'AAAA' }, {}), /could not seal/, 'an X25519 key of the wrong length');
  });

  void test('a P-256 key (an API of the version before) is still sealed to and opened; a key of one curve never opens the other', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = publicKey.export({ format: 'jwk' }) as { x: string; y: string };
    const p256: SealPublicJwk = { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y };
    const jwe = await sealJson(p256, { jwt: 'old' });
    const header = JSON.parse(Buffer.from(jwe.split('.')[0] ?? '', 'base64url').toString()) as { epk: { kty: string; crv: string } };
    assert.deepEqual([header.epk.kty, header.epk.crv], ['EC', 'P-256'], "the ephemeral key is on the recipient's curve");
    assert.deepEqual(await unsealJson(privateKey, jwe), { jwt: 'old' });
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' }) as { x: string };
    await assert.rejects(sealJson({ ...p256, x: other.x }, {}), /could not seal/, 'a point off the curve');
    const x = await createSealKeyPair();
    await assert.rejects(unsealJson(privateKey, await sealJson(x.publicJwk, { jwt: 'new' })), /could not open/);
    await assert.rejects(unsealJson(x.privateKey, jwe), /could not open/);
  });

  void test('a sealed value is a standard compact JWE (ECDH-ES+A256KW, A256GCM): jose opens it, and it opens what jose seals', async () => {
    const a = await createSealKeyPair();
    const jwe = await sealJson(a.publicJwk, { jwt: 'y', n: 1 });
    const opened = await compactDecrypt(jwe, a.privateKey, { keyManagementAlgorithms: ['ECDH-ES+A256KW'], contentEncryptionAlgorithms: ['A256GCM'] });
    assert.deepEqual(JSON.parse(new TextDecoder().decode(opened.plaintext)), { jwt: 'y', n: 1 });
    assert.equal(opened.protectedHeader.cty, 'agentkeys-sealed+json');
    const pub = await importJWK(a.publicJwk, 'ECDH-ES+A256KW');
    const byJose = await new CompactEncrypt(new TextEncoder().encode('{"jwt":"z"}'))
      .setProtectedHeader({ alg: 'ECDH-ES+A256KW', enc: 'A256GCM', cty: 'agentkeys-sealed+json' })
      .encrypt(pub);
    assert.deepEqual(await unsealJson(a.privateKey, byJose), { jwt: 'z' });
    // Any changed part, another content type or another algorithm does not open.
    const parts = jwe.split('.');
    for (let i = 0; i < 5; i++) {
      const p = parts.slice();
      const bytes = Buffer.from(p[i] ?? '', 'base64url');
      bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 1;
      p[i] = bytes.toString('base64url');
      await assert.rejects(unsealJson(a.privateKey, p.join('.')), /could not open/, `part ${i} changed`);
    }
    const otherCty = await new CompactEncrypt(new TextEncoder().encode('{}'))
      .setProtectedHeader({ alg: 'ECDH-ES+A256KW', enc: 'A256GCM', cty: 'json' })
      .encrypt(pub);
    await assert.rejects(unsealJson(a.privateKey, otherCty), /content type/);
    const otherAlg = await new CompactEncrypt(new TextEncoder().encode('{}'))
      .setProtectedHeader({ alg: 'ECDH-ES', enc: 'A256GCM', cty: 'agentkeys-sealed+json' })
      .encrypt(pub);
    await assert.rejects(unsealJson(a.privateKey, otherAlg), /alg/);
    await assert.rejects(unsealJson(a.privateKey, 'a.b.c'), /could not open/);
  });
});
