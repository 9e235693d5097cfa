import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { SignJWT } from 'jose';
import { buildApp } from '../api/app';
import { insertGrant, markGrantAccepted } from '../db/grants';
import { callTeeRpc } from '../fixtures/tee/client';
import { generateTeeKeyPair, signTeeJwt } from '../fixtures/tee/jwt';
import { startTeeFixture, type TeeFixture } from '../fixtures/tee/server';
import { deriveOmniAccount, type Identity } from '../lib/omni';
import { teeKeyReadiness } from '../adapters/tee-jwt';
import { startStack, type TestStack } from './harness';

/**
 * The TEE → broker callbacks (docs/contracts.md §3) with the exact upstream request shapes, the exact
 * envelopes, and bad input that must change nothing.
 */

let stack: TestStack;
let tee: TeeFixture;
before(async () => {
  const key = await generateTeeKeyPair();
  stack = await startStack({ env: { BROKER_TEE_JWT_PUBLIC_KEY: key.publicKeyPem } });
  tee = await startTeeFixture({ brokerBaseUrl: `${stack.url}/`, privateKeyPem: key.privateKeyPem });
});
after(async () => {
  await tee?.close();
  await stack?.stop();
});

const nowS = () => Math.floor(Date.now() / 1000);
const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
const evmAddress = () => `0x${randomBytes(20).toString('hex')}`;

function accessToken(sub: string, overrides: Record<string, unknown> = {}): string {
  return tee.issueToken({ sub, typ: 'access', exp: nowS() + 7 * 86400, aud: 'agentkeys', ...overrides });
}

function loginBody(userId: Identity, extra: Record<string, unknown> = {}) {
  return { userId, clientId: 'agentkeys', clientAuth: null, heimaLoginSuccess: true, ...extra };
}

async function postLogin(identity: Identity, token?: string, body: unknown = loginBody(identity)) {
  const t = token ?? accessToken(deriveOmniAccount('agentkeys', identity));
  return stack.request('POST', '/v3/account/post_heima_login', { token: t, body, headers: { 'x-language': 'en' } });
}

async function counts(): Promise<Record<string, number>> {
  const r = await stack.db.query<Record<string, string>>(
    `SELECT (SELECT count(*) FROM users)::text AS users, (SELECT count(*) FROM tee_logins)::text AS tee_logins,
            (SELECT count(*) FROM wallets)::text AS wallets, (SELECT count(*) FROM tee_wallet_requests)::text AS wallet_requests,
            (SELECT count(*) FROM audit_log)::text AS audit, (SELECT count(*) FROM grants)::text AS grants`,
  );
  return Object.fromEntries(Object.entries(r.rows[0] ?? {}).map(([k, v]) => [k, Number(v)]));
}

/** A grant of `main` to `agent` (pending until accepted), written straight to the database; its id. */
async function pendingGrant(main: string, agent: string): Promise<string> {
  const now = new Date();
  const grantId = `grt_${randomBytes(16).toString('hex')}`;
  await insertGrant(stack.db, {
    grantId,
    mainAccount: `0x${'0'.repeat(64)}`,
    mainAddress: main,
    agentAddress: agent,
    scope: {},
    createdAt: now,
    expiresAt: new Date(now.getTime() + 3600_000),
    maxLive: 100,
  });
  return grantId;
}

/** A failure envelope: the given 4xx status, code = status × 100 (never 10000), data null. */
function assertFailure(res: { status: number; body: unknown; text: string }, status: number): void {
  assert.equal(res.status, status, res.text);
  const b = res.body as { code: number; message: string; data: unknown };
  assert.deepEqual(Object.keys(b).sort(), ['code', 'data', 'message'], res.text);
  assert.notEqual(b.code, 10000);
  assert.equal(b.code, status * 100);
  assert.equal(b.data, null);
  assert.ok(b.message.length > 0);
}

