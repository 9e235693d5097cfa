import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { verifyAuditChain } from '../db/audit-query';
import { generateTeeKeyPair, signTeeJwt, teeClaims, type TeeKeyPair } from '../fixtures/tee/jwt';
import { startStack, type TestStack } from './harness';
import { assertRefused, assertUnchanged, dbSnapshot, expectAllRefused as expectRefusals, spyWorkflowStarts, type RefusalCase, type WorkflowStartSpy } from './adversarial-probes';
import { expiredSession, forgedBearers } from './adversarial-tokens';
import { mintOidc, type WalletSession, walletLogin } from './mint-client';

/**
 * POST / GET / DELETE /v1/grants against malformed, oversized, expired, replayed, forged and
 * concurrent input: every refusal is a clear 4xx that changes no row and starts no workflow.
 */

const MAX_TTL = 7 * 86400;
let stack: TestStack;
let tee: TeeKeyPair;
let owner: WalletSession;
let starts: WorkflowStartSpy;

before(async () => {
  tee = await generateTeeKeyPair();
  stack = await startStack({
    env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000', BROKER_TEE_JWT_PUBLIC_KEY: tee.publicKeyPem, BROKER_GRANT_MAX_TTL_SECONDS: String(MAX_TTL) },
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

interface Grant {
  grant_id: string;
  main_address: string;
  agent_address: string;
  scope: { services?: string[]; roles?: string[] };
  expires_at: number;
}

async function createGrant(token: string, body: unknown, headers: Record<string, string> = {}): Promise<Grant> {
  const res = await stack.request('POST', '/v1/grants', { token, body, headers });
  assert.equal(res.status, 201, res.text);
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
      { name: 'own address, lower case', token: t, body: { agent_address: own }, status: 400, error: 'bad_request', message: /differ from the main/ },
      { name: 'own address, checksummed', token: t, body: { agent_address: owner.wallet.address }, status: 400, error: 'bad_request', message: /differ from the main/ },
      { name: 'own address, upper-case hex', token: t, body: { agent_address: upperHex(own) }, status: 400, error: 'bad_request', message: /differ from the main/ },
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
    ];
    await expectAllRefused(
      bad.map(([name, scope]) => ({ name, token: owner.token, body: { agent_address: agent, scope }, status: 400, error: 'bad_request', message: /scope/ })),
    );
  });

  void test('expires_in: 0, negative, fractional, a string, beyond the maximum, infinite → 400, nothing written', async () => {
    const agent = evmAddress();
    const values: unknown[] = [0, -1, -3600, 59, 60.5, '3600', null, true, MAX_TTL + 1, Number.MAX_SAFE_INTEGER, 1e308];
    await expectAllRefused([
      ...values.map((expires_in) => ({ name: `expires_in ${JSON.stringify(expires_in)}`, token: owner.token, body: { agent_address: agent, expires_in }, status: 400, error: 'bad_request', message: /expires_in/ })),
      // JSON.parse reads 1e400 as Infinity.
      { name: 'expires_in 1e400', token: owner.token, body: `{"agent_address":"${agent}","expires_in":1e400}`, status: 400, error: 'bad_request', message: /expires_in/ },
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
      { name: 'constructor.prototype', token: t, body: `{"agent_address":"${agent}","constructor":{"prototype":{"admin":true}}}`, status: 400, error: 'bad_request' },
      { name: 'text/plain', token: t, body: agent, headers: { 'content-type': 'text/plain' }, status: 415, error: 'bad_request', message: /JSON/ },
      { name: 'form encoded', token: t, body: `agent_address=${agent}`, headers: { 'content-type': 'application/x-www-form-urlencoded' }, status: 415, error: 'bad_request', message: /JSON/ },
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
    const malformed = [`grt_${'a'.repeat(31)}`, `grt_${'a'.repeat(33)}`, `grt_${'A'.repeat(32)}`, `grt_${'g'.repeat(32)}`, 'a'.repeat(36), `grt_x'%20OR%20'1'='1`, '%00', `grt_${'a'.repeat(32)}%0A`];
    await expectAllRefused([
      ...malformed.map((id) => ({ name: `DELETE ${id}`, method: 'DELETE', path: `/v1/grants/${id}`, token: t, status: 400, error: 'bad_request', message: /grant_id/ })),
      { name: 'unknown id', method: 'DELETE', path: `/v1/grants/grt_${randomBytes(16).toString('hex')}`, token: t, status: 404, error: 'not_found', message: /no such grant/ },
      { name: 'no id', method: 'DELETE', path: '/v1/grants/', token: t, status: 400, error: 'bad_request' },
      { name: 'the collection', method: 'DELETE', path: '/v1/grants', token: t, status: 404, error: 'not_found' },
      // The router refuses these before the route; in the wire shape too, without echoing the URL.
      { name: 'a 5 KB id', method: 'DELETE', path: `/v1/grants/grt_${'a'.repeat(5000)}`, token: t, status: 414, error: 'bad_request', message: /^a path parameter is too long$/ },
      { name: 'broken percent-encoding', method: 'DELETE', path: '/v1/grants/grt_%E0%A4%A', token: t, status: 400, error: 'bad_request', message: /^the URL is malformed$/ },
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
      { name: '1 MB', token: owner.token, body: { agent_address: agent, scope: { services: ['x'.repeat(1024 * 1024)] } }, status: 413, error: 'payload_too_large' },
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
      { method: 'DELETE', path: `/v1/grants/${grant.grant_id}` },
    ];
    await expectAllRefused(
      routes.flatMap((r) => bearers.map((b) => ({ ...r, name: `${r.method} ${r.path} with ${b.name}`, token: b.token, status: 401, error: 'unauthorized', message: b.message }))),
    );
    // Positive control: the victim's own token still works, and the grant was never revoked.
    const listed = await stack.request('GET', '/v1/grants', { token: victim.token });
    assert.equal(listed.status, 200, listed.text);
    assert.deepEqual(
      (listed.body as { grants: { grant_id: string; active: boolean }[] }).grants.map((g) => [g.grant_id, g.active]),
      [[grant.grant_id, true]],
    );
  });

  void test('replayed POST (same Idempotency-Key): the same grant; with another body a 409; after a revoke still the revoked grant', async () => {
    const key = `replay-${randomBytes(4).toString('hex')}`;
    const agent = evmAddress();
    const body = { agent_address: agent, scope: { services: ['s3'] }, expires_in: 3600 };
    const first = await createGrant(owner.token, body, { 'idempotency-key': key });
    const before = await dbSnapshot(stack.db);
    // Field order and address case do not make it another request.
    const again = await createGrant(owner.token, { expires_in: 3600, scope: { services: ['s3'] }, agent_address: upperHex(agent) }, { 'idempotency-key': key });
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
    const replayed = await createGrant(owner.token, body, { 'idempotency-key': key });
    assert.equal(replayed.grant_id, first.grant_id);
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
  void test('20 concurrent POSTs with one Idempotency-Key: one grant, one audit row, 20 identical answers', async () => {
    const key = `concurrent-${randomBytes(4).toString('hex')}`;
    const body = { agent_address: evmAddress(), scope: { roles: ['reader'] }, expires_in: 600 };
    const results = await Promise.all(Array.from({ length: 20 }, () => stack.request('POST', '/v1/grants', { token: owner.token, body, headers: { 'idempotency-key': key } })));
    for (const r of results) assert.equal(r.status, 201, r.text);
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
      Array.from({ length: 10 }, (_, i) => stack.request('POST', '/v1/grants', { token: owner.token, body: { agent_address: agents[i % 2] }, headers: { 'idempotency-key': key } })),
    );
    const won = results.filter((r) => r.status === 201).map((r) => r.body as Grant);
    assert.ok(won.length >= 1);
    const winner = won[0];
    for (const g of won) assert.deepEqual(g, winner);
    for (const r of results) if (r.status !== 201) assertRefused(r, 409, 'conflict', /Idempotency-Key/);
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
    const creates = accounts.flatMap((a) => Array.from({ length: 8 }, () => stack.request('POST', '/v1/grants', { token: a.token, body: { agent_address: evmAddress() } })));
    const revokes = accounts.map((a, i) => stack.request('DELETE', `/v1/grants/${existing[i]?.grant_id ?? ''}`, { token: a.token }));
    const results = await Promise.all([...creates, ...revokes]);
    assert.deepEqual(results.map((r) => r.status).sort(), [...Array.from({ length: 24 }, () => 201), 204, 204, 204]);
    const auditAfter = (await stack.db.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_log')).rows[0]?.n ?? 0;
    assert.equal(auditAfter - auditBefore, 24 + 3);
    const chain = await verifyAuditChain(stack.db);
    assert.ok(chain.ok, JSON.stringify(chain));
  });
});
