import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { decodeJwt } from 'jose';
import { verifyAuditChain } from '../db/audit-query';
import { generateTeeKeyPair, signTeeJwt, teeClaims, type TeeKeyPair } from '../fixtures/tee/jwt';
import { deriveOmniAccount } from '../lib/omni';
import { startStack, type TestStack } from './harness';
import {
  assertRefused,
  assertUnchanged,
  dbSnapshot,
  expectAllRefused as expectRefusals,
  spyWorkflowStarts,
  type RefusalCase,
  type WorkflowStartSpy,
} from './adversarial-probes';
import { expiredSession, forgedBearers } from './adversarial-tokens';
import { acceptGrant, type GrantView, offerGrant } from './grant-client';
import { agentKeysActorOf, emailLogin, mintAws, mintOidc, type WalletSession, walletLogin } from './mint-client';
import { brokenChecksum, newWallet, type TestWallet } from './wallet-client';

/**
 * POST / GET / DELETE /v1/grants against malformed, oversized, expired, replayed, forged and
 * concurrent input: every refusal is a clear 4xx that changes no row and starts no workflow.
 */

const MAX_TTL = 7 * 86400;
const GRANT_CAP = 30;
const SLOT_CAP = 5;
const ADD_WALLET_PER_MINUTE = 20;
let stack: TestStack;
let tee: TeeKeyPair;
let owner: WalletSession;
let starts: WorkflowStartSpy;

before(async () => {
  tee = await generateTeeKeyPair();
  stack = await startStack({
    env: {
      BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000',
      BROKER_TEE_JWT_PUBLIC_KEY: tee.publicKeyPem,
      BROKER_GRANT_MAX_TTL_SECONDS: String(MAX_TTL),
      BROKER_GRANTS_MAX_PER_ACCOUNT: String(GRANT_CAP),
      BROKER_WALLET_SLOTS_MAX: String(SLOT_CAP),
      BROKER_ADD_WALLET_PER_MINUTE: String(ADD_WALLET_PER_MINUTE),
    },
  });
  owner = await walletLogin(stack);
  starts = spyWorkflowStarts(stack.temporal);
});
after(async () => {
  starts?.restore();
  await stack?.stop();
});

const evmAddress = () => `0x${randomBytes(20).toString('hex')}`;
const upperHex = (a: string) => `0x${a.slice(2).toUpperCase()}`;

type Grant = GrantView;

const createGrant = (token: string, body: unknown, headers: Record<string, string> = {}): Promise<Grant> => offerGrant(stack, token, body, headers);

/** A retry of POST /v1/grants under an Idempotency-Key: 200 with the grant as it is now. */
async function replayGrant(token: string, body: unknown, key: string): Promise<Grant> {
  const res = await stack.request('POST', '/v1/grants', { token, body, headers: { 'idempotency-key': key } });
  assert.equal(res.status, 200, res.text);
  return res.body as Grant;
}

