import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { callTeeRpc, teeRpcResult } from '../fixtures/tee/client';
import { generateTeeKeyPair } from '../fixtures/tee/jwt';
import { startTeeFixture, type TeeFixture } from '../fixtures/tee/server';
import { deriveOmniAccount } from '../lib/omni';
import { startStack, type TestStack } from './harness';

/** End to end: logins at the (fixture) TEE under client_id agentkeys land in the broker through its callbacks. */

let stack: TestStack;
let tee: TeeFixture;
/** Added to the fixture TEE's clock, so a test can make a later login in the same second. */
let teeClockOffsetMs = 0;
before(async () => {
  const key = await generateTeeKeyPair();
  // The broker trusts the TEE key in the form the real TEE logs it: hex of the PKCS#1 DER.
  stack = await startStack({ env: { BROKER_TEE_JWT_PUBLIC_KEY: key.publicKeyPkcs1DerHex } });
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
    assert.deepEqual(JSON.parse(calls[0]?.body ?? '{}'), { userId: { type: 'email', value: email }, clientId: 'wildmeta', clientAuth: null, heimaLoginSuccess: true });
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

  void test('a broker that refuses the callback makes the TEE answer -32000 (bad backend response)', async () => {
    // A TEE whose agentkeys_api base points at a wrong path: the answer is no 10000 envelope.
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
      assert.ok('error' in r && r.error.code === -32000, JSON.stringify(r));
    } finally {
      await other.close();
    }
  });
});
