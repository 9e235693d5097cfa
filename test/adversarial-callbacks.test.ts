import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createLoginActivities } from '../activities/login-completion';
import type { LoginOutcome } from '../workflows/definitions';
import { generateTeeKeyPair, signTeeJwt, teeClaims, type TeeKeyPair } from '../fixtures/tee/jwt';
import { LoginRecordedForAnotherError, recordLogin, type CompleteLoginInput } from '../services/logins';
import { deriveOmniAccount, IdentityError, type Identity } from '../lib/omni';
import { startTeeFixture } from '../fixtures/tee/server';
import { callTeeRpc } from '../fixtures/tee/client';
import { startStack, type TestStack } from './harness';
import { latestCode, requestCode, submitCode } from './email-login-client';
import { assertUnchanged, dbSnapshot, spyWorkflowStarts, type HttpAnswer, type WorkflowStartSpy } from './adversarial-probes';

/**
 * The TEE callbacks' remaining gaps (tee-account-callbacks.test.ts covers the rest): add_wallet with
 * expired / forged bearers, oversized bodies and concurrent retries; the allow-listed lookups with
 * malformed and oversized input. Refusals are the callback envelope with a 4xx and change nothing.
 */

let stack: TestStack;
let tee: TeeKeyPair;
let starts: WorkflowStartSpy;

before(async () => {
  tee = await generateTeeKeyPair();
  // The concurrency probes send 16 add_wallet calls for one account at once: above the per-account default.
  stack = await startStack({
    env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000', BROKER_ADD_WALLET_PER_MINUTE: '1000', BROKER_TEE_JWT_PUBLIC_KEY: tee.publicKeyPem },
  });
  starts = spyWorkflowStarts(stack.temporal);
});
after(async () => {
  starts?.restore();
  await stack?.stop();
});

const nowS = () => Math.floor(Date.now() / 1000);
const b64url = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
const access = (omni: string, overrides: Record<string, unknown> = {}) =>
  signTeeJwt(tee.privateKey, { ...teeClaims(omni, 'access', 'agentkeys', nowS()), ...overrides });

/** A TEE-logged-in email account: its OmniAccount and access token. */
async function teeAccount(): Promise<{ omni: string; token: string }> {
  const identity: Identity = { type: 'email', value: `cb.${randomBytes(6).toString('hex')}@example.com` };
  const omni = deriveOmniAccount('agentkeys', identity);
  const token = access(omni);
  const r = await stack.request('POST', '/v3/account/post_heima_login', {
    token,
    body: { userId: identity, clientId: 'agentkeys', clientAuth: null, heimaLoginSuccess: true },
  });
  assert.equal(r.status, 200, r.text);
  return { omni, token };
}

/** The callback failure envelope: the status, code = status × 100, data null. */
function assertEnvelopeFailure(res: HttpAnswer, status: number, message: RegExp | undefined, what: string): void {
  assert.equal(res.status, status, `${what}: ${res.text.slice(0, 300)}`);
  const b = res.body as { code: number; message: string; data: unknown };
  assert.deepEqual(Object.keys(b).sort(), ['code', 'data', 'message'], what);
  assert.equal(b.code, status * 100, what);
  assert.equal(b.data, null, what);
  if (message) assert.match(b.message, message, what);
}

async function slots(omni: string): Promise<number[]> {
  const r = await stack.db.query<{ wallet_index: number }>('SELECT wallet_index FROM wallets WHERE omni_account = $1 ORDER BY wallet_index', [omni]);
  return r.rows.map((row) => row.wallet_index);
}