/** POST exactly as the TEE's reqwest client sends the body-less add_wallet: Content-Length 0, no Content-Type. */
function rawAddWallet(path: string, token: string): Promise<{ status: number; body: unknown; text: string; sentHeaders: string[] }> {
  const url = new URL(path, stack.url);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method: 'POST',
        headers: { 'x-language': 'en', authorization: `Bearer ${token}`, 'content-length': '0' },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as unknown, text, sentHeaders: req.getHeaderNames() });
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const VARIANTS: Identity[] = [
  { type: 'email', value: 'Variant.Email@Example.com' },
  { type: 'evm', value: '0x1234567890abcdef1234567890abcdef12345678' },
  { type: 'google', value: '110169484474386276334' },
  { type: 'substrate', value: `0x${'ab'.repeat(32)}` },
  { type: 'bitcoin', value: `0x02${'cd'.repeat(32)}` },
  { type: 'solana', value: '4Nd1mBQtrMJVYVfKf2PJy9NZUZdTAsp7D4xWLs4gDB4T' },
  { type: 'twitter', value: 'agentkeys_dev' },
  { type: 'discord', value: 'agentkeys#0001' },
  { type: 'github', value: 'octocat' },
  { type: 'apple', value: '001234.0123456789abcdef.1234' },
  { type: 'pumpx', value: '424242' },
  { type: 'passkey', value: 'credential-7f3a' },
];

void describe('post_heima_login (exact upstream shapes)', () => {
  void test('every UserId variant: camelCase body → {"code":10000,"message":"OK","data":{"user_id"}} and a user', async () => {
    for (const identity of VARIANTS) {
      const omni = deriveOmniAccount('agentkeys', identity);
      const res = await postLogin(identity);
      assert.equal(res.status, 200, `${identity.type}: ${res.text}`);
      const body = res.body as { code: number; message: string; data: { user_id: string } };
      assert.deepEqual(Object.keys(body), ['code', 'message', 'data']);
      assert.equal(body.code, 10000);
      assert.equal(body.message, 'OK');
      assert.deepEqual(Object.keys(body.data), ['user_id']);
      const row = await stack.db.query<{ user_id: string; identity_type: string }>('SELECT user_id, identity_type FROM users WHERE omni_account = $1', [omni]);
      assert.deepEqual(row.rows, [{ user_id: body.data.user_id, identity_type: identity.type }], identity.type);
    }
    // The pinned vector of docs/contracts.md §1 is what the evm variant landed under.
    const pinned = await stack.db.query('SELECT 1 FROM users WHERE omni_account = $1', ['0xf77b15b548b5e46fe7bc01673db04ab9de4c3354690082f665a6d9704a9db567']);
    assert.equal(pinned.rowCount, 1);
  });

  void test('same login again: same user_id, no duplicate rows; ClientAuth is stored opaque with its secrets digested', async () => {
    const identity: Identity = { type: 'google', value: `g-${Date.now()}` };
    const omni = deriveOmniAccount('agentkeys', identity);
    const token = accessToken(omni);
    const clientAuth = { type: 'wildmeta', value: { google_code: '4/0AeanS0Zsecret', invite_code: 'INVITE1' }, extra_unknown: 1 };
    const first = await postLogin(identity, token, loginBody(identity, { clientAuth, unknownField: 'ignored' }));
    assert.equal(first.status, 200, first.text);
    const before = await counts();
    const second = await postLogin(identity, token, loginBody(identity, { clientAuth }));
    assert.deepEqual(second.body, first.body);
    assert.deepEqual(await counts(), before);
    const stored = await stack.db.query<{ client_auth: { type: string; value: Record<string, string> } }>(
      'SELECT client_auth FROM tee_logins WHERE omni_account = $1',
      [omni],
    );
    const auth = stored.rows[0]?.client_auth;
    assert.equal(auth?.type, 'wildmeta');
    assert.match(auth?.value.google_code ?? '', /^hmac:[0-9a-f]{32}$/);
    assert.doesNotMatch(JSON.stringify(stored.rows), /4\/0AeanS0Zsecret/);
    const audit = await stack.db.query('SELECT details::text AS d FROM audit_log WHERE omni_account = $1', [omni]);
    assert.equal(audit.rowCount, 1);
    assert.doesNotMatch(JSON.stringify(audit.rows), new RegExp(token.split('.')[2] ?? 'x'));
  });

  void test('50 concurrent identical callbacks (through two API instances) yield one user and one user_id', async () => {
    const identity: Identity = { type: 'email', value: `burst.${Date.now()}@example.com` };
    const omni = deriveOmniAccount('agentkeys', identity);
    const token = accessToken(omni);
    const body = JSON.stringify(loginBody(identity));
    const second = await buildApp(stack.deps, { logLevel: 'silent' });
    try {
      const calls = Array.from({ length: 50 }, (_, i) =>
        i % 2 === 0
          ? stack.request('POST', '/v3/account/post_heima_login', { token, body }).then((r) => ({ status: r.status, body: r.body }))
          : second
              .inject({
                method: 'POST',
                url: '/v3/account/post_heima_login',
                headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
                payload: body,
              })
              .then((r) => ({ status: r.statusCode, body: r.json<unknown>() })),
      );
      const results = await Promise.all(calls);
      for (const r of results) assert.equal(r.status, 200, JSON.stringify(r.body));
      const ids = new Set(results.map((r) => (r.body as { data: { user_id: string } }).data.user_id));
      assert.equal(ids.size, 1);
      const users = await stack.db.query('SELECT user_id FROM users WHERE omni_account = $1', [omni]);
      assert.deepEqual(users.rows, [{ user_id: [...ids][0] }]);
      const logins = await stack.db.query('SELECT 1 FROM tee_logins WHERE omni_account = $1', [omni]);
      assert.equal(logins.rowCount, 1);
      const audit = await stack.db.query(`SELECT 1 FROM audit_log WHERE omni_account = $1 AND event = 'tee.post_heima_login'`, [omni]);
      assert.equal(audit.rowCount, 1);
    } finally {
      await second.close();
    }
  });
});

