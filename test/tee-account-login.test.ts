import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { callTeeRpc, teeRpcResult } from '../fixtures/tee/client';
import { generateTeeKeyPair, type TeeKeyPair } from '../fixtures/tee/jwt';
import { startTeeFixture, type TeeFixture } from '../fixtures/tee/server';
import { deriveOmniAccount } from '../lib/omni';
import { startStack, type TestStack } from './harness';

/** End to end: logins at the (fixture) TEE under client_id agentkeys land in the broker through its callbacks. */

let stack: TestStack;
let tee: TeeFixture;
/** Added to the fixture TEE's clock, so a test can make a later login in the same second. */
let teeClockOffsetMs = 0;
let teeKey: TeeKeyPair;
before(async () => {
  const key = await generateTeeKeyPair();
  // The broker trusts the TEE key in the form the real TEE logs it (auth_token_key_store.rs):
  // the log line with the PKCS#1 DER as a Rust Debug byte list.
  stack = await startStack({ env: { BROKER_TEE_JWT_PUBLIC_KEY: `INFO Auth token (JWT) RSA public_key: ${key.publicKeyDebugByteList}` } });
  teeKey = key;
  tee = await startTeeFixture({ brokerBaseUrl: `${stack.url}/`, privateKeyPem: key.privateKeyPem, now: () => Date.now() + teeClockOffsetMs });
});
after(async () => {
  await tee?.close();
  await stack?.stop();
});

interface LoginResult {
  access_token: string;
  id_token: string;
  backend_response: { code: number; message: string; data: { user_id: string } };
}

interface Me {
  omni_account: string;
  user_id: string | null;
  identity: { type: string; value: string } | null;
  wallets: { wallet_index: number; address: string | null; role: string }[];
}