void describe('add_wallet: expired, forged, oversized, malformed', () => {
  void test('refused bearers and bodies → 4xx envelope; no slot, no audit row, no workflow', async () => {
    const { omni, token } = await teeAccount();
    const other = await generateTeeKeyPair();
    const [h, p] = token.split('.');
    const cases: { name: string; token?: string; body?: unknown; headers?: Record<string, string>; status: number; message?: RegExp }[] = [
      { name: 'expired', token: access(omni, { exp: nowS() - 1 }), status: 401, message: /expired/ },
      {
        name: 'another RSA key',
        token: signTeeJwt(other.privateKey, teeClaims(omni, 'access', 'agentkeys', nowS())),
        status: 401,
        message: /TEE token refused/,
      },
      { name: 'alg none', token: `${b64url({ alg: 'none', typ: 'JWT' })}.${p}.`, status: 401, message: /TEE token refused/ },
      {
        name: 'claims swapped under the real signature',
        token: `${h}.${b64url({ ...teeClaims(omni, 'access', 'agentkeys', nowS()), exp: nowS() + 30 * 86400 })}.${token.split('.')[2]}`,
        status: 401,
        message: /TEE token refused/,
      },
      { name: 'a broker-style ES256 token', token: `${b64url({ alg: 'ES256', typ: 'at+jwt' })}.${p}.c2ln`, status: 401, message: /TEE token refused/ },
      { name: 'a 20 KB body', token, body: { wallet_index: 1, pad: 'x'.repeat(20 * 1024) }, status: 413, message: /too large/ },
      { name: 'wallet_index too large', token, body: { wallet_index: 2_147_483_648 }, status: 400, message: /wallet_index/ },
      { name: 'wallet_index fractional', token, body: { wallet_index: 1.5 }, status: 400, message: /wallet_index/ },
      { name: 'a JSON array', token, body: '[1]', status: 400 },
      { name: 'bad Idempotency-Key', token, headers: { 'idempotency-key': 'a b' }, status: 400, message: /Idempotency-Key/ },
    ];
    const before = await dbSnapshot(stack.db);
    const started = starts.count();
    for (const c of cases) {
      const res = await stack.request('POST', '/v3/account/add_wallet', { token: c.token, body: c.body, headers: c.headers });
      assertEnvelopeFailure(res, c.status, c.message, c.name);
    }
    await assertUnchanged(stack.db, before, 'after the refused add_wallet calls');
    assert.equal(starts.count(), started, 'a refused add_wallet started a workflow');
  });
});

void describe('add_wallet: concurrent', () => {
  void test('10 concurrent retries with one Idempotency-Key: one slot, one audit row', async () => {
    const { omni, token } = await teeAccount();
    const results = await Promise.all(
      Array.from({ length: 10 }, () => stack.request('POST', '/v3/account/add_wallet', { token, headers: { 'idempotency-key': 'tee-retry' } })),
    );
    for (const r of results) assert.equal(r.text, '{"code":10000,"message":"OK","data":{}}');
    assert.deepEqual(await slots(omni), [0]);
    const audit = await stack.db.query("SELECT 1 FROM audit_log WHERE omni_account = $1 AND event = 'tee.add_wallet'", [omni]);
    assert.equal(audit.rowCount, 1);
  });

  void test('8 concurrent calls without a key: 8 distinct slots, none lost or doubled; the same index 8× at once is one slot', async () => {
    const { omni, token } = await teeAccount();
    const distinct = await Promise.all(Array.from({ length: 8 }, () => stack.request('POST', '/v3/account/add_wallet', { token })));
    for (const r of distinct) assert.equal(r.status, 200, r.text);
    assert.deepEqual(await slots(omni), [0, 1, 2, 3, 4, 5, 6, 7]);
    const same = await Promise.all(Array.from({ length: 8 }, () => stack.request('POST', '/v3/account/add_wallet', { token, body: { wallet_index: 42 } })));
    for (const r of same) assert.equal(r.status, 200, r.text);
    assert.deepEqual(await slots(omni), [0, 1, 2, 3, 4, 5, 6, 7, 42]);
  });
});

void describe('allow-listed lookups: malformed and oversized', () => {
  void test('get_account_user_id and check_hyper_agent_address refuse bad input with a 4xx envelope', async () => {
    const addr = () => `0x${randomBytes(20).toString('hex')}`;
    const before = await dbSnapshot(stack.db);
    const gets: [string, number][] = [
      [`?email=${'a'.repeat(10 * 1024)}%40example.com`, 400],
      ['?email=a%40example.com&email=b%40example.com', 400],
      ['?email=%00%40example.com', 400],
    ];
    for (const [q, status] of gets) assertEnvelopeFailure(await stack.request('GET', `/v3/account/get_account_user_id${q}`), status, undefined, q.slice(0, 30));
    const posts: [string, unknown, number][] = [
      ['agent_address a number', { main_address: addr(), agent_address: 42 }, 400],
      ['main_address missing', { agent_address: addr() }, 400],
      ['login_type a string', { main_address: addr(), agent_address: addr(), login_type: '1' }, 400],
      ['login_type over i32', { main_address: addr(), agent_address: addr(), login_type: 2 ** 31 }, 400],
      ['login_type under i32', { main_address: addr(), agent_address: addr(), login_type: -(2 ** 31) - 1 }, 400],
      ['a JSON array', '[]', 400],
      ['malformed JSON', '{"main_address":', 400],
      ['a 20 KB body', { main_address: addr(), agent_address: addr(), pad: 'x'.repeat(20 * 1024) }, 413],
    ];
    for (const [name, body, status] of posts)
      assertEnvelopeFailure(await stack.request('POST', '/v1/account/check_hyper_agent_address', { body }), status, undefined, name);
    await assertUnchanged(stack.db, before, 'after the refused lookups');
  });
});