async function auditRows(event: string, grantId: string): Promise<number> {
  const r = await stack.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_log WHERE event = $1 AND details->>'grant_id' = $2`, [event, grantId]);
  return r.rows[0]?.n ?? -1;
}

/** Sends each request, asserts its refusal, then that no row changed and no workflow started. */
const expectAllRefused = (cases: RefusalCase[]) => expectRefusals({ stack, starts, defaults: { path: '/v1/grants' } }, cases);

void describe('grants: malformed input', () => {
  void test('agent addresses: malformed, zero, the caller’s own in any case → 400, nothing written', async () => {
    const t = owner.token;
    const own = owner.wallet.lower;
    const cases = [
      { name: 'missing', body: {} },
      { name: 'a number', body: { agent_address: 42 } },
      { name: 'null', body: { agent_address: null } },
      { name: '39 bytes', body: { agent_address: `0x${'ab'.repeat(19)}a` } },
      { name: '21 bytes', body: { agent_address: `0x${'ab'.repeat(21)}` } },
      { name: 'no 0x', body: { agent_address: 'ab'.repeat(20) } },
      { name: 'upper-case 0X', body: { agent_address: `0X${'ab'.repeat(20)}` } },
      { name: 'not hex', body: { agent_address: `0x${'zz'.repeat(20)}` } },
      { name: 'padded with spaces', body: { agent_address: ` ${evmAddress()} ` } },
      { name: 'an ENS name', body: { agent_address: 'vitalik.eth' } },
      { name: 'an array', body: { agent_address: [evmAddress()] } },
    ].map((c) => ({ ...c, token: t, status: 400, error: 'bad_request', message: /agent_address/ }));
    await expectAllRefused([
      ...cases,
      { name: 'the zero address', token: t, body: { agent_address: `0x${'0'.repeat(40)}` }, status: 400, error: 'bad_request', message: /zero address/ },
      {
        name: 'mixed case with a broken EIP-55 checksum',
        token: t,
        body: { agent_address: brokenChecksum(`0x${'ab'.repeat(20)}`) },
        status: 400,
        error: 'bad_request',
        message: /agent_address has mixed case but not a valid EIP-55 checksum/,
      },
      {
        name: 'revoking an agent spelled with a broken checksum',
        token: t,
        path: `/v1/agents/${brokenChecksum(`0x${'ab'.repeat(20)}`)}/revoke`,
        status: 400,
        error: 'bad_request',
        message: /wallet has mixed case but not a valid EIP-55 checksum/,
      },
      { name: 'own address, lower case', token: t, body: { agent_address: own }, status: 400, error: 'bad_request', message: /differ from the main/ },
      {
        name: 'own address, checksummed',
        token: t,
        body: { agent_address: owner.wallet.address },
        status: 400,
        error: 'bad_request',
        message: /differ from the main/,
      },
      {
        name: 'own address, upper-case hex',
        token: t,
        body: { agent_address: upperHex(own) },
        status: 400,
        error: 'bad_request',
        message: /differ from the main/,
      },
    ]);
  });

  void test('scopes: unknown keys, wrong types, bad entries, more than 64 → 400, nothing written', async () => {
    const agent = evmAddress();
    const bad: [string, unknown][] = [
      ['null', null],
      ['an array', ['s3']],
      ['a string', 's3'],
      ['unknown key', { services: ['s3'], buckets: ['b'] }],
      ['services a string', { services: 's3' }],
      ['services of numbers', { services: [1, 2] }],
      ['an empty entry', { services: [''] }],
      ['an entry with a space', { roles: ['admin role'] }],
      ['an entry with a newline', { services: ['s3\nx'] }],
      ['a non-ASCII entry', { services: ['s3é'] }],
      ['a 257-character entry', { services: ['a'.repeat(257)] }],
      ['65 services', { services: Array.from({ length: 65 }, (_, i) => `svc-${i}`) }],
      ['65 roles', { roles: Array.from({ length: 65 }, (_, i) => `role-${i}`) }],
      ['a nested object', { services: [{ name: 's3' }] }],
      // Only what the broker enforces: IAM service prefixes and role ARNs, each at most once.
      ['an upper-case service', { services: ['S3'] }],
      ['an action, not a service', { services: ['s3:GetObject'] }],
      ['a wildcard service', { services: ['*'] }],
      ['a duplicate service', { services: ['s3', 's3'] }],
      ['no services', { services: [] }],
      ['17 services', { services: Array.from({ length: 17 }, (_, i) => `svc${i}`) }],
      ['a role that is no ARN', { roles: ['reader'] }],
      ['a user ARN', { roles: ['arn:aws:iam::123456789012:user/alice'] }],
      ['no roles', { roles: [] }],
    ];
    await expectAllRefused(
      bad.map(([name, scope]) => ({ name, token: owner.token, body: { agent_address: agent, scope }, status: 400, error: 'bad_request', message: /scope/ })),
    );
  });

  void test('expires_in: 0, negative, fractional, a string, beyond the maximum, infinite → 400, nothing written', async () => {
    const agent = evmAddress();
    const values: unknown[] = [0, -1, -3600, 59, 60.5, '3600', null, true, MAX_TTL + 1, Number.MAX_SAFE_INTEGER, 1e308];
    await expectAllRefused([
      ...values.map((expires_in) => ({
        name: `expires_in ${JSON.stringify(expires_in)}`,
        token: owner.token,
        body: { agent_address: agent, expires_in },
        status: 400,
        error: 'bad_request',
        message: /expires_in/,
      })),
      // JSON.parse reads 1e400 as Infinity.
      {
        name: 'expires_in 1e400',
        token: owner.token,
        body: `{"agent_address":"${agent}","expires_in":1e400}`,
        status: 400,
        error: 'bad_request',
        message: /expires_in/,
      },
    ]);
  });

  void test('bodies that are not a grant request, and bad Idempotency-Keys → 4xx, nothing written', async () => {
    const agent = evmAddress();
    const t = owner.token;
    const json = { 'content-type': 'application/json' };
    await expectAllRefused([
      { name: 'no body', token: t, headers: json, body: '', status: 400, error: 'bad_request' },
      { name: 'malformed JSON', token: t, body: `{"agent_address":"${agent}"`, status: 400, error: 'bad_request', message: /JSON/i },
      { name: 'JSON null', token: t, body: 'null', status: 400, error: 'bad_request' },
      { name: 'a JSON array', token: t, body: `["${agent}"]`, status: 400, error: 'bad_request' },
      { name: 'a JSON string', token: t, body: `"${agent}"`, status: 400, error: 'bad_request' },
      { name: '__proto__ key', token: t, body: `{"agent_address":"${agent}","__proto__":{"admin":true}}`, status: 400, error: 'bad_request' },
      {
        name: 'constructor.prototype',
        token: t,
        body: `{"agent_address":"${agent}","constructor":{"prototype":{"admin":true}}}`,
        status: 400,
        error: 'bad_request',
      },
      { name: 'text/plain', token: t, body: agent, headers: { 'content-type': 'text/plain' }, status: 415, error: 'bad_request', message: /JSON/ },
      {
        name: 'form encoded',
        token: t,
        body: `agent_address=${agent}`,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        status: 415,
        error: 'bad_request',
        message: /JSON/,
      },
      ...['', 'has space', 'semi;colon', 'ü', 'k'.repeat(129), 'a,b'].map((key) => ({
        name: `Idempotency-Key ${JSON.stringify(key.slice(0, 12))}`,
        token: t,
        body: { agent_address: agent },
        headers: { 'idempotency-key': key },
        status: 400,
        error: 'bad_request',
        message: /Idempotency-Key/,
      })),
    ]);
  });

  void test('DELETE of malformed and unknown ids → 400 / 404, nothing written', async () => {
    const t = owner.token;
    const malformed = [
      `grt_${'a'.repeat(31)}`,
      `grt_${'a'.repeat(33)}`,
      `grt_${'A'.repeat(32)}`,
      `grt_${'g'.repeat(32)}`,
      'a'.repeat(36),
      `grt_x'%20OR%20'1'='1`,
      '%00',
      `grt_${'a'.repeat(32)}%0A`,
    ];
    await expectAllRefused([
      ...malformed.map((id) => ({
        name: `DELETE ${id}`,
        method: 'DELETE',
        path: `/v1/grants/${id}`,
        token: t,
        status: 400,
        error: 'bad_request',
        message: /grant_id/,
      })),
      {
        name: 'unknown id',
        method: 'DELETE',
        path: `/v1/grants/grt_${randomBytes(16).toString('hex')}`,
        token: t,
        status: 404,
        error: 'not_found',
        message: /no such grant/,
      },
      { name: 'no id', method: 'DELETE', path: '/v1/grants/', token: t, status: 400, error: 'bad_request' },
      { name: 'the collection', method: 'DELETE', path: '/v1/grants', token: t, status: 404, error: 'not_found' },
      // The router refuses these before the route; in the wire shape too, without echoing the URL.
      {
        name: 'a 5 KB id',
        method: 'DELETE',
        path: `/v1/grants/grt_${'a'.repeat(5000)}`,
        token: t,
        status: 414,
        error: 'bad_request',
        message: /^a path parameter is too long$/,
      },
      {
        name: 'broken percent-encoding',
        method: 'DELETE',
        path: '/v1/grants/grt_%E0%A4%A',
        token: t,
        status: 400,
        error: 'bad_request',
        message: /^the URL is malformed$/,
      },
    ]);
  });
});

void describe('grants: oversized', () => {
  void test('10 000 services, a 16 KB body, a 1 MB body → 413 payload_too_large, nothing written', async () => {
    const agent = evmAddress();
    const services = Array.from({ length: 10_000 }, (_, i) => `svc-${i}`);
    await expectAllRefused([
      { name: '10 000 services', token: owner.token, body: { agent_address: agent, scope: { services } }, status: 413, error: 'payload_too_large' },
      { name: 'just over 16 KB', token: owner.token, body: { agent_address: agent, pad: 'x'.repeat(16 * 1024) }, status: 413, error: 'payload_too_large' },
      {
        name: '1 MB',
        token: owner.token,
        body: { agent_address: agent, scope: { services: ['x'.repeat(1024 * 1024)] } },
        status: 413,
        error: 'payload_too_large',
      },
      // The body limit applies before the bearer is looked at.
      { name: '1 MB without a bearer', body: { agent_address: agent, pad: 'x'.repeat(1024 * 1024) }, status: 413, error: 'payload_too_large' },
    ]);
  });
});

void describe('grants: expired, forged and replayed bearers', () => {
  void test('every route refuses forged, expired, logged-out, OIDC and TEE id bearers with 401, nothing written', async () => {
    const victim = await walletLogin(stack);
    const agent = evmAddress();
    const grant = await createGrant(victim.token, { agent_address: agent });
    const oidcJwt = (await mintOidc(stack, victim.token)).jwt;
    const expired = await expiredSession(stack, { omniAccount: victim.omni_account, wallet: victim.wallet.lower });
    const loggedOut = await walletLogin(stack, victim.wallet);
    assert.equal((await stack.request('POST', '/v1/session/logout', { token: loggedOut.token })).status, 204);
    const teeId = signTeeJwt(tee.privateKey, teeClaims(victim.omni_account, 'id', 'agentkeys', Math.floor(Date.now() / 1000)));
    const bearers = [
      ...(await forgedBearers(stack, victim.token)),
      { name: 'expired (signed by the broker, session row live)', token: expired, message: /token expired/ },
      { name: 'logged out', token: loggedOut.token, message: /logged out/ },
      { name: 'an OIDC JWT the broker minted', token: oidcJwt, message: /SIGNATURE_VERIFICATION_FAILED/ },
      { name: 'a TEE id token', token: teeId, message: /typ "id"/ },
    ];
    const routes = [
      { method: 'POST', path: '/v1/grants', body: { agent_address: evmAddress() } },
      { method: 'GET', path: '/v1/grants' },
      { method: 'GET', path: '/v1/grants?role=agent' },
      { method: 'POST', path: `/v1/grants/${grant.grant_id}/decline` },
      { method: 'DELETE', path: `/v1/grants/${grant.grant_id}` },
    ];
    await expectAllRefused(
      routes.flatMap((r) =>
        bearers.map((b) => ({ ...r, name: `${r.method} ${r.path} with ${b.name}`, token: b.token, status: 401, error: 'unauthorized', message: b.message })),
      ),
    );
    // Positive control: the victim's own token still works, and the grant was never revoked.
    const listed = await stack.request('GET', '/v1/grants', { token: victim.token });
    assert.equal(listed.status, 200, listed.text);
    assert.deepEqual(
      (listed.body as { grants: Grant[] }).grants.map((g) => [g.grant_id, g.status]),
      [[grant.grant_id, 'pending']],
    );
  });

  void test('replayed POST (same Idempotency-Key): the same grant (200); with another body a 409; after a revoke the revoked grant as it is now', async () => {
    const key = `replay-${randomBytes(4).toString('hex')}`;
    const agent = evmAddress();
    const body = { agent_address: agent, scope: { services: ['s3'] }, expires_in: 3600 };
    const first = await createGrant(owner.token, body, { 'idempotency-key': key });
    const before = await dbSnapshot(stack.db);
    // Field order and address case do not make it another request.
    const again = await replayGrant(owner.token, { expires_in: 3600, scope: { services: ['s3'] }, agent_address: upperHex(agent) }, key);
    assert.deepEqual(again, first);
    await assertUnchanged(stack.db, before, 'a replay');

    await expectAllRefused(
      [
        { name: 'another agent', body: { ...body, agent_address: evmAddress() } },
        { name: 'another scope', body: { ...body, scope: { services: ['dynamodb'] } } },
        { name: 'no scope', body: { agent_address: agent, expires_in: 3600 } },
        { name: 'another expires_in', body: { ...body, expires_in: 7200 } },
      ].map((c) => ({ ...c, token: owner.token, headers: { 'idempotency-key': key }, status: 409, error: 'conflict', message: /Idempotency-Key/ })),
    );

    // The same key under another account is another grant.
    const other = await walletLogin(stack);
    const theirs = await createGrant(other.token, body, { 'idempotency-key': key });
    assert.notEqual(theirs.grant_id, first.grant_id);

    const revoked = await stack.request('DELETE', `/v1/grants/${first.grant_id}`, { token: owner.token });
    assert.equal(revoked.status, 204, revoked.text);
    const afterRevoke = await dbSnapshot(stack.db);
    // What is true now: the grant, revoked (not a 201 that reads like a fresh, usable grant).
    const replayed = await replayGrant(owner.token, body, key);
    assert.equal(replayed.grant_id, first.grant_id);
    assert.equal(replayed.status, 'revoked');
    assert.equal(replayed.active, false);
    assert.equal(typeof replayed.revoked_at, 'number');
    assert.equal(replayed.acceptance_message, undefined, 'a revoked grant offers nothing to accept');
    await assertUnchanged(stack.db, afterRevoke, 'a replay after the revoke (it must not revive or duplicate the grant)');
    assert.equal(await auditRows('grant.create', first.grant_id), 1);
  });

  void test('replayed DELETE: 204 again, one revoke row, revoked_at kept', async () => {
    const grant = await createGrant(owner.token, { agent_address: evmAddress() });
    assert.equal((await stack.request('DELETE', `/v1/grants/${grant.grant_id}`, { token: owner.token })).status, 204);
    const before = await dbSnapshot(stack.db);
    for (let i = 0; i < 3; i++) assert.equal((await stack.request('DELETE', `/v1/grants/${grant.grant_id}`, { token: owner.token })).status, 204);
    await assertUnchanged(stack.db, before, 'revoking again');
    assert.equal(await auditRows('grant.revoke', grant.grant_id), 1);
  });
});

void describe('grants: concurrent', () => {
  void test('20 concurrent POSTs with one Idempotency-Key: one grant, one audit row, one 201 and 19 identical 200s', async () => {
    const key = `concurrent-${randomBytes(4).toString('hex')}`;
    const body = { agent_address: evmAddress(), scope: { roles: ['arn:aws:iam::123456789012:role/reader'] }, expires_in: 600 };
    const results = await Promise.all(
      Array.from({ length: 20 }, () => stack.request('POST', '/v1/grants', { token: owner.token, body, headers: { 'idempotency-key': key } })),
    );
    assert.deepEqual(results.map((r) => r.status).sort(), [...Array.from({ length: 19 }, () => 200), 201], results.map((r) => r.text).join('\n'));
    const ids = new Set(results.map((r) => (r.body as Grant).grant_id));
    assert.equal(ids.size, 1);
    for (const r of results) assert.deepEqual(r.body, results[0]?.body);
    const [id] = [...ids];
    const rows = await stack.db.query<{ n: number }>('SELECT count(*)::int AS n FROM grants WHERE agent_address = $1', [body.agent_address]);
    assert.equal(rows.rows[0]?.n, 1);
    assert.equal(await auditRows('grant.create', id ?? ''), 1);
  });

  void test('10 concurrent POSTs with one Idempotency-Key and two different agents: one grant; the rest answer it or 409', async () => {
    const key = `split-${randomBytes(4).toString('hex')}`;
    const agents = [evmAddress(), evmAddress()];
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        stack.request('POST', '/v1/grants', { token: owner.token, body: { agent_address: agents[i % 2] }, headers: { 'idempotency-key': key } }),
      ),
    );
    const won = results.filter((r) => r.status === 200 || r.status === 201).map((r) => r.body as Grant);
    assert.equal(results.filter((r) => r.status === 201).length, 1);
    assert.ok(won.length >= 1);
    const winner = won[0];
    for (const g of won) assert.deepEqual(g, winner);
    for (const r of results) if (r.status !== 200 && r.status !== 201) assertRefused(r, 409, 'conflict', /Idempotency-Key/);
    assert.equal(won.length, 5, 'every request for the winning agent answers the grant, every other one is a 409');
    const rows = await stack.db.query<{ agent_address: string }>('SELECT agent_address FROM grants WHERE agent_address = ANY($1)', [agents]);
    assert.deepEqual(
      rows.rows.map((r) => r.agent_address),
      [winner?.agent_address],
    );
    assert.equal(await auditRows('grant.create', winner?.grant_id ?? ''), 1);
  });

  void test('the same DELETE 10 times at once: all 204, exactly one revoke row', async () => {
    const grant = await createGrant(owner.token, { agent_address: evmAddress() });
    const results = await Promise.all(Array.from({ length: 10 }, () => stack.request('DELETE', `/v1/grants/${grant.grant_id}`, { token: owner.token })));
    assert.deepEqual(
      results.map((r) => r.status),
      Array.from({ length: 10 }, () => 204),
    );
    assert.equal(await auditRows('grant.revoke', grant.grant_id), 1);
    const row = await stack.db.query<{ revoked: boolean }>('SELECT revoked_at IS NOT NULL AS revoked FROM grants WHERE grant_id = $1', [grant.grant_id]);
    assert.equal(row.rows[0]?.revoked, true);
  });

  void test('creates and revokes of many accounts at once keep the audit chain intact, one row per change', async () => {
    const accounts = await Promise.all([walletLogin(stack), walletLogin(stack), walletLogin(stack)]);
    const existing = await Promise.all(accounts.map((a) => createGrant(a.token, { agent_address: evmAddress() })));
    const auditBefore = (await stack.db.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_log')).rows[0]?.n ?? 0;
    const creates = accounts.flatMap((a) =>
      Array.from({ length: 8 }, () => stack.request('POST', '/v1/grants', { token: a.token, body: { agent_address: evmAddress() } })),
    );
    const revokes = accounts.map((a, i) => stack.request('DELETE', `/v1/grants/${existing[i]?.grant_id ?? ''}`, { token: a.token }));
    const results = await Promise.all([...creates, ...revokes]);
    assert.deepEqual(results.map((r) => r.status).sort(), [...Array.from({ length: 24 }, () => 201), 204, 204, 204]);
    const auditAfter = (await stack.db.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_log')).rows[0]?.n ?? 0;
    assert.equal(auditAfter - auditBefore, 24 + 3);
    const chain = await verifyAuditChain(stack.db);
    assert.ok(chain.ok, JSON.stringify(chain));
  });
});

// ---- consent: a grant binds only once its agent wallet accepted it ------------------------------

async function isBound(main: string, agent: string): Promise<boolean> {
  const r = await stack.request('POST', '/v1/account/check_hyper_agent_address', { body: { main_address: main, agent_address: agent, login_type: 0 } });
  assert.equal(r.status, 200, r.text);
  return (r.body as { data: { isBound: boolean } }).data.isBound;
}

async function listAsAgent(token: string): Promise<Grant[]> {
  const r = await stack.request('GET', '/v1/grants?role=agent', { token });
  assert.equal(r.status, 200, r.text);
  return (r.body as { grants: Grant[] }).grants;
}

const grantEvents = async (grantId: string): Promise<string[]> =>
  (
    await stack.db.query<{ event: string }>(`SELECT event FROM audit_log WHERE details->>'grant_id' = $1 AND event LIKE 'grant.%' ORDER BY seq`, [grantId])
  ).rows.map((r) => r.event);

const acceptPath = (grantId: string) => `/v1/grants/${grantId}/accept`;
const signatureOf = async (wallet: TestWallet, message: string | undefined) => ({ signature: await wallet.sign(message ?? '') });

void describe('grants: the agent’s consent', () => {
  void test('an attacker grants the victim’s wallet: the victim’s mints stay its own, isBound stays false, the victim declines', async () => {
    const attacker = await walletLogin(stack);
    const victim = await walletLogin(stack);
    const offered = await createGrant(attacker.token, { agent_address: victim.wallet.lower });
    assert.equal(offered.status, 'pending');

    // The victim's own mints: for the victim, with no agent claims (they came out for the attacker before).
    const minted = await mintOidc(stack, victim.token);
    assert.equal(minted.wallet, victim.wallet.lower);
    const claims = decodeJwt(minted.jwt);
    assert.equal(claims.sub, `agentkeys:agent:${victim.wallet.lower}`);
    assert.equal(claims.agentkeys_grant_id, undefined);
    assert.equal(claims.agentkeys_child_wallet, undefined);
    assert.equal((await mintAws(stack, victim.token)).wallet, victim.wallet.lower);
    assert.equal(await isBound(attacker.wallet.lower, victim.wallet.lower), false);

    // The victim sees the offer, with the text it would sign, and declines it.
    const seen = await listAsAgent(victim.token);
    assert.deepEqual(
      seen.map((g) => [g.grant_id, g.main_address, g.status]),
      [[offered.grant_id, attacker.wallet.lower, 'pending']],
    );
    assert.equal(seen[0]?.acceptance_message, offered.acceptance_message);
    const declined = await stack.request('POST', `/v1/grants/${offered.grant_id}/decline`, { token: victim.token });
    assert.equal(declined.status, 200, declined.text);
    assert.equal((declined.body as Grant).status, 'declined');
    const again = await dbSnapshot(stack.db);
    assert.equal((await stack.request('POST', `/v1/grants/${offered.grant_id}/decline`, { token: victim.token })).status, 200, 'declining twice is fine');
    await assertUnchanged(stack.db, again, 'a second decline');
    const owners = (await stack.request('GET', '/v1/grants', { token: attacker.token })).body as { grants: Grant[] };
    assert.deepEqual(
      owners.grants.map((g) => g.status),
      ['declined'],
    );

    // A declined grant cannot be accepted any more; the attacker's revoke changes nothing for the victim.
    await expectAllRefused([
      {
        name: 'accepting a declined grant',
        path: acceptPath(offered.grant_id),
        body: await signatureOf(victim.wallet, offered.acceptance_message),
        status: 409,
        error: 'conflict',
        message: /declined/,
      },
    ]);
    assert.equal((await stack.request('DELETE', `/v1/grants/${offered.grant_id}`, { token: attacker.token })).status, 204);
    assert.equal((await mintOidc(stack, victim.token)).wallet, victim.wallet.lower, 'a revoked grant the victim never accepted does not lock it out');
    assert.deepEqual(await grantEvents(offered.grant_id), ['grant.create', 'grant.decline', 'grant.revoke']);
  });

  void test('accept: only the agent wallet’s signature over this grant’s text; refusals change nothing', async () => {
    const agent = newWallet();
    const other = newWallet();
    const g1 = await createGrant(owner.token, { agent_address: agent.lower, scope: { services: ['s3'] } });
    const g2 = await createGrant(owner.token, { agent_address: agent.lower });
    const text = g1.acceptance_message ?? '';
    const path = acceptPath(g1.grant_id);
    const host = new URL(stack.url).host;
    await expectAllRefused([
      { name: 'signed by another wallet', path, body: await signatureOf(other, text), status: 401, error: 'unauthorized', message: /agent wallet/ },
      {
        name: 'the agent’s signature over another grant’s text',
        path,
        body: await signatureOf(agent, g2.acceptance_message),
        status: 401,
        error: 'unauthorized',
      },
      {
        name: 'the text with the scope widened',
        path,
        body: await signatureOf(agent, text.replace('Services: s3', 'Services: any')),
        status: 401,
        error: 'unauthorized',
      },
      {
        name: 'the text for another broker',
        path,
        body: await signatureOf(agent, text.replace(`Broker: ${host}`, 'Broker: broker.example.com')),
        status: 401,
        error: 'unauthorized',
      },
      {
        name: 'the text with a later expiry',
        path,
        body: await signatureOf(agent, text.replace(/Expires at: \d+/, 'Expires at: 99999999999')),
        status: 401,
        error: 'unauthorized',
      },
      {
        name: 'the agent’s signature over a login message',
        path,
        body: await signatureOf(agent, `Hi! Welcome to AgentKeys.\n${text}`),
        status: 401,
        error: 'unauthorized',
      },
      { name: 'a malformed signature', path, body: { signature: '0x1234' }, status: 400, error: 'bad_request', message: /signature/ },
      { name: 'no signature', path, body: {}, status: 400, error: 'bad_request', message: /signature/ },
      { name: 'no body', path, status: 400, error: 'bad_request' },
      {
        name: 'an unknown grant',
        path: acceptPath(`grt_${randomBytes(16).toString('hex')}`),
        body: await signatureOf(agent, text),
        status: 404,
        error: 'not_found',
      },
      {
        name: 'a malformed grant id',
        path: '/v1/grants/grt_nope/accept',
        body: await signatureOf(agent, text),
        status: 400,
        error: 'bad_request',
        message: /grant_id/,
      },
    ]);
    assert.equal(await isBound(owner.wallet.lower, agent.lower), false);

    const accepted = await acceptGrant(stack, agent, g1);
    // Accepted; its scope keeps it from binding for the TEE (test/grant-bound-scope.test.ts), so the accepted grant row is the proof here.
    assert.equal(await isBound(owner.wallet.lower, agent.lower), false);
    assert.equal((await stack.db.query(`SELECT 1 FROM grants WHERE grant_id = $1 AND accepted_at IS NOT NULL`, [g1.grant_id])).rowCount, 1);
    assert.equal(accepted.acceptance_message, undefined);
    const row = await stack.db.query<{ details: { signature_hash: string; via: string } }>(
      `SELECT details FROM audit_log WHERE event = 'grant.accept' AND details->>'grant_id' = $1`,
      [g1.grant_id],
    );
    assert.equal(row.rows.length, 1);
    assert.equal(row.rows[0]?.details.via, 'ecrecover');
    const guard = await stack.db.query<{ purpose: string }>('SELECT purpose FROM used_signatures WHERE signature_hash = $1', [
      row.rows[0]?.details.signature_hash,
    ]);
    assert.deepEqual(
      guard.rows.map((r) => r.purpose),
      ['grant_accept'],
    );

    // Replays: refused while active; and by the replay guard even if the grant were pending again.
    const replay = { path, body: await signatureOf(agent, text) };
    await expectAllRefused([{ name: 'the same acceptance again', ...replay, status: 409, error: 'conflict', message: /active, not pending/ }]);
    await stack.db.query('UPDATE grants SET accepted_at = NULL WHERE grant_id = $1', [g1.grant_id]);
    try {
      await expectAllRefused([{ name: 'a used acceptance on a pending grant', ...replay, status: 409, error: 'conflict', message: /already been used/ }]);
    } finally {
      await stack.db.query('UPDATE grants SET accepted_at = now() WHERE grant_id = $1', [g1.grant_id]);
    }

    // Revoked or expired before the agent answered: nothing to accept.
    const revoked = await createGrant(owner.token, { agent_address: agent.lower });
    assert.equal((await stack.request('DELETE', `/v1/grants/${revoked.grant_id}`, { token: owner.token })).status, 204);
    const expired = await createGrant(owner.token, { agent_address: agent.lower, expires_in: 60 });
    const past = await stack.db.query<{ exp: string }>(
      `UPDATE grants SET expires_at = date_trunc('second', now()) - interval '1 second' WHERE grant_id = $1 RETURNING extract(epoch FROM expires_at)::bigint::text AS exp`,
      [expired.grant_id],
    );
    const expiredText = (expired.acceptance_message ?? '').replace(/Expires at: \d+/, `Expires at: ${past.rows[0]?.exp ?? ''}`);
    await expectAllRefused([
      {
        name: 'a revoked grant',
        path: acceptPath(revoked.grant_id),
        body: await signatureOf(agent, revoked.acceptance_message),
        status: 409,
        error: 'conflict',
        message: /revoked/,
      },
      { name: 'an expired grant', path: acceptPath(expired.grant_id), body: await signatureOf(agent, expiredText), status: 410, error: 'expired' },
    ]);
  });

  void test('10 concurrent copies of the right acceptance: one 200, nine 409; one audit row, one replay-guard row', async () => {
    const agent = newWallet();
    const g = await createGrant(owner.token, { agent_address: agent.lower });
    const body = await signatureOf(agent, g.acceptance_message);
    const results = await Promise.all(Array.from({ length: 10 }, () => stack.request('POST', acceptPath(g.grant_id), { body })));
    assert.deepEqual(results.map((r) => r.status).sort(), [200, ...Array.from({ length: 9 }, () => 409)]);
    for (const r of results) if (r.status === 409) assertRefused(r, 409, 'conflict');
    assert.deepEqual(await grantEvents(g.grant_id), ['grant.create', 'grant.accept']);
    const guard = await stack.db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM used_signatures u JOIN audit_log a ON a.details->>'signature_hash' = u.signature_hash
        WHERE a.event = 'grant.accept' AND a.details->>'grant_id' = $1 AND u.purpose = 'grant_accept'`,
      [g.grant_id],
    );
    assert.equal(guard.rows[0]?.n, 1);
  });

  void test('the agent lists and leaves; strangers get 404; after a revoke the agent leaves to mint for itself again', async () => {
    const main = await walletLogin(stack);
    const agent = await walletLogin(stack);
    const stranger = await walletLogin(stack);
    const email = await emailLogin(stack);
    const g = await createGrant(main.token, { agent_address: agent.wallet.lower });
    await acceptGrant(stack, agent.wallet, g);
    assert.equal((await mintOidc(stack, agent.token)).wallet, main.wallet.lower, 'an accepted grant: the agent mints for the main wallet');
    assert.deepEqual(await listAsAgent(stranger.token), []);

    await expectAllRefused([
      { name: 'a stranger leaves it', method: 'DELETE', path: `/v1/grants/${g.grant_id}`, token: stranger.token, status: 404, error: 'not_found' },
      { name: 'a stranger declines it', path: `/v1/grants/${g.grant_id}/decline`, token: stranger.token, status: 404, error: 'not_found' },
      {
        name: 'the agent declines an accepted grant',
        path: `/v1/grants/${g.grant_id}/decline`,
        token: agent.token,
        status: 409,
        error: 'conflict',
        message: /leave/,
      },
      {
        name: 'role=agent without an EVM wallet',
        method: 'GET',
        path: '/v1/grants?role=agent',
        token: email.token,
        status: 403,
        error: 'forbidden',
        message: /wallet/,
      },
      { name: 'role=owner', method: 'GET', path: '/v1/grants?role=owner', token: agent.token, status: 400, error: 'bad_request', message: /role/ },
      { name: 'limit=0', method: 'GET', path: '/v1/grants?role=agent&limit=0', token: agent.token, status: 400, error: 'bad_request', message: /limit/ },
      { name: 'limit=201', method: 'GET', path: '/v1/grants?limit=201', token: agent.token, status: 400, error: 'bad_request', message: /limit/ },
    ]);

    // The main account revokes: the agent that accepted is refused until it leaves.
    assert.equal((await stack.request('DELETE', `/v1/grants/${g.grant_id}`, { token: main.token })).status, 204);
    const refused = await stack.request('POST', '/v1/mint-oidc-jwt', { token: agent.token });
    assertRefused(refused, 403, 'forbidden', /leave them/);
    assert.equal((await stack.request('DELETE', `/v1/grants/${g.grant_id}`, { token: agent.token })).status, 204);
    assert.equal((await listAsAgent(agent.token))[0]?.status, 'revoked', 'revoked stays what the list says first');
    assert.equal((await mintOidc(stack, agent.token)).wallet, agent.wallet.lower);

    // Leaving an active grant ends the binding at once.
    const h = await createGrant(main.token, { agent_address: agent.wallet.lower });
    await acceptGrant(stack, agent.wallet, h);
    assert.equal(await isBound(main.wallet.lower, agent.wallet.lower), true);
    assert.equal((await stack.request('DELETE', `/v1/grants/${h.grant_id}`, { token: agent.token })).status, 204);
    const before = await dbSnapshot(stack.db);
    assert.equal((await stack.request('DELETE', `/v1/grants/${h.grant_id}`, { token: agent.token })).status, 204, 'leaving twice is fine');
    await assertUnchanged(stack.db, before, 'a second leave');
    assert.equal(await isBound(main.wallet.lower, agent.wallet.lower), false);
    assert.equal((await mintOidc(stack, agent.token)).wallet, agent.wallet.lower);
    assert.equal((await listAsAgent(agent.token))[0]?.status, 'left');
    assert.deepEqual(await grantEvents(g.grant_id), ['grant.create', 'grant.accept', 'grant.revoke', 'grant.leave']);
    assert.deepEqual(await grantEvents(h.grant_id), ['grant.create', 'grant.accept', 'grant.leave']);
    // The agent's answers are on the main account's audit feed.
    const mains = await stack.db.query<{ omni_account: string }>(
      `SELECT DISTINCT omni_account FROM audit_log WHERE event LIKE 'grant.%' AND details->>'grant_id' = ANY($1)`,
      [[g.grant_id, h.grant_id]],
    );
    assert.deepEqual(
      mains.rows.map((r) => r.omni_account),
      [main.omni_account],
    );
  });

  void test(`grants per account are capped (${GRANT_CAP} live): beyond is a 409; a replay still answers; a revoke frees one place, concurrently once`, async () => {
    const main = await walletLogin(stack);
    const keyed = await createGrant(main.token, { agent_address: evmAddress() }, { 'idempotency-key': 'cap-key' });
    const rest = await Promise.all(
      Array.from({ length: GRANT_CAP - 1 }, () => stack.request('POST', '/v1/grants', { token: main.token, body: { agent_address: evmAddress() } })),
    );
    for (const r of rest) assert.equal(r.status, 201, r.text);
    await expectAllRefused([
      {
        name: `grant ${GRANT_CAP + 1}`,
        token: main.token,
        body: { agent_address: evmAddress() },
        status: 409,
        error: 'conflict',
        message: /BROKER_GRANTS_MAX_PER_ACCOUNT = 30/,
      },
      {
        name: 'a new key',
        token: main.token,
        body: { agent_address: evmAddress() },
        headers: { 'idempotency-key': 'cap-key-2' },
        status: 409,
        error: 'conflict',
        message: /live \(pending or active\) grants/,
      },
    ]);
    assert.equal((await replayGrant(main.token, { agent_address: keyed.agent_address }, 'cap-key')).grant_id, keyed.grant_id);

    assert.equal((await stack.request('DELETE', `/v1/grants/${keyed.grant_id}`, { token: main.token })).status, 204);
    const racing = await Promise.all(
      Array.from({ length: 6 }, () => stack.request('POST', '/v1/grants', { token: main.token, body: { agent_address: evmAddress() } })),
    );
    assert.deepEqual(racing.map((r) => r.status).sort(), [201, 409, 409, 409, 409, 409]);
    const live = await stack.db.query<{ n: number }>('SELECT count(*)::int AS n FROM grants WHERE main_account = $1 AND revoked_at IS NULL', [
      main.omni_account,
    ]);
    assert.equal(live.rows[0]?.n, GRANT_CAP);
  });
});

