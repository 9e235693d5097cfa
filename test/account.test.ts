import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { generateTeeKeyPair, signTeeJwt, teeClaims, type TeeKeyPair } from '../fixtures/tee/jwt';
import { REAUTH_SECONDS } from '../services/sessions';
import { ageLogins } from './approval-client';
import { startStack, type TestStack } from './harness';
import { walletLogin, type WalletSession } from './mint-client';
import { newWallet } from './wallet-client';

/**
 * /v1/account (the console's account page): the identities and live sessions of the bearer's own
 * account, and ending one session. Nobody lists or ends another account's session; ending another
 * session of one's own account needs a recent login, ending one's own does not.
 */

let stack: TestStack;
let tee: TeeKeyPair;
const alice = newWallet();
let a1: WalletSession;
let a2: WalletSession;
let bob: WalletSession;

before(async () => {
  tee = await generateTeeKeyPair();
  stack = await startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000', BROKER_TEE_JWT_PUBLIC_KEY: tee.publicKeyPem } });
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

void describe('/v1/account: ending another session needs a recent login', () => {
  const live = async (token: string) => (await stack.request('GET', '/v1/session/me', { token })).status === 200;
  const idOf = async (token: string, current: boolean): Promise<string> => {
    const s = (await sessionsOf(token)).find((v) => v.current === current);
    assert.ok(s, `no ${current ? 'current' : 'other'} session`);
    return s.session_id;
  };

  void test('a login older than 300 s: 401 reauthenticate before the sessions are read, nothing ended; its own session it still ends (a logout)', async () => {
    const carol = newWallet();
    const c1 = await walletLogin(stack, carol);
    const c2 = await walletLogin(stack, carol);
    const [mine, theirs] = [await idOf(c1.token, true), await idOf(c1.token, false)];
    await ageLogins(stack, c1.omni_account, REAUTH_SECONDS + 10);
    const before = await auditRows();
    const [bobs] = await sessionsOf(bob.token);
    assert.ok(bobs);
    // Before the sessions are read: another account's session answers the same, not 404.
    for (const id of [theirs, bobs.session_id]) {
      const r = await stack.request('DELETE', `/v1/account/sessions/${id}`, { token: c1.token });
      assert.equal(r.status, 401, r.text);
      const body = r.body as { error: string; message: string; reauthenticate?: unknown };
      assert.equal(body.error, 'unauthorized');
      assert.equal(body.reauthenticate, true, r.text);
      assert.match(body.message, /ending another session needs a login at most 300 s old: sign in again, then end it/);
    }
    assert.equal(await auditRows(), before);
    assert.ok((await live(c2.token)) && (await live(c1.token)) && (await live(bob.token)), 'a refused revoke ended a session');

    const own = await stack.request('DELETE', `/v1/account/sessions/${mine}`, { token: c1.token });
    assert.equal(own.status, 204, own.text);
    assert.equal(await live(c1.token), false);
    assert.equal(await live(c2.token), true);

    // Signed in again, the other one is ended.
    const c3 = await walletLogin(stack, carol);
    const r = await stack.request('DELETE', `/v1/account/sessions/${theirs}`, { token: c3.token });
    assert.equal(r.status, 204, r.text);
    assert.equal(await live(c2.token), false);
    assert.equal(await live(c3.token), true);
  });

  void test('a TEE bearer is 403 (it has no login time and no session of its own here), nothing ended', async () => {
    const dave = await walletLogin(stack);
    const id = await idOf(dave.token, true);
    const token = signTeeJwt(tee.privateKey, teeClaims(dave.omni_account, 'access', 'agentkeys', Math.floor(Date.now() / 1000)));
    const before = await auditRows();
    const r = await stack.request('DELETE', `/v1/account/sessions/${id}`, { token });
    assert.equal(r.status, 403, r.text);
    assert.equal((r.body as { error: string }).error, 'forbidden');
    assert.match((r.body as { message: string }).message, /ending another session needs a broker session/);
    assert.equal(await auditRows(), before);
    assert.equal(await live(dave.token), true);
  });
});