void describe('add_wallet (exact upstream shapes)', () => {
  void test('empty body, no Content-Type: the next free slot; {"wallet_index":N} twice is one slot; the /add_wallet alias', async () => {
    const identity: Identity = { type: 'email', value: `wallets.${Date.now()}@example.com` };
    const omni = deriveOmniAccount('agentkeys', identity);
    const token = accessToken(omni);
    assert.equal((await postLogin(identity, token)).status, 200);

    const first = await rawAddWallet('/v3/account/add_wallet', token);
    assert.ok(!first.sentHeaders.includes('content-type'));
    assert.equal(first.status, 200, first.text);
    assert.equal(first.text, '{"code":10000,"message":"OK","data":{}}');

    const five = await stack.request('POST', '/v3/account/add_wallet', { token, body: { wallet_index: 5 } });
    assert.equal(five.text, '{"code":10000,"message":"OK","data":{}}');
    const before = await counts();
    const fiveAgain = await stack.request('POST', '/add_wallet', { token, body: { wallet_index: 5 } });
    assert.equal(fiveAgain.text, '{"code":10000,"message":"OK","data":{}}');
    assert.equal((await counts()).wallets, before.wallets, 'the same index twice is one slot');

    const alias = await rawAddWallet('/add_wallet', token);
    assert.equal(alias.text, '{"code":10000,"message":"OK","data":{}}');
    // An empty JSON body with a JSON Content-Type is the same as none.
    const emptyJson = await stack.request('POST', '/v3/account/add_wallet', { token, body: '', headers: { 'content-type': 'application/json' } });
    assert.equal(emptyJson.status, 200, emptyJson.text);

    const slots = await stack.db.query('SELECT wallet_index, address, role FROM wallets WHERE omni_account = $1 ORDER BY wallet_index', [omni]);
    assert.deepEqual(slots.rows, [
      { wallet_index: 0, address: null, role: 'main' },
      { wallet_index: 1, address: null, role: 'agent' },
      { wallet_index: 2, address: null, role: 'agent' },
      { wallet_index: 5, address: null, role: 'agent' },
    ]);
    const audit = await stack.db.query(`SELECT 1 FROM audit_log WHERE omni_account = $1 AND event = 'tee.add_wallet'`, [omni]);
    assert.equal(audit.rowCount, 5);
  });

  void test('an Idempotency-Key makes an empty-body retry answer the same slot', async () => {
    const identity: Identity = { type: 'email', value: `idem.${Date.now()}@example.com` };
    const omni = deriveOmniAccount('agentkeys', identity);
    const token = accessToken(omni);
    assert.equal((await postLogin(identity, token)).status, 200);
    for (let i = 0; i < 2; i++) {
      const r = await stack.request('POST', '/v3/account/add_wallet', { token, headers: { 'idempotency-key': 'retry-1' } });
      assert.equal(r.status, 200, r.text);
    }
    const slots = await stack.db.query('SELECT wallet_index FROM wallets WHERE omni_account = $1', [omni]);
    assert.equal(slots.rowCount, 1);
  });
});

