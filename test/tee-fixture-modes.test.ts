import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { callTeeRpc, teeEmailLogin, teeRpcResult } from '../fixtures/tee/client';
import { generateTeeKeyPair } from '../fixtures/tee/jwt';
import { startTeeFixture, type TeeFixture } from '../fixtures/tee/server';
import { deriveOmniAccount } from '../lib/omni';
import { startStack, type TestStack } from './harness';

/**
 * Where `omni_addWallet` of an agentkeys user goes, through the real broker: upstream's handler
 * (litentry/heima `rpc-server/src/methods/omni/add_wallet.rs` @701b07553e11cad32baf35f46101aa4c465caf0c, played by the fixture's
 * `mode: 'unpatched'`) sends every wallet to the pumpx backend, so the broker never sees it; the
 * patched worker (tee-patch/, the default mode) sends it to the backend of the client the stored
 * access token was issued to — `POST /v3/account/add_wallet` here for agentkeys.
 */

let stack: TestStack;
let patched: TeeFixture;
let unpatched: TeeFixture;
before(async () => {
  const key = await generateTeeKeyPair();
  stack = await startStack({ env: { BROKER_TEE_JWT_PUBLIC_KEY: key.publicKeyDebugByteList } });
  patched = await startTeeFixture({ brokerBaseUrl: `${stack.url}/`, privateKeyPem: key.privateKeyPem, mode: 'patched' });
  unpatched = await startTeeFixture({ brokerBaseUrl: `${stack.url}/`, privateKeyPem: key.privateKeyPem, mode: 'unpatched' });
});
after(async () => {
  await patched?.close();
  await unpatched?.close();
  await stack?.stop();
});

/** What the broker recorded for an account: its add_wallet audit rows and wallet slots. */
async function brokerWallets(omni: string): Promise<{ audited: number; slots: number[] }> {
  const audited = await stack.db.query<{ n: string }>(`SELECT count(*)::text AS n FROM audit_log WHERE event = 'tee.add_wallet' AND omni_account = $1`, [omni]);
  const slots = await stack.db.query<{ wallet_index: number }>('SELECT wallet_index FROM wallets WHERE omni_account = $1 ORDER BY wallet_index', [omni]);
  return { audited: Number(audited.rows[0]?.n ?? 0), slots: slots.rows.map((r) => r.wallet_index) };
}

const addWalletCalls = (tee: TeeFixture) => tee.pumpxCalls().filter((c) => c.path === '/v3/account/add_wallet');

void describe('TEE fixture modes: where omni_addWallet of an agentkeys user goes', () => {
  void test("unpatched (upstream add_wallet.rs): the agentkeys user's wallet goes to the pumpx backend, the broker never sees it", async () => {
    const email = `unpatched.${Date.now()}@example.com`;
    const omni = deriveOmniAccount('agentkeys', { type: 'email', value: email });
    const login = await teeEmailLogin(unpatched, email);
    // The login itself reached the broker (the user exists there) …
    const user = await stack.db.query('SELECT 1 FROM users WHERE omni_account = $1', [omni]);
    assert.equal(user.rowCount, 1);
    const before = addWalletCalls(unpatched).length;
    const added = await teeRpcResult<{ backend_response: { code: number } }>(unpatched.url, 'omni_addWallet', {}, { bearer: login.id_token });
    assert.equal(added.backend_response.code, 10000);
    // … but its add_wallet went to pumpx, with the agentkeys access token as the bearer.
    const calls = addWalletCalls(unpatched).slice(before);
    assert.equal(calls.length, 1);
    assert.equal(calls[0]?.headers.authorization, `Bearer ${login.access_token}`);
    assert.deepEqual(await brokerWallets(omni), { audited: 0, slots: [] });
  });

  void test('patched: the same add_wallet reaches POST /v3/account/add_wallet on the broker, chosen by the stored token’s aud', async () => {
    const email = `patched.${Date.now()}@example.com`;
    const omni = deriveOmniAccount('agentkeys', { type: 'email', value: email });
    const login = await teeEmailLogin(patched, email);
    const before = addWalletCalls(patched).length;
    await teeRpcResult(patched.url, 'omni_addWallet', {}, { bearer: login.id_token });
    assert.deepEqual(await brokerWallets(omni), { audited: 1, slots: [0] });
    assert.equal(addWalletCalls(patched).length, before, 'nothing went to pumpx');

    // The bearer only names the account: an id token for it with another accepted aud changes
    // nothing, the stored access token (aud agentkeys) picks the backend.
    const exp = Math.floor(Date.now() / 1000) + 600;
    const otherAud = patched.issueToken({ sub: omni, typ: 'id', aud: 'wildmeta', exp });
    await teeRpcResult(patched.url, 'omni_addWallet', {}, { bearer: otherAud });
    assert.deepEqual(await brokerWallets(omni), { audited: 2, slots: [0, 1] });
    assert.equal(addWalletCalls(patched).length, before);
  });

  void test("patched: a wildmeta user's add_wallet still goes to the pumpx backend", async () => {
    const email = `wildmeta.${Date.now()}@example.com`;
    const login = await teeEmailLogin(patched, email, 'wildmeta');
    const before = addWalletCalls(patched).length;
    await teeRpcResult(patched.url, 'omni_addWallet', {}, { bearer: login.id_token });
    const calls = addWalletCalls(patched).slice(before);
    assert.equal(calls.length, 1);
    assert.equal(calls[0]?.headers.authorization, `Bearer ${login.access_token}`);
    const omni = deriveOmniAccount('wildmeta', { type: 'email', value: email });
    assert.deepEqual(await brokerWallets(omni), { audited: 0, slots: [] });
  });
});

