import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startStack, type TestStack } from './harness';
import { walletLogin, type WalletSession } from './mint-client';
import { newWallet } from './wallet-client';

/**
 * /v1/account (the console's account page): the identities and live sessions of the bearer's own
 * account, and ending one session. Nobody lists or ends another account's session.
 */

let stack: TestStack;
const alice = newWallet();
let a1: WalletSession;
let a2: WalletSession;
let bob: WalletSession;

before(async () => {
  stack = await startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000' } });
  a1 = await walletLogin(stack, alice);
  a2 = await walletLogin(stack, alice);
  bob = await walletLogin(stack);
});
after(async () => {
  await stack?.stop();
});

interface SessionView {
  session_id: string;
  method: string;
  created_at: number;
  expires_at: number;
  current: boolean;
}
const sessionsOf = async (token: string): Promise<SessionView[]> => {
  const r = await stack.request('GET', '/v1/account/sessions', { token });
  assert.equal(r.status, 200, r.text);
  return (r.body as { sessions: SessionView[] }).sessions;
};
const auditRows = async () => Number((await stack.db.query<{ n: string }>('SELECT count(*) AS n FROM audit_log')).rows[0]?.n);

void describe('/v1/account', () => {
  void test('identities: the identity the account signs in with', async () => {
    const r = await stack.request('GET', '/v1/account/identities', { token: a1.token });
    assert.equal(r.status, 200, r.text);
    const body = r.body as { omni_account: string; identities: { type: string; value: string }[] };
    assert.equal(body.omni_account, a1.omni_account);
    assert.deepEqual(
      body.identities.map((i) => [i.type, i.value]),
      [['evm', alice.lower]],
    );
  });

  void test("sessions: the account's live sessions, the caller's marked current, named by the audit rows' jti_hash", async () => {
    const list = await sessionsOf(a1.token);
    assert.equal(list.length, 2);
    assert.deepEqual(list.map((s) => s.current).sort(), [false, true]);
    assert.ok(list.every((s) => /^[0-9a-f]{32}$/.test(s.session_id) && s.method === 'wallet'));
    assert.ok(
      list.every((s) => !JSON.stringify(s).includes(a1.token.split('.')[1] ?? '-')),
      'a session view carries part of a token',
    );
    const logins = await stack.db.query<{ h: string }>(`SELECT details->>'jti_hash' AS h FROM audit_log WHERE omni_account = $1 AND event LIKE 'login%'`, [
      a1.omni_account,
    ]);
    assert.deepEqual(list.map((s) => s.session_id).sort(), logins.rows.map((r) => r.h).sort());
    assert.equal((await sessionsOf(bob.token)).length, 1);
  });

  void test("another account's session id is a 404 and ends nothing; a malformed id is a 400; no bearer is a 401", async () => {
    const [bobs] = await sessionsOf(bob.token);
    assert.ok(bobs);
    const before = await auditRows();
    const r = await stack.request('DELETE', `/v1/account/sessions/${bobs.session_id}`, { token: a1.token });
    assert.equal(r.status, 404, r.text);
    assert.equal((await stack.request('GET', '/v1/session/me', { token: bob.token })).status, 200);
    for (const bad of ['XYZ', 'A'.repeat(32), '0'.repeat(33)]) {
      assert.equal((await stack.request('DELETE', `/v1/account/sessions/${bad}`, { token: a1.token })).status, 400, bad);
    }
    assert.equal((await stack.request('DELETE', `/v1/account/sessions/${bobs.session_id}`)).status, 401);
    assert.equal((await stack.request('GET', '/v1/account/sessions')).status, 401);
    assert.equal(await auditRows(), before);
  });

  void test('ending one session: that bearer stops working, the caller keeps its own, one audit row; again is a 404', async () => {
    const other = (await sessionsOf(a1.token)).find((s) => !s.current);
    assert.ok(other);
    const before = await auditRows();
    const r = await stack.request('DELETE', `/v1/account/sessions/${other.session_id}`, { token: a1.token });
    assert.equal(r.status, 204, r.text);
    assert.equal((await stack.request('GET', '/v1/session/me', { token: a2.token })).status, 401);
    assert.equal((await stack.request('GET', '/v1/session/me', { token: a1.token })).status, 200);
    assert.equal(await auditRows(), before + 1);
    const row = await stack.db.query<{ event: string; omni_account: string }>(`SELECT event, omni_account FROM audit_log ORDER BY seq DESC LIMIT 1`);
    assert.deepEqual(row.rows[0], { event: 'session.revoke', omni_account: a1.omni_account });
    assert.equal((await stack.request('DELETE', `/v1/account/sessions/${other.session_id}`, { token: a1.token })).status, 404);
    assert.deepEqual(
      (await sessionsOf(a1.token)).map((s) => s.current),
      [true],
    );
  });
});