// ---- scope: what an agent's credentials may do ---------------------------------------------------

void describe('grants: scope is enforced in what is minted', () => {
  const assumeCalls = () => stack.sts.calls().filter((c) => c.action === 'AssumeRoleWithWebIdentity');

  void test('services become the inline session policy and a session tag; STS receives and applies them', async () => {
    const agent = await walletLogin(stack);
    const g = await createGrant(owner.token, { agent_address: agent.wallet.lower, scope: { services: ['s3', 'dynamodb'] } });
    await acceptGrant(stack, agent.wallet, g);
    stack.sts.clear();
    const creds = await mintAws(stack, agent.token);
    assert.equal(creds.wallet, owner.wallet.lower);
    const [call] = assumeCalls();
    assert.equal(
      call?.fields.Policy,
      JSON.stringify({ Version: '2012-10-17', Statement: [{ Sid: 'AgentKeysGrantScope', Effect: 'Allow', Action: ['dynamodb:*', 's3:*'], Resource: '*' }] }),
    );
    for (const [action, allowed] of [
      ['s3:GetObject', true],
      ['S3:PutObject', true],
      ['dynamodb:Query', true],
      ['iam:CreateUser', false],
      ['sts:AssumeRole', false],
      ['s3express:CreateSession', false],
    ] as const) {
      assert.equal(stack.sts.allows(creds.access_key_id, action), allowed, action);
    }
    const session = stack.sts.session(creds.access_key_id);
    // The actor is the agent's own account: AgentKeys' actor identifier of its wallet, bare hex (docs/mint.md).
    assert.deepEqual(session?.tags, {
      agentkeys_user_wallet: owner.wallet.lower,
      agentkeys_actor_omni: agentKeysActorOf('evm', agent.wallet.lower),
      agentkeys_scope_services: 'dynamodb s3',
      // The acting agent, its grant and its revocation epoch (docs/kill-switch.md).
      agentkeys_agent_wallet: agent.wallet.lower,
      agentkeys_grant_id: g.grant_id,
      agentkeys_revocation_epoch: '0',
    });
    assert.deepEqual([...(session?.transitiveTagKeys ?? [])].sort(), [
      'agentkeys_actor_omni',
      'agentkeys_agent_wallet',
      'agentkeys_grant_id',
      'agentkeys_revocation_epoch',
      'agentkeys_scope_services',
      'agentkeys_user_wallet',
    ]);
    const claims = decodeJwt(call?.fields.WebIdentityToken ?? '');
    assert.deepEqual(claims.agentkeys_scope, { services: ['s3', 'dynamodb'] });
    assert.equal(claims.agentkeys_grant_id, g.grant_id);

    // A bare OIDC token would reach STS without the policy: refused, audited, STS never called.
    stack.sts.clear();
    const jwt = await stack.request('POST', '/v1/mint-oidc-jwt', { token: agent.token });
    assertRefused(jwt, 403, 'forbidden', /scope.*mint-aws-creds/);
    assert.ok(!/eyJ[\w-]+\.[\w-]+\./.test(jwt.text));
    assert.equal(stack.sts.calls().length, 0);
    const denied = await stack.db.query<{ outcome: string }>(
      `SELECT outcome FROM audit_log WHERE omni_account = $1 AND event = 'mint.oidc' ORDER BY seq DESC LIMIT 1`,
      [agent.omni_account],
    );
    assert.equal(denied.rows[0]?.outcome, 'denied');
  });

  void test('roles: the data role must be named; with no services there is no session policy', async () => {
    const dataRole = stack.config.BROKER_DATA_ROLE_ARN ?? '';
    const [elsewhere, here] = await Promise.all([walletLogin(stack), walletLogin(stack)]);
    await acceptGrant(
      stack,
      elsewhere.wallet,
      await createGrant(owner.token, { agent_address: elsewhere.wallet.lower, scope: { roles: ['arn:aws:iam::123456789012:role/other'] } }),
    );
    await acceptGrant(stack, here.wallet, await createGrant(owner.token, { agent_address: here.wallet.lower, scope: { roles: [dataRole] } }));
    stack.sts.clear();
    assertRefused(await stack.request('POST', '/v1/mint-aws-creds', { token: elsewhere.token }), 403, 'forbidden', /data role/);
    assert.equal(stack.sts.calls().length, 0);
    const creds = await mintAws(stack, here.token);
    const [call] = assumeCalls();
    assert.equal(call?.fields.Policy, undefined);
    assert.equal(stack.sts.allows(creds.access_key_id, 'iam:CreateUser'), true, 'no session policy: the role decides');
    assert.deepEqual(decodeJwt(call?.fields.WebIdentityToken ?? '').agentkeys_scope, { roles: [dataRole] });
  });

  void test('an unscoped grant mints as the main wallet does: no policy, no scope claim, OIDC tokens too', async () => {
    const agent = await walletLogin(stack);
    const grant = await createGrant(owner.token, { agent_address: agent.wallet.lower });
    await acceptGrant(stack, agent.wallet, grant);
    stack.sts.clear();
    await mintAws(stack, agent.token);
    const [call] = assumeCalls();
    assert.equal(call?.fields.Policy, undefined);
    const claims = decodeJwt(call?.fields.WebIdentityToken ?? '');
    assert.equal(claims.agentkeys_scope, undefined);
    const acting = { agentkeys_agent_wallet: [agent.wallet.lower], agentkeys_grant_id: [grant.grant_id], agentkeys_revocation_epoch: ['0'] };
    assert.deepEqual(claims['https://aws.amazon.com/tags'], {
      principal_tags: { agentkeys_user_wallet: [owner.wallet.lower], agentkeys_actor_omni: [agentKeysActorOf('evm', agent.wallet.lower)], ...acting },
      transitive_tag_keys: ['agentkeys_user_wallet', 'agentkeys_actor_omni', ...Object.keys(acting)],
    });
    assert.equal((await mintOidc(stack, agent.token)).wallet, owner.wallet.lower);
  });
});