void describe('TEE fixture modes: identity values over 64 bytes (the patch refuses them for agentkeys)', () => {
  // 65 bytes: a 53-character local part and @example.com; upstream hashes its first 64.
  const longEmail = () => `${'x'.repeat(40)}${String(Date.now()).padStart(13, '0')}@example.com`;
  const loginWith = (tee: TeeFixture, email: string, code: string, clientId = 'agentkeys') =>
    callTeeRpc(tee.url, 'omni_userLogin', {
      user_id: { type: 'email', value: email },
      user_auth: { type: 'email', value: code },
      client_id: clientId,
      client_auth: null,
    });

  void test('patched: omni_userLogin with a 65-byte email for agentkeys is -32602 {field: user_id}, before the code is checked, and nothing reaches the broker', async () => {
    const email = longEmail();
    assert.equal(Buffer.byteLength(email), 65);
    await teeRpcResult(patched.url, 'omni_requestEmailVerificationCode', { client_id: 'agentkeys', user_email: email });
    const code = patched.lastEmailCode(email, 'agentkeys') ?? '';
    const users = async () => (await stack.db.query('SELECT count(*)::int AS n FROM users')).rows[0] as { n: number };
    const before = await users();
    for (const given of [code, 'wrong!']) {
      const r = await loginWith(patched, email, given);
      assert.ok('error' in r, 'refused');
      assert.deepEqual(r.error, { code: -32602, message: 'Invalid params', data: { field: 'user_id', reason: 'identity value longer than 64 bytes' } });
    }
    assert.equal(patched.lastEmailCode(email, 'agentkeys'), code, 'the code was not spent');
    assert.deepEqual(await users(), before);
    // The same account's submit is refused the same way.
    const submit = await callTeeRpc(patched.url, 'omni_submitUserOpWithAuth', {
      user_operations: [],
      chain_id: 1,
      wallet_index: 0,
      user_id: { type: 'email', value: email },
      _user_auth: null,
      client_id: 'agentkeys',
      client_auth: { type: 'wildmeta_hl', value: { main_address: '0x' + '11'.repeat(20), agent_address: '0x' + '22'.repeat(20), login_type: 0 } },
    });
    assert.ok('error' in submit && submit.error.code === -32602, JSON.stringify(submit));
  });

  void test("unpatched, and patched for another client: the value is taken under upstream's cut (agentkeys then meets the broker's own refusal)", async () => {
    const email = longEmail();
    const wild = await teeEmailLogin(patched, email, 'wildmeta');
    assert.ok(wild.access_token, 'wildmeta keeps the cut');
    await teeRpcResult(unpatched.url, 'omni_requestEmailVerificationCode', { client_id: 'agentkeys', user_email: email });
    const r = await loginWith(unpatched, email, unpatched.lastEmailCode(email, 'agentkeys') ?? '');
    assert.ok('error' in r, 'the broker refuses the callback');
    assert.notEqual(r.error.code, -32602, 'not the TEE-side refusal: the TEE called the broker');
  });
});