void describe('get_account_user_id and check_hyper_agent_address', () => {
  void test('get_account_user_id: {"userId"} for a known address, null otherwise; the alias; bad query → 400', async () => {
    const identity: Identity = { type: 'email', value: `lookup.${Date.now()}@example.com` };
    const login = await postLogin(identity);
    const userId = (login.body as { data: { user_id: string } }).data.user_id;
    const known = await stack.request('GET', `/v3/account/get_account_user_id?email=${encodeURIComponent(identity.value.toUpperCase())}`);
    assert.equal(known.text, JSON.stringify({ code: 10000, message: 'OK', data: { userId } }));
    const alias = await stack.request('GET', `/get_account_user_id?email=${encodeURIComponent(identity.value)}`);
    assert.equal(alias.text, known.text);
    const unknown = await stack.request('GET', '/v3/account/get_account_user_id?email=nobody%40example.com');
    assert.equal(unknown.text, '{"code":10000,"message":"OK","data":{"userId":null}}');
    assertFailure(await stack.request('GET', '/v3/account/get_account_user_id'), 400);
    assertFailure(await stack.request('GET', '/v3/account/get_account_user_id?email=not-an-address'), 400);
  });

  void test('check_hyper_agent_address: isBound follows accepted, live grants; addresses compare case-insensitively', async () => {
    const main = evmAddress();
    const agent = evmAddress();
    const ask = (m: string, a: string) =>
      stack.request('POST', '/v1/account/check_hyper_agent_address', { body: { main_address: m, agent_address: a, login_type: 1 } });
    assert.equal((await ask(main, agent)).text, '{"code":10000,"message":"OK","data":{"isBound":false}}');
    const grantId = await pendingGrant(main, agent);
    assert.equal((await ask(main, agent)).text, '{"code":10000,"message":"OK","data":{"isBound":false}}', 'a grant its agent has not accepted binds nothing');
    await markGrantAccepted(stack.db, grantId, new Date());
    assert.equal((await ask(main.toUpperCase().replace('0X', '0x'), agent)).text, '{"code":10000,"message":"OK","data":{"isBound":true}}');
    assert.equal((await ask(agent, main)).text, '{"code":10000,"message":"OK","data":{"isBound":false}}');
    assertFailure(await stack.request('POST', '/v1/account/check_hyper_agent_address', { body: { main_address: main } }), 400);
  });

  void test('check_hyper_agent_address answers every spelling of an address; a string that is none is "not linked" to the TEE, not a failed call', async () => {
    const main = evmAddress();
    const agent = evmAddress();
    const grantId = await pendingGrant(main, agent);
    await markGrantAccepted(stack.db, grantId, new Date());
    const ask = (m: string, a: string) =>
      stack.request('POST', '/v1/account/check_hyper_agent_address', { body: { main_address: m, agent_address: a, login_type: 0 } });
    // The TEE forwards the client's ClientAuth strings as they came: with or without 0x, any case.
    const spellings = (a: string) => [a, `0x${a.slice(2).toUpperCase()}`, a.slice(2), a.slice(2).toUpperCase(), `0X${a.slice(2)}`];
    for (const m of spellings(main))
      for (const a of spellings(agent)) assert.equal((await ask(m, a)).text, '{"code":10000,"message":"OK","data":{"isBound":true}}', `${m} ${a}`);
    assert.equal((await ask(`${agent.slice(2)}`, main.toUpperCase().slice(2))).text, '{"code":10000,"message":"OK","data":{"isBound":false}}');

    const before = await counts();
    const notAddresses = [
      'nope',
      '',
      '0x',
      main.slice(0, 41),
      `${main}00`,
      ` ${main}`,
      `${main}\n`,
      `0x${'g'.repeat(40)}`,
      `0x0x${main.slice(2)}`,
      'x'.repeat(4096),
    ];
    for (const bad of notAddresses) {
      for (const [field, body] of [
        ['main_address', { main_address: bad, agent_address: agent }],
        ['agent_address', { main_address: main, agent_address: bad }],
      ] as const) {
        const res = await stack.request('POST', '/v1/account/check_hyper_agent_address', { body: { ...body, login_type: 0 } });
        assert.equal(res.status, 200, `${field}=${JSON.stringify(bad.slice(0, 50))}: ${res.text}`);
        const b = res.body as { code: number; message: string; data: { isBound: boolean } };
        assert.equal(b.code, 40000);
        assert.match(b.message, new RegExp(`^${field} is not an EVM address`));
        assert.deepEqual(b.data, { isBound: false });
      }
    }
    assert.deepEqual(await counts(), before);

    // Through the TEE (fixture, which reads the answer as submit_user_op_with_auth.rs does): a bound
    // pair in another spelling goes through; a main_address that is no address is "not linked"
    // (-32003, AUTH_VERIFICATION_FAILED), not a failed backend call (-32165, WILDMETA_SERVICE_ERROR).
    const submit = (mainAddress: string) =>
      callTeeRpc(tee.url, 'omni_submitUserOpWithAuth', {
        user_operations: [],
        chain_id: 42161,
        wallet_index: 1,
        user_id: { type: 'email', value: `link.${Date.now()}@example.com` },
        client_id: 'agentkeys',
        client_auth: {
          type: 'wildmeta_hl',
          value: { agent_address: agent.slice(2).toUpperCase(), business_json: '{"timestamp":1}', main_address: mainAddress, signature: '0x', login_type: 0 },
        },
      });
    const bound = await submit(main.slice(2).toUpperCase());
    assert.ok('result' in bound, JSON.stringify(bound));
    const notLinked = await submit('not-an-address');
    assert.ok('error' in notLinked && notLinked.error.code === -32003, JSON.stringify(notLinked));
    assert.deepEqual(await counts(), before);
  });

  void test('the unauthenticated callbacks answer only sources on BROKER_TEE_CALLBACK_ALLOW (403 otherwise)', async () => {
    const outside = await stack.app.inject({ method: 'GET', url: '/v3/account/get_account_user_id?email=a%40example.com', remoteAddress: '203.0.113.7' });
    assertFailure({ status: outside.statusCode, body: outside.json<unknown>(), text: outside.body }, 403);
    const outsideCheck = await stack.app.inject({
      method: 'POST',
      url: '/v1/account/check_hyper_agent_address',
      remoteAddress: '2001:db8::1',
      payload: { main_address: evmAddress(), agent_address: evmAddress(), login_type: 0 },
    });
    assertFailure({ status: outsideCheck.statusCode, body: outsideCheck.json<unknown>(), text: outsideCheck.body }, 403);

    const app = await buildApp(
      { ...stack.deps, config: { ...stack.config, BROKER_TEE_CALLBACK_ALLOW: '203.0.113.0/24, 2001:db8::/32' } },
      { logLevel: 'silent' },
    );
    try {
      for (const remoteAddress of ['203.0.113.7', '::ffff:203.0.113.8', '2001:db8::1']) {
        const r = await app.inject({ method: 'GET', url: '/get_account_user_id?email=a%40example.com', remoteAddress });
        assert.equal(r.statusCode, 200, `${remoteAddress}: ${r.body}`);
      }
      const loopback = await app.inject({ method: 'GET', url: '/get_account_user_id?email=a%40example.com', remoteAddress: '127.0.0.1' });
      assert.equal(loopback.statusCode, 403);
    } finally {
      await app.close();
    }
  });
});