// ---- add_wallet: bounded ---------------------------------------------------------------------------

interface TeeAccount {
  omni: string;
  token: string;
}

async function teeAccount(): Promise<TeeAccount> {
  const identity = { type: 'email' as const, value: `slots.${randomBytes(6).toString('hex')}@example.com` };
  const omni = deriveOmniAccount('agentkeys', identity);
  const token = signTeeJwt(tee.privateKey, teeClaims(omni, 'access', 'agentkeys', Math.floor(Date.now() / 1000)));
  const r = await stack.request('POST', '/v3/account/post_heima_login', {
    token,
    body: { userId: identity, clientId: 'agentkeys', clientAuth: null, heimaLoginSuccess: true },
  });
  assert.equal(r.status, 200, r.text);
  return { omni, token };
}

const addWallet = (a: TeeAccount, body?: unknown, headers: Record<string, string> = {}) =>
  stack.request('POST', '/v3/account/add_wallet', { token: a.token, body, headers });

async function slotsOf(a: TeeAccount): Promise<number[]> {
  const r = await stack.db.query<{ wallet_index: number }>('SELECT wallet_index FROM wallets WHERE omni_account = $1 ORDER BY wallet_index', [a.omni]);
  return r.rows.map((x) => x.wallet_index);
}

/** The callbacks' envelope refusal: status, code = status × 100, no data; no row changed, no workflow started. */
async function expectCallbackRefusals(
  cases: { name: string; account: TeeAccount; body?: unknown; headers?: Record<string, string>; status: number; message: RegExp }[],
): Promise<void> {
  const before = await dbSnapshot(stack.db);
  const started = starts.count();
  for (const c of cases) {
    const r = await addWallet(c.account, c.body, c.headers);
    assert.equal(r.status, c.status, `${c.name}: ${r.text}`);
    const body = r.body as { code: number; message: string; data: unknown };
    assert.equal(body.code, c.status * 100, c.name);
    assert.equal(body.data, null, c.name);
    assert.match(body.message, c.message, c.name);
  }
  await assertUnchanged(stack.db, before, 'after the refused add_wallet calls');
  assert.equal(starts.count(), started, 'a refused add_wallet started a workflow');
}