async function count(sql: string, params: unknown[] = []): Promise<number> {
  const r = await stack.db.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${sql}`, params);
  return Number(r.rows[0]?.n ?? 0);
}

async function emailLogin(email: string, clientId = 'agentkeys'): Promise<LoginResult> {
  await teeRpcResult(tee.url, 'omni_requestEmailVerificationCode', { client_id: clientId, user_email: email });
  const code = tee.lastEmailCode(email, clientId);
  assert.ok(code, 'the TEE fixture holds a code');
  return teeRpcResult<LoginResult>(tee.url, 'omni_userLogin', {
    user_id: { type: 'email', value: email },
    user_auth: { type: 'email', value: code },
    client_id: clientId,
    client_auth: null,
  });
}

/** A request a stand-in in front of the broker received. */
interface Received {
  path: string;
  headers: Record<string, string | string[] | undefined>;
}

/**
 * An HTTP server in front of the broker, as a reverse proxy mounting it under a path prefix would
 * be: `<prefix>/…` is passed on to the broker as `/…`, anything else is a 404 of its own. Or, with
 * `answer`, a backend that answers every request with that status and JSON body. Records what it
 * received.
 */
async function startFrontOfBroker(opts: { prefix?: string; answer?: { status: number; body: unknown } }) {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '/';
      received.push({ path, headers: { ...req.headers } });
      const reply = (status: number, body: string) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(body);
      };
      if (opts.answer) return reply(opts.answer.status, JSON.stringify(opts.answer.body));
      const prefix = opts.prefix ?? '';
      if (!path.startsWith(`${prefix}/`)) return reply(404, '{"error":"not found"}');
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && !['host', 'connection', 'content-length'].includes(k)) headers[k] = v;
      const body = Buffer.concat(chunks);
      fetch(`${stack.url}${path.slice(prefix.length)}`, { method: req.method, headers, body: body.length > 0 ? body : undefined }).then(
        async (r) => reply(r.status, await r.text()),
        () => reply(502, '{"error":"bad gateway"}'),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

void describe('TEE login through the fixture TEE (client_id agentkeys)', () => {
  void test('email code: the callback creates the user, the access JWT works at /me, omni_addWallet lands a wallet slot', async () => {
    const email = `Tee.User.${Date.now()}@Example.com`;
    const omni = deriveOmniAccount('agentkeys', { type: 'email', value: email });
    const login = await emailLogin(email);
    assert.deepEqual(Object.keys(login).sort(), ['access_token', 'backend_response', 'id_token']);
    assert.equal(login.backend_response.code, 10000);
    assert.equal(login.backend_response.message, 'OK');
    const userId = login.backend_response.data.user_id;
    assert.match(userId, /^[0-9a-f-]{36}$/);

    const user = await stack.db.query('SELECT user_id, client_id, identity_type, identity_value FROM users WHERE omni_account = $1', [omni]);
    assert.deepEqual(user.rows, [{ user_id: userId, client_id: 'agentkeys', identity_type: 'email', identity_value: email.toLowerCase() }]);
    assert.equal(await count(`audit_log WHERE event = 'tee.post_heima_login' AND omni_account = $1`, [omni]), 1);

    const me = await stack.request('GET', '/v1/session/me', { token: login.access_token });
    assert.equal(me.status, 200, me.text);
    const body = me.body as Me;
    assert.equal(body.omni_account, omni);
    assert.equal(body.user_id, userId);
    assert.deepEqual(body.identity, { type: 'email', value: email.toLowerCase() });
    assert.deepEqual(body.wallets, []);

    // The id token is not a bearer for the broker.
    const withId = await stack.request('GET', '/v1/session/me', { token: login.id_token });
    assert.equal(withId.status, 401, withId.text);

    const added = await teeRpcResult<{ backend_response: unknown }>(tee.url, 'omni_addWallet', {}, { bearer: login.id_token });
    assert.deepEqual(added, { backend_response: { code: 10000, message: 'OK', data: {} } });
    const again = await teeRpcResult<{ backend_response: unknown }>(tee.url, 'omni_addWallet', {}, { bearer: login.id_token });
    assert.deepEqual(again, { backend_response: { code: 10000, message: 'OK', data: {} } });
    const after = (await stack.request('GET', '/v1/session/me', { token: login.access_token })).body as Me;
    assert.deepEqual(after.wallets, [
      { wallet_index: 0, address: null, role: 'main' },
      { wallet_index: 1, address: null, role: 'agent' },
    ]);
    assert.equal(await count(`audit_log WHERE event = 'tee.add_wallet' AND omni_account = $1`, [omni]), 2);

    // A second login of the same person: a new token, the same user. The TEE's tokens carry only
    // second-resolution exp, so two logins within one second are byte-identical (a retry, by
    // design); move the fixture's clock on so this one is a distinct, later login.
    teeClockOffsetMs += 1000;
    const second = await emailLogin(email.toUpperCase());
    assert.notEqual(second.access_token, login.access_token);
    assert.equal(second.backend_response.data.user_id, userId);
    assert.equal(await count('users WHERE omni_account = $1', [omni]), 1);
    assert.equal(await count(`audit_log WHERE event = 'tee.post_heima_login' AND omni_account = $1`, [omni]), 2);
  });

  void test('EVM signature: the signed sign-in message logs in, the wallet becomes the main wallet', async () => {
    const account = privateKeyToAccount(generatePrivateKey());
    const address = account.address.toLowerCase();
    const omni = deriveOmniAccount('agentkeys', { type: 'evm', value: address });
    const message = await teeRpcResult<{ client_id: string; omni_account: string; message_code: string }>(tee.url, 'omni_getWeb3SignInMessage', {
      client_id: 'agentkeys',
      omni_account: omni,
    });
    assert.deepEqual(Object.keys(message), ['client_id', 'omni_account', 'message_code']);
    assert.match(message.message_code, /^\d{8}$/);
    const signature = await account.signMessage({ message: JSON.stringify(message) });

    // A signature by another key is refused and nothing reaches the broker.
    const stranger = privateKeyToAccount(generatePrivateKey());
    const forged = await callTeeRpc(tee.url, 'omni_userLogin', {
      user_id: { type: 'evm', value: address },
      user_auth: { type: 'evm', value: await stranger.signMessage({ message: JSON.stringify(message) }) },
      client_id: 'agentkeys',
      client_auth: null,
    });
    assert.ok('error' in forged && forged.error.code === -32003, JSON.stringify(forged));
    assert.equal(await count('users WHERE omni_account = $1', [omni]), 0);

    const login = await teeRpcResult<LoginResult>(tee.url, 'omni_userLogin', {
      user_id: { type: 'evm', value: account.address },
      user_auth: { type: 'evm', value: signature },
      client_id: 'agentkeys',
      client_auth: null,
    });
    assert.equal(login.backend_response.code, 10000);
    const me = await stack.request('GET', '/v1/session/me', { token: login.access_token });
    assert.equal(me.status, 200, me.text);
    const body = me.body as Me;
    assert.equal(body.omni_account, omni);
    assert.equal(body.user_id, login.backend_response.data.user_id);
    assert.deepEqual(body.wallets, [{ wallet_index: 0, address, role: 'main' }]);

    // The sign-in message is single use.
    const replay = await callTeeRpc(tee.url, 'omni_userLogin', {
      user_id: { type: 'evm', value: account.address },
      user_auth: { type: 'evm', value: signature },
      client_id: 'agentkeys',
      client_auth: null,
    });
    assert.ok('error' in replay && replay.error.code === -32003, JSON.stringify(replay));

    await teeRpcResult(tee.url, 'omni_addWallet', {}, { bearer: login.id_token });
    const after = (await stack.request('GET', '/v1/session/me', { token: login.access_token })).body as Me;
    assert.deepEqual(after.wallets, [
      { wallet_index: 0, address, role: 'main' },
      { wallet_index: 1, address: null, role: 'agent' },
    ]);
  });

  void test('multi-tenant dispatch: wildmeta goes to the pumpx stub, an unknown client_id is -32602, a wrong code is -32003', async () => {
    const email = `wild.${Date.now()}@example.com`;
    const before = await count('users');
    const wild = await emailLogin(email, 'wildmeta');
    assert.equal(wild.backend_response.code, 10000);
    const calls = tee.pumpxCalls();
    assert.equal(calls.length, 1);
    assert.equal(calls[0]?.path, '/v3/account/post_heima_login');
    assert.deepEqual(JSON.parse(calls[0]?.body ?? '{}'), {
      userId: { type: 'email', value: email },
      clientId: 'wildmeta',
      clientAuth: null,
      heimaLoginSuccess: true,
    });
    assert.equal(await count('users'), before, 'a wildmeta login does not reach the broker');
    // A wildmeta token is no bearer for this broker (aud wildmeta).
    assert.equal((await stack.request('GET', '/v1/session/me', { token: wild.access_token })).status, 401);

    const unknown = await callTeeRpc(tee.url, 'omni_requestEmailVerificationCode', { client_id: 'other', user_email: email });
    assert.ok('error' in unknown && unknown.error.code === -32602, JSON.stringify(unknown));
    const unknownLogin = await callTeeRpc(tee.url, 'omni_userLogin', {
      user_id: { type: 'email', value: email },
      user_auth: { type: 'email', value: '000000' },
      client_id: 'other',
      client_auth: null,
    });
    assert.ok('error' in unknownLogin && unknownLogin.error.code === -32602, JSON.stringify(unknownLogin));

    const victim = `victim.${Date.now()}@example.com`;
    await teeRpcResult(tee.url, 'omni_requestEmailVerificationCode', { client_id: 'agentkeys', user_email: victim });
    const code = tee.lastEmailCode(victim) ?? '';
    const wrong = await callTeeRpc(tee.url, 'omni_userLogin', {
      user_id: { type: 'email', value: victim },
      user_auth: { type: 'email', value: code === '123456' ? '654321' : '123456' },
      client_id: 'agentkeys',
      client_auth: null,
    });
    assert.ok('error' in wrong && wrong.error.code === -32003, JSON.stringify(wrong));
    assert.equal(await count('users'), before);
  });

  void test('a broker that refuses the callback makes the TEE answer -32161 (PUMPX_SERVICE_ERROR_CODE, the code the patch keeps)', async () => {
    // A TEE whose agentkeys_api base points at a path the broker does not serve: HTTP 404, and
    // error_for_status() turns it into the failed-call answer, pumpx_service_error("post_heima_login", …).
    const other = await startTeeFixture({ brokerBaseUrl: `${stack.url}/nowhere/` });
    try {
      const email = `lost.${Date.now()}@example.com`;
      await teeRpcResult(other.url, 'omni_requestEmailVerificationCode', { client_id: 'agentkeys', user_email: email });
      const r = await callTeeRpc(other.url, 'omni_userLogin', {
        user_id: { type: 'email', value: email },
        user_auth: { type: 'email', value: other.lastEmailCode(email) ?? '' },
        client_id: 'agentkeys',
        client_auth: null,
      });
      assert.ok('error' in r, JSON.stringify(r));
      assert.equal(r.error.code, -32161);
      assert.equal(r.error.message, 'Pumpx service error in post_heima_login');
      assert.match((r.error.data as { reason: string }).reason, /HTTP status 404/);
    } finally {
      await other.close();
    }
  });

  void test('the TEE JWT header is {"typ":"JWT","alg":"RS256"} in that byte order, and the broker takes it', async () => {
    const login = await emailLogin(`hdr.${Date.now()}@example.com`);
    const header = Buffer.from(login.access_token.split('.')[0] ?? '', 'base64url').toString('utf8');
    assert.equal(header, '{"typ":"JWT","alg":"RS256"}');
    assert.equal((await stack.request('GET', '/v1/session/me', { token: login.access_token })).status, 200);
  });

  void test('an email code stays valid through wrong guesses until a login consumes it; a new request replaces it', async () => {
    const email = `reuse.${Date.now()}@example.com`;
    await teeRpcResult(tee.url, 'omni_requestEmailVerificationCode', { client_id: 'agentkeys', user_email: email });
    const first = tee.lastEmailCode(email) ?? '';
    const login = (code: string) =>
      callTeeRpc(tee.url, 'omni_userLogin', {
        user_id: { type: 'email', value: email },
        user_auth: { type: 'email', value: code },
        client_id: 'agentkeys',
        client_auth: null,
      });
    for (let i = 0; i < 3; i += 1) {
      const wrong = await login(first === '000000' ? '111111' : '000000');
      assert.ok('error' in wrong && wrong.error.code === -32003, JSON.stringify(wrong));
    }
    teeClockOffsetMs += 60 * 60_000; // an hour later: still valid (no expiry of its own)
    await teeRpcResult(tee.url, 'omni_requestEmailVerificationCode', { client_id: 'agentkeys', user_email: email });
    const second = tee.lastEmailCode(email) ?? '';
    if (second !== first) {
      const replaced = await login(first);
      assert.ok('error' in replaced && replaced.error.code === -32003, 'a new request replaces the code');
    }
    const ok = await login(second);
    assert.ok('result' in ok, JSON.stringify(ok));
    const again = await login(second);
    assert.ok('error' in again && again.error.code === -32003, 'consumed');
  });

  void test('a value over 64 bytes, cut cleanly or inside a character, is refused by the broker even from a TEE that passes it on (-32161), and by the patched TEE first (-32602); nothing written', async () => {
    // A TEE without the patch's check (mode unpatched) passes the value on under upstream's cut: the
    // broker's own refusal is what stops it there. The patched TEE refuses it before the broker hears of it.
    const passesOn = await startTeeFixture({ brokerBaseUrl: `${stack.url}/`, privateKeyPem: teeKey.privateKeyPem, mode: 'unpatched' });
    try {
      for (const value of [`${'l'.repeat(60)}.${Date.now()}@example.com`, `${'c'.repeat(63)}é${Date.now()}@example.com`]) {
        assert.ok(Buffer.byteLength(value) > 64);
        const before = await count('users');
        for (const [door, code] of [
          [passesOn, -32161],
          [tee, -32602],
        ] as const) {
          await teeRpcResult(door.url, 'omni_requestEmailVerificationCode', { client_id: 'agentkeys', user_email: value });
          const r = await callTeeRpc(door.url, 'omni_userLogin', {
            user_id: { type: 'email', value },
            user_auth: { type: 'email', value: door.lastEmailCode(value) ?? '' },
            client_id: 'agentkeys',
            client_auth: null,
          });
          assert.ok('error' in r && r.error.code === code, JSON.stringify(r));
        }
        assert.equal(await count('users'), before);
      }
    } finally {
      await passesOn.close();
    }
  });

  void test('post_heima_login joined with or without a leading "/": both reach a broker mounted at the host root', async () => {
    // Without the slash (the patch's client) the base URL's path is kept; with it (some other
    // builds) the call goes to the host root. The broker serves its routes at its own root, so a
    // base with a path prefix needs a proxy that takes the prefix off (the next test).
    for (const [base, leadingSlash, expect] of [
      [`${stack.url}/`, false, 'ok'],
      [`${stack.url}/`, true, 'ok'],
      [`${stack.url}/agentkeys/`, true, 'ok'],
      [`${stack.url}/agentkeys/`, false, -32161],
    ] as const) {
      const other = await startTeeFixture({ brokerBaseUrl: base, privateKeyPem: teeKey.privateKeyPem, leadingSlashPostHeimaLogin: leadingSlash });
      try {
        const email = `slash.${leadingSlash ? 'y' : 'n'}.${Date.now()}@example.com`;
        await teeRpcResult(other.url, 'omni_requestEmailVerificationCode', { client_id: 'agentkeys', user_email: email });
        const r = await callTeeRpc(other.url, 'omni_userLogin', {
          user_id: { type: 'email', value: email },
          user_auth: { type: 'email', value: other.lastEmailCode(email) ?? '' },
          client_id: 'agentkeys',
          client_auth: null,
        });
        if (expect === 'ok') assert.ok('result' in r, `${base} slash=${leadingSlash}: ${JSON.stringify(r)}`);
        else assert.ok('error' in r && r.error.code === expect, `${base} slash=${leadingSlash}: ${JSON.stringify(r)}`);
      } finally {
        await other.close();
      }
    }
  });

  /** omni_submitUserOpWithAuth of an email user with a wildmeta_hl pair: the link check only. */
  const submitLinkCheck = (teeUrl: string, email: string, main: string, agent: string) =>
    callTeeRpc(teeUrl, 'omni_submitUserOpWithAuth', {
      user_operations: [],
      chain_id: 42161,
      wallet_index: 1,
      user_id: { type: 'email', value: email },
      client_id: 'agentkeys',
      client_auth: {
        type: 'wildmeta_hl',
        value: { agent_address: agent, business_json: '{"timestamp":1}', main_address: main, signature: '0x', login_type: 0 },
      },
    });

  void test('a broker URL with a path prefix: the patched TEE joins every call onto it when it ends in "/", each with X-Language: en', async () => {
    const front = await startFrontOfBroker({ prefix: '/agentkeys' });
    const withSlash = await startTeeFixture({ brokerBaseUrl: `${front.url}/agentkeys/`, privateKeyPem: teeKey.privateKeyPem });
    const withoutSlash = await startTeeFixture({ brokerBaseUrl: `${front.url}/agentkeys`, privateKeyPem: teeKey.privateKeyPem });
    const main = privateKeyToAccount(generatePrivateKey()).address;
    const agent = privateKeyToAccount(generatePrivateKey()).address;
    try {
      const email = `prefix.${Date.now()}@example.com`;
      await teeRpcResult(withSlash.url, 'omni_requestEmailVerificationCode', { client_id: 'agentkeys', user_email: email });
      const login = await teeRpcResult<LoginResult>(withSlash.url, 'omni_userLogin', {
        user_id: { type: 'email', value: email },
        user_auth: { type: 'email', value: withSlash.lastEmailCode(email) ?? '' },
        client_id: 'agentkeys',
        client_auth: null,
      });
      assert.equal(login.backend_response.code, 10000);
      await teeRpcResult(withSlash.url, 'omni_addWallet', {}, { bearer: login.id_token });
      const me = (await stack.request('GET', '/v1/session/me', { token: login.access_token })).body as Me;
      assert.deepEqual(
        me.wallets.map((w) => w.wallet_index),
        [0],
      );
      // Not linked (-32003) is the broker's answer; a call that failed would be -32165.
      const unbound = await submitLinkCheck(withSlash.url, email, main, agent);
      assert.ok('error' in unbound && unbound.error.code === -32003, JSON.stringify(unbound));

      assert.deepEqual(
        front.received.map((r) => r.path),
        ['/agentkeys/v3/account/post_heima_login', '/agentkeys/v3/account/add_wallet', '/agentkeys/v1/account/check_hyper_agent_address'],
      );
      const [postLogin, addWallet, check] = front.received.map((r) => r.headers);
      for (const h of [postLogin, addWallet, check]) assert.equal(h?.['x-language'], 'en');
      assert.equal(postLogin?.authorization, `Bearer ${login.access_token}`);
      assert.equal(postLogin?.['content-type'], 'application/json');
      assert.equal(addWallet?.authorization, `Bearer ${login.access_token}`);
      assert.equal(addWallet?.['content-length'], '0');
      assert.equal(addWallet?.['content-type'], undefined);
      assert.equal(check?.authorization, undefined);
      assert.equal(check?.['content-type'], 'application/json');

      // Without the trailing "/" the join replaces the last segment: the calls go to the host root,
      // which the proxy does not pass on, and the TEE answers its failed-call codes.
      front.received.length = 0;
      const lost = `prefix.lost.${Date.now()}@example.com`;
      await teeRpcResult(withoutSlash.url, 'omni_requestEmailVerificationCode', { client_id: 'agentkeys', user_email: lost });
      const refused = await callTeeRpc(withoutSlash.url, 'omni_userLogin', {
        user_id: { type: 'email', value: lost },
        user_auth: { type: 'email', value: withoutSlash.lastEmailCode(lost) ?? '' },
        client_id: 'agentkeys',
        client_auth: null,
      });
      assert.ok('error' in refused && refused.error.code === -32161, JSON.stringify(refused));
      const failedCheck = await submitLinkCheck(withoutSlash.url, lost, main, agent);
      assert.ok('error' in failedCheck, JSON.stringify(failedCheck));
      assert.deepEqual(failedCheck.error, { code: -32165, message: 'Wildmeta service error in verify_hyperliquid_link', data: {} });
      assert.deepEqual(
        front.received.map((r) => r.path),
        ['/v3/account/post_heima_login', '/v1/account/check_hyper_agent_address'],
      );
    } finally {
      await withSlash.close();
      await withoutSlash.close();
      await front.close();
    }
  });

  void test('the answers of the patched base: -32000 for a code other than 10000, -32165 for a link check without data.isBound, -32163 for omni_addWallet before any login', async () => {
    // A backend that answers every call HTTP 200 {"code":40000,…}: post_heima_login reads the code
    // (check_backend_response), check_hyper_agent_address reads only data.isBound.
    const backend = await startFrontOfBroker({ answer: { status: 200, body: { code: 40000, message: 'refused', data: null } } });
    const other = await startTeeFixture({ brokerBaseUrl: `${backend.url}/`, privateKeyPem: teeKey.privateKeyPem });
    try {
      const email = `answers.${Date.now()}@example.com`;
      await teeRpcResult(other.url, 'omni_requestEmailVerificationCode', { client_id: 'agentkeys', user_email: email });
      const login = await callTeeRpc(other.url, 'omni_userLogin', {
        user_id: { type: 'email', value: email },
        user_auth: { type: 'email', value: other.lastEmailCode(email) ?? '' },
        client_id: 'agentkeys',
        client_auth: null,
      });
      assert.ok('error' in login, JSON.stringify(login));
      assert.deepEqual(login.error, {
        code: -32000,
        message: 'Invalid backend response',
        data: { backend_response: { code: 40000, message: 'refused' }, field: 'post_heima_login' },
      });
      const check = await submitLinkCheck(
        other.url,
        email,
        privateKeyToAccount(generatePrivateKey()).address,
        privateKeyToAccount(generatePrivateKey()).address,
      );
      assert.ok('error' in check, JSON.stringify(check));
      assert.deepEqual(check.error, { code: -32165, message: 'Wildmeta service error in verify_hyperliquid_link', data: {} });

      // The login failed, so no access token is stored for the account: add_wallet has none to send.
      const omni = deriveOmniAccount('agentkeys', { type: 'email', value: email });
      const idToken = other.issueToken({ sub: omni, typ: 'id', aud: 'agentkeys', exp: Math.floor(Date.now() / 1000) + 600 });
      const added = await callTeeRpc(other.url, 'omni_addWallet', {}, { bearer: idToken });
      assert.ok('error' in added, JSON.stringify(added));
      assert.deepEqual(added.error, { code: -32163, message: 'Storage service error in get access token', data: {} });
      assert.deepEqual(
        backend.received.map((r) => r.path),
        ['/v3/account/post_heima_login', '/v1/account/check_hyper_agent_address'],
      );
    } finally {
      await other.close();
      await backend.close();
    }
  });

  void test('omni_addWallet needs the patched aud list: an unpatched TEE refuses its own agentkeys token (-32003)', async () => {
    const unpatched = await startTeeFixture({
      brokerBaseUrl: `${stack.url}/`,
      privateKeyPem: teeKey.privateKeyPem,
      tokenAudiences: ['heima', 'pumpx', 'wildmeta'],
    });
    try {
      const login = await emailLogin(`aud.${Date.now()}@example.com`);
      const refused = await callTeeRpc(unpatched.url, 'omni_addWallet', {}, { bearer: login.id_token });
      assert.ok('error' in refused && refused.error.code === -32003, JSON.stringify(refused));
      await teeRpcResult(tee.url, 'omni_addWallet', {}, { bearer: login.id_token });
    } finally {
      await unpatched.close();
    }
  });

  void test('omni_submitUserOpWithAuth asks the broker check_hyper_agent_address (joined onto the base URL, login_type as i32)', async () => {
    const main = privateKeyToAccount(generatePrivateKey());
    const omni = deriveOmniAccount('agentkeys', { type: 'evm', value: main.address });
    const message = await teeRpcResult<{ client_id: string; omni_account: string; message_code: string }>(tee.url, 'omni_getWeb3SignInMessage', {
      client_id: 'agentkeys',
      omni_account: omni,
    });
    const login = await teeRpcResult<LoginResult>(tee.url, 'omni_userLogin', {
      user_id: { type: 'evm', value: main.address },
      user_auth: { type: 'evm', value: await main.signMessage({ message: JSON.stringify(message) }) },
      client_id: 'agentkeys',
      client_auth: null,
    });
    const agentAccount = privateKeyToAccount(generatePrivateKey());
    const agent = agentAccount.address.toLowerCase();
    const submit = () =>
      callTeeRpc(tee.url, 'omni_submitUserOpWithAuth', {
        user_operations: [],
        chain_id: 42161,
        wallet_index: 1,
        user_id: { type: 'evm', value: main.address },
        client_id: 'agentkeys',
        // login_type 2^32 - 1 is sent as the i32 -1.
        client_auth: {
          type: 'wildmeta_hl',
          value: { agent_address: agent, business_json: '{"timestamp":1}', main_address: main.address, signature: '0x', login_type: 0xffffffff },
        },
      });
    const unbound = await submit();
    assert.ok('error' in unbound && unbound.error.code === -32003, JSON.stringify(unbound));
    const grant = await stack.request('POST', '/v1/grants', { token: login.access_token, body: { agent_address: agent } });
    assert.equal(grant.status, 201, grant.text);
    // A grant binds once the agent wallet accepts it with its signature.
    const offered = grant.body as { grant_id: string; acceptance_message: string };
    const accepted = await stack.request('POST', `/v1/grants/${offered.grant_id}/accept`, {
      body: { signature: await agentAccount.signMessage({ message: offered.acceptance_message }) },
    });
    assert.equal(accepted.status, 200, accepted.text);
    const bound = await submit();
    assert.ok('result' in bound, JSON.stringify(bound));
    assert.deepEqual(bound.result, { transaction_hash: null });
  });

  void test('front door and TEE door agree on an address over 64 bytes: both refuse it; 64 bytes is welcome at both', async () => {
    const long = `${'f'.repeat(60)}.${Date.now()}@example.com`;
    const before = await count('users');
    const refused = await stack.request('POST', '/v1/session/email_code', { body: { email: long } });
    assert.equal(refused.status, 400, refused.text);
    assert.match(refused.text, /64 (bytes|octets)/);
    // The patched TEE refuses it before calling the broker (the broker's own refusal: the test above).
    await assert.rejects(emailLogin(long), (e: Error & { code?: number }) => e.code === -32602);
    assert.equal(await count('users'), before);
    const domain = `.${Date.now()}@example.com`;
    const fits = `${'e'.repeat(64 - domain.length)}${domain}`;
    assert.equal(Buffer.byteLength(fits), 64);
    assert.equal((await stack.request('POST', '/v1/session/email_code', { body: { email: fits } })).status, 202);
    const login = await emailLogin(fits);
    const me = (await stack.request('GET', '/v1/session/me', { token: login.access_token })).body as Me;
    assert.equal(me.omni_account, deriveOmniAccount('agentkeys', { type: 'email', value: fits }));
  });
});