/**
 * Upstream identity rules and HTTP quirks the callbacks must tolerate (litentry/heima
 * `parachain/primitives/src/identity.rs`; the wildmeta client's `verify_hyperliquid_link.rs`; the pumpx
 * client's `get_account_user_id`).
 */
void describe('upstream identity rules and quirks', () => {
  void test('a userId over 64 bytes is refused (400, nothing written), though its TEE sub is the derivation of its first 64 bytes', async () => {
    const value = `${'x'.repeat(60)}.long@example.com`; // 77 bytes
    const cut = value.slice(0, 64);
    const before = await counts();
    // The TEE signs the sub of the first 64 bytes: an account that another value (the cut itself) owns.
    const res = await postLogin({ type: 'email', value }, accessToken(deriveOmniAccount('agentkeys', { type: 'email', value: cut })));
    assertFailure(res, 400);
    assert.match((res.body as { message: string }).message, /over 64 bytes/);
    assert.deepEqual(await counts(), before);
    // Exactly 64 bytes is taken whole.
    assert.equal((await postLogin({ type: 'email', value: cut })).status, 200);
  });

  void test('a userId cut inside a UTF-8 character (upstream: the empty string) is refused, nothing written', async () => {
    const value = `${'y'.repeat(63)}é-collapsed`;
    const before = await counts();
    // The TEE would sign the sub of the empty value; the broker refuses to give strangers one account.
    const res = await postLogin({ type: 'google', value }, accessToken(deriveOmniAccount('agentkeys', { type: 'google', value: '' })));
    assertFailure(res, 400);
    assert.match((res.body as { message: string }).message, /UTF-8 character/);
    assert.deepEqual(await counts(), before);
  });

  void test('check_hyper_agent_address: login_type over the whole i32 range, no X-Language needed', async () => {
    for (const login_type of [-(2 ** 31), -1, 0, 256, 2 ** 31 - 1]) {
      const res = await stack.request('POST', '/v1/account/check_hyper_agent_address', {
        body: { main_address: evmAddress(), agent_address: evmAddress(), login_type },
      });
      assert.equal(res.status, 200, `${login_type}: ${res.text}`);
      assert.deepEqual(res.body, { code: 10000, message: 'OK', data: { isBound: false } });
    }
    assertFailure(
      await stack.request('POST', '/v1/account/check_hyper_agent_address', {
        body: { main_address: evmAddress(), agent_address: evmAddress(), login_type: 2 ** 31 },
      }),
      400,
    );
    assertFailure(
      await stack.request('POST', '/v1/account/check_hyper_agent_address', {
        body: { main_address: evmAddress(), agent_address: evmAddress(), login_type: 1.5 },
      }),
      400,
    );
  });

  void test('get_account_user_id: the TEE reads data.userId whatever the status, so no failure carries one', async () => {
    const outside = await stack.app.inject({ method: 'GET', url: '/v3/account/get_account_user_id?email=a%40example.com', remoteAddress: '203.0.113.9' });
    assert.equal(outside.statusCode, 403);
    assert.equal((JSON.parse(outside.body) as { data: unknown }).data, null);
    for (const q of ['', '?email=nope', `?email=${'a'.repeat(300)}%40example.com`]) {
      const r = await stack.request('GET', `/v3/account/get_account_user_id${q}`);
      assertFailure(r, 400);
    }
  });
});