void describe('add_wallet: bounded', () => {
  void test(`slots per account are capped (${SLOT_CAP}); slot numbers stop at 999`, async () => {
    const a = await teeAccount();
    for (let i = 0; i < SLOT_CAP; i++) assert.equal((await addWallet(a)).status, 200);
    assert.deepEqual(await slotsOf(a), [0, 1, 2, 3, 4]);
    await expectCallbackRefusals([
      { name: 'one more slot', account: a, status: 409, message: /BROKER_WALLET_SLOTS_MAX = 5/ },
      { name: 'a new slot number', account: a, body: { wallet_index: 7 }, status: 409, message: /5 wallet slots/ },
      { name: 'slot 1000', account: a, body: { wallet_index: 1000 }, status: 400, message: /at most 999/ },
      { name: 'slot 2^31-1', account: a, body: { wallet_index: 2_147_483_647 }, status: 400, message: /at most 999/ },
      { name: 'slot -1', account: a, body: { wallet_index: -1 }, status: 400, message: /wallet_index/ },
      { name: 'a fractional slot', account: a, body: { wallet_index: 1.5 }, status: 400, message: /wallet_index/ },
    ]);
    // An existing slot is still answered (nothing new).
    assert.equal((await addWallet(a, { wallet_index: 3 })).status, 200);
    assert.deepEqual(await slotsOf(a), [0, 1, 2, 3, 4]);
  });

  void test('an Idempotency-Key reused with another request is a 409; the same request answers again', async () => {
    const a = await teeAccount();
    const key = { 'idempotency-key': `slot-${randomBytes(4).toString('hex')}` };
    assert.equal((await addWallet(a, { wallet_index: 2 }, key)).status, 200);
    const other = { 'idempotency-key': `slot-${randomBytes(4).toString('hex')}` };
    assert.equal((await addWallet(a, undefined, other)).status, 200);
    assert.deepEqual(await slotsOf(a), [0, 2]);
    await expectCallbackRefusals([
      { name: 'another wallet_index', account: a, body: { wallet_index: 3 }, headers: key, status: 409, message: /Idempotency-Key.*wallet_index 2/ },
      { name: 'no wallet_index', account: a, headers: key, status: 409, message: /Idempotency-Key/ },
      {
        name: 'a number where the first asked for the lowest free slot',
        account: a,
        body: { wallet_index: 0 },
        headers: other,
        status: 409,
        message: /lowest free slot/,
      },
    ]);
    const before = await dbSnapshot(stack.db);
    assert.equal((await addWallet(a, { wallet_index: 2 }, key)).status, 200);
    assert.equal((await addWallet(a, undefined, other)).status, 200);
    await assertUnchanged(stack.db, before, 'retries of the same requests');
  });

  void test('one Idempotency-Key with two bodies at once: one slot; the other body is a 409', async () => {
    const a = await teeAccount();
    const headers = { 'idempotency-key': `race-${randomBytes(4).toString('hex')}` };
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => addWallet(a, { wallet_index: i % 2 ? 1 : 3 }, headers)));
    const slots = await slotsOf(a);
    assert.equal(slots.length, 1, JSON.stringify(slots));
    const winner = slots[0] === 1 ? 1 : 0;
    results.forEach((r, i) => assert.equal(r.status, i % 2 === winner ? 200 : 409, `${i}: ${r.text}`));
  });

  void test(`rate limited per account (${ADD_WALLET_PER_MINUTE} a minute): then 429 with Retry-After; other accounts unaffected`, async () => {
    const a = await teeAccount();
    const b = await teeAccount();
    for (let i = 0; i < ADD_WALLET_PER_MINUTE; i++) assert.equal((await addWallet(a, { wallet_index: 0 })).status, 200);
    const started = starts.count();
    const limited = await addWallet(a, { wallet_index: 0 });
    assert.equal(limited.status, 429, limited.text);
    assert.equal((limited.body as { code: number }).code, 42900);
    assert.ok(Number(limited.headers.get('retry-after')) >= 1);
    assert.equal(starts.count(), started);
    assert.equal((await addWallet(b, { wallet_index: 0 })).status, 200);
  });

  void test('/v1/session/me lists at most 1000 wallet slots, lowest first', async () => {
    const a = await teeAccount();
    // Slots an account collected before the cap existed.
    await stack.db.query(`INSERT INTO wallets (omni_account, wallet_index, address, role) SELECT $1, i, NULL, 'agent' FROM generate_series(1, 1100) AS i`, [
      a.omni,
    ]);
    const me = await stack.request('GET', '/v1/session/me', { token: a.token });
    assert.equal(me.status, 200, me.text.slice(0, 300));
    const wallets = (me.body as { wallets: { wallet_index: number }[] }).wallets;
    assert.equal(wallets.length, 1000);
    assert.equal(wallets[0]?.wallet_index, 1);
    assert.equal(wallets.at(-1)?.wallet_index, 1000);
  });
});