/**
 * The TEE derives an OmniAccount from the first 64 bytes of a text identity. A victim who signed
 * up by email with a 64-byte address V shares that account, at the TEE, with `V.attacker.test`,
 * a domain the attacker owns. The broker refuses the callback for the longer value, so the TEE's
 * login fails and the attacker never holds a token the broker serves.
 */
void describe('no account across the 64-byte cut', () => {
  void test('victim signs up by email with a 64-byte address; the TEE callback for "<address>.attacker.test" → 400 (40000), victim unchanged, no workflow', async () => {
    const tag = randomBytes(4).toString('hex');
    const victimEmail = `${'v'.repeat(64 - `.${tag}@example.com`.length)}.${tag}@example.com`;
    assert.equal(Buffer.byteLength(victimEmail), 64);
    const { request_id } = await requestCode(stack, victimEmail);
    const login = await submitCode(stack, request_id, await latestCode(stack, victimEmail));
    assert.equal(login.status, 200, login.text);
    const victim = login.body as { token: string; omni_account: string; user_id: string };
    const victimView = await stack.request('GET', '/v1/session/me', { token: victim.token });
    assert.equal(victimView.status, 200, victimView.text);

    const attackerValue = `${victimEmail}.attacker.test`;
    // What the TEE signs for the attacker: the OmniAccount of the first 64 bytes, the victim's.
    assert.equal(deriveOmniAccount('agentkeys', { type: 'email', value: attackerValue }), victim.omni_account);
    const attackerToken = access(victim.omni_account);

    const before = await dbSnapshot(stack.db);
    const started = starts.count();
    const res = await stack.request('POST', '/v3/account/post_heima_login', {
      token: attackerToken,
      body: { userId: { type: 'email', value: attackerValue }, clientId: 'agentkeys', clientAuth: null, heimaLoginSuccess: true },
      headers: { 'x-language': 'en' },
    });
    assertEnvelopeFailure(res, 400, /over 64 bytes/, "the attacker's callback");
    // The allow-listed lookup does not name the victim's account for the longer address either.
    assertEnvelopeFailure(
      await stack.request('GET', `/v3/account/get_account_user_id?email=${encodeURIComponent(attackerValue)}`),
      400,
      /longer than 64 bytes/,
      'get_account_user_id',
    );
    const own = await stack.request('GET', `/v3/account/get_account_user_id?email=${encodeURIComponent(victimEmail)}`);
    assert.deepEqual((own.body as { data: unknown }).data, { userId: victim.user_id }, own.text);

    // The same login played end to end through the TEE stand-in: the TEE reads the 400 as a failed
    // login and hands out no token.
    const teeServer = await startTeeFixture({ brokerBaseUrl: `${stack.url}/`, privateKeyPem: tee.privateKeyPem });
    try {
      await callTeeRpc(teeServer.url, 'omni_requestEmailVerificationCode', { client_id: 'agentkeys', user_email: attackerValue });
      const code = teeServer.lastEmailCode(attackerValue);
      assert.ok(code, "the TEE mails a code to the attacker's domain");
      const teeLogin = await callTeeRpc(teeServer.url, 'omni_userLogin', {
        user_id: { type: 'email', value: attackerValue },
        user_auth: { type: 'email', value: code },
        client_id: 'agentkeys',
        client_auth: null,
      });
      assert.ok('error' in teeLogin, JSON.stringify(teeLogin));
    } finally {
      await teeServer.close();
    }

    await assertUnchanged(stack.db, before, "after the attacker's TEE login");
    assert.equal(starts.count(), started, 'the refused callback started a workflow');
    const after = await stack.request('GET', '/v1/session/me', { token: victim.token });
    assert.deepEqual(after.body, victimView.body, 'the victim sees the account as before');
  });
  void test('the front doors share the rule: the login record refuses a Google sub over 64 bytes before writing anything', async () => {
    const before = await dbSnapshot(stack.db);
    const deps = { config: stack.config, secrets: stack.secrets, db: stack.db, now: () => Date.now() };
    const sub = `1${'0'.repeat(64)}`;
    await assert.rejects(
      recordLogin(
        deps,
        { method: 'google', identity: { type: 'google', value: sub }, requestId: 'req-long-sub' },
        { jti: randomBytes(16).toString('hex'), idemKey: `test:${sub}` },
      ),
      (e: unknown) => e instanceof IdentityError && /over 64 bytes/.test(e.message),
    );
    await assertUnchanged(stack.db, before, 'after the refused login record');
  });
});