void describe('OpenAPI', () => {
  void test('the callbacks and the grants are documented (aliases hidden)', async () => {
    const doc = await stack.request('GET', '/docs/json');
    assert.equal(doc.status, 200, doc.text.slice(0, 300));
    const paths = Object.keys((doc.body as { paths: Record<string, unknown> }).paths);
    for (const p of [
      '/v3/account/post_heima_login',
      '/v3/account/add_wallet',
      '/v3/account/get_account_user_id',
      '/v1/account/check_hyper_agent_address',
      '/v1/grants',
      '/v1/grants/{grant_id}',
    ]) {
      assert.ok(paths.includes(p), p);
    }
    assert.ok(!paths.includes('/add_wallet'));
  });
});

void describe('bad input: non-10000 codes with 4xx, nothing written', () => {
  void test('bearers that must be refused, a sub that is not userId’s, unknown userId.type, a 1 MB body', async () => {
    const identity: Identity = { type: 'email', value: `bad.${Date.now()}@example.com` };
    const omni = deriveOmniAccount('agentkeys', identity);
    const good = { sub: omni, typ: 'access', exp: nowS() + 3600, aud: 'agentkeys' };
    const other = await generateTeeKeyPair();
    const hs256 = await new SignJWT(good).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(Buffer.from(tee.publicKeyPem));
    const hs256Hex = await new SignJWT(good).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(Buffer.from(tee.publicKeyPkcs1DerHex));
    const cases: { name: string; token?: string; authorization?: string; body?: unknown; status: number; message: RegExp }[] = [
      { name: 'no bearer', status: 401, message: /missing Authorization/ },
      { name: 'malformed bearer', authorization: 'Bearer not-a-jwt', status: 401, message: /malformed Authorization/ },
      { name: 'not a bearer', authorization: `Basic ${Buffer.from('a:b').toString('base64')}`, status: 401, message: /malformed Authorization/ },
      { name: 'expired', token: accessToken(omni, { exp: nowS() - 5 }), status: 401, message: /token expired/ },
      { name: 'no exp', token: tee.issueToken({ sub: omni, typ: 'access', aud: 'agentkeys' }), status: 401, message: /claim exp missing/ },
      { name: 'aud wildmeta', token: accessToken(omni, { aud: 'wildmeta' }), status: 401, message: /claim aud/ },
      { name: 'typ id', token: accessToken(omni, { typ: 'id' }), status: 401, message: /typ "id"/ },
      { name: 'alg none', token: `${b64({ alg: 'none', typ: 'JWT' })}.${b64(good)}.`, status: 401, message: /algorithm none not allowed/ },
      { name: 'HS256 signed with the public key (PEM)', token: hs256, status: 401, message: /algorithm HS256 not allowed/ },
      { name: 'HS256 signed with the public key (hex)', token: hs256Hex, status: 401, message: /algorithm HS256 not allowed/ },
      { name: 'a kid pointing nowhere', token: tee.issueToken(good, { alg: 'RS256', typ: 'JWT', kid: 'nowhere' }), status: 401, message: /unknown kid/ },
      { name: 'signed by another key', token: signTeeJwt(other.privateKey, good), status: 401, message: /signature verification failed/ },
      {
        name: 'sub not derived from userId',
        token: accessToken(deriveOmniAccount('agentkeys', { type: 'email', value: 'someone.else@example.com' })),
        status: 403,
        message: /sub is not the OmniAccount/,
      },
      {
        name: 'sub derived under another client',
        token: accessToken(deriveOmniAccount('wildmeta', identity)),
        status: 403,
        message: /sub is not the OmniAccount/,
      },
      {
        name: 'unknown userId.type',
        body: loginBody({ type: 'telegram', value: 'x' } as unknown as Identity),
        status: 400,
        message: /userId\.type must be one of/,
      },
      {
        name: 'bad evm value',
        token: accessToken(omni),
        body: loginBody({ type: 'evm', value: '0x1234' }),
        status: 400,
        message: /evm address must be 20 bytes/,
      },
      { name: 'clientId wildmeta', body: { ...loginBody(identity), clientId: 'wildmeta' }, status: 400, message: /clientId must be "agentkeys"/ },
      { name: 'heimaLoginSuccess missing', body: { userId: identity, clientId: 'agentkeys', clientAuth: null }, status: 400, message: /heimaLoginSuccess/ },
      { name: 'heimaLoginSuccess false', body: { ...loginBody(identity), heimaLoginSuccess: false }, status: 400, message: /nothing was recorded/ },
      { name: 'not JSON', body: '{"userId":', status: 400, message: /not valid JSON/ },
      { name: '1 MB body', body: { ...loginBody(identity), padding: 'x'.repeat(1024 * 1024) }, status: 413, message: /too large/ },
    ];
    const before = await counts();
    for (const c of cases) {
      const headers: Record<string, string> = { 'x-language': 'en' };
      if (c.authorization) headers.authorization = c.authorization;
      const token = c.name === 'no bearer' || c.authorization ? undefined : (c.token ?? accessToken(omni));
      const res = await stack.request('POST', '/v3/account/post_heima_login', { token, headers, body: c.body ?? loginBody(identity) });
      assert.equal(res.status, c.status, `${c.name}: ${res.text}`);
      assertFailure(res, c.status);
      assert.match((res.body as { message: string }).message, c.message, c.name);
    }
    assert.deepEqual(await counts(), before);
    // The same requests' good twin is accepted: the refusals above were about the bearer or body.
    assert.equal((await postLogin(identity)).status, 200);
  });

  void test('add_wallet: no bearer, an id token, an unknown account, a bad wallet_index → 4xx, nothing written', async () => {
    const identity: Identity = { type: 'email', value: `badwallet.${Date.now()}@example.com` };
    const omni = deriveOmniAccount('agentkeys', identity);
    assert.equal((await postLogin(identity)).status, 200);
    const before = await counts();
    assertFailure(await stack.request('POST', '/v3/account/add_wallet'), 401);
    assertFailure(await stack.request('POST', '/v3/account/add_wallet', { token: accessToken(omni, { typ: 'id' }) }), 401);
    assertFailure(
      await stack.request('POST', '/v3/account/add_wallet', {
        token: accessToken(deriveOmniAccount('agentkeys', { type: 'email', value: 'ghost@example.com' })),
      }),
      404,
    );
    assertFailure(await stack.request('POST', '/v3/account/add_wallet', { token: accessToken(omni), body: { wallet_index: -1 } }), 400);
    assertFailure(await stack.request('POST', '/v3/account/add_wallet', { token: accessToken(omni), body: { wallet_index: 'one' } }), 400);
    assertFailure(
      await stack.request('POST', '/v3/account/add_wallet', { token: accessToken(omni), body: 'wallet', headers: { 'content-type': 'text/plain' } }),
      400,
    );
    assert.deepEqual(await counts(), before);
  });

  void test('without a configured TEE key the authenticated callbacks answer 503 and /readyz says so', async () => {
    let app: FastifyInstance | undefined;
    try {
      app = await buildApp({ ...stack.deps, teeVerifier: undefined, readiness: { tee_key: teeKeyReadiness(undefined) } }, { logLevel: 'silent' });
      const identity: Identity = { type: 'email', value: 'nokey@example.com' };
      const r = await app.inject({
        method: 'POST',
        url: '/v3/account/post_heima_login',
        headers: { authorization: `Bearer ${accessToken(deriveOmniAccount('agentkeys', identity))}`, 'content-type': 'application/json' },
        payload: loginBody(identity),
      });
      assert.equal(r.statusCode, 503, r.body);
      assert.deepEqual(Object.keys(r.json<object>()).sort(), ['code', 'data', 'message']);
      assert.equal(r.json<{ code: number }>().code, 50300);
      const ready = await app.inject({ method: 'GET', url: '/readyz', headers: { authorization: `Bearer ${stack.config.BROKER_OPS_TOKEN ?? ''}` } });
      const parts = ready.json<{ parts: Record<string, { ok: boolean; detail: string }> }>().parts;
      assert.match(parts.tee_key?.detail ?? '', /not configured/);
    } finally {
      await app?.close();
    }
    const ready = await stack.request('GET', '/readyz', { token: stack.config.BROKER_OPS_TOKEN });
    const parts = (ready.body as { parts: Record<string, { ok: boolean; detail: string }> }).parts;
    assert.equal(parts.tee_key?.ok, true);
    assert.match(parts.tee_key?.detail ?? '', /^static RSA-2048 key, thumbprint /);
  });
});