void describe('recording one login run twice', () => {
  void test('the same run completed again for another account is refused, nothing written; for the same account it is the same login', async () => {
    const deps = { config: stack.config, secrets: stack.secrets, db: stack.db, now: () => Date.now() };
    const jti = randomBytes(16).toString('hex');
    const key = { jti, idemKey: `test:device:${jti}` };
    const a: Identity = { type: 'email', value: `a-${jti}@example.com` };
    const first = await recordLogin(deps, { method: 'device', identity: a, requestId: 'req-a' }, key);
    const again = await recordLogin(deps, { method: 'device', identity: a, requestId: 'req-a' }, key);
    assert.deepEqual({ ...again, issued_at: 0, expires_at: 0 }, { ...first, issued_at: 0, expires_at: 0 }, 'a retry of the same login');
    const before = await dbSnapshot(stack.db);
    await assert.rejects(
      recordLogin(deps, { method: 'device', identity: { type: 'email', value: `b-${jti}@example.com` }, requestId: 'req-b' }, key),
      (e: unknown) => e instanceof LoginRecordedForAnotherError,
    );
    await assertUnchanged(stack.db, before, 'after the refused second account');
    const owner = await stack.db.query<{ omni_account: string }>('SELECT omni_account FROM sessions WHERE jti = $1', [jti]);
    assert.equal(owner.rows[0]?.omni_account, deriveOmniAccount(stack.config.BROKER_CLIENT_ID, a));
  });
});

void describe('completing one login run for two accounts', () => {
  void test('a run whose completion committed for one account and then runs for another gives each its own session and audit row; a retry for the same account is the same login', async () => {
    const activities = createLoginActivities(stack.activityDeps);
    const run = { workflowId: `device-authorization/${randomBytes(16).toString('hex')}`, runId: 'run-1' };
    const complete = (identity: Identity): Promise<LoginOutcome> => {
      const input: CompleteLoginInput = { method: 'device', identity, requestId: 'req-device' };
      return new MockActivityEnvironment({ workflowExecution: run, isLocal: true }).run((i: CompleteLoginInput) => activities.completeLogin(i), input);
    };
    const a = await complete({ type: 'email', value: `first-${run.workflowId.slice(-8)}@example.com` });
    const b = await complete({ type: 'email', value: `second-${run.workflowId.slice(-8)}@example.com` });
    const aAgain = await complete({ type: 'email', value: `first-${run.workflowId.slice(-8)}@example.com` });
    assert.notEqual(a.jti, b.jti);
    assert.equal(aAgain.jti, a.jti, 'a retry for the same account');
    const rows = await stack.db.query<{ jti: string; omni_account: string }>(
      'SELECT jti, omni_account FROM sessions WHERE jti = ANY($1) ORDER BY omni_account',
      [[a.jti, b.jti]],
    );
    assert.deepEqual(
      rows.rows.map((r) => [r.jti, r.omni_account]).sort(),
      [
        [a.jti, a.omni_account],
        [b.jti, b.omni_account],
      ].sort(),
    );
    const audit = await stack.db.query<{ omni_account: string }>(
      "SELECT omni_account FROM audit_log WHERE event = 'login.device' AND request_id = 'req-device' AND omni_account = ANY($1)",
      [[a.omni_account, b.omni_account]],
    );
    assert.equal(audit.rows.length, 2, 'one audit row each');
  });
});
