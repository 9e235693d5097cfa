import type { AccountSession } from '../lib/wire';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { generateTeeKeyPair, signTeeJwt, teeClaims, type TeeKeyPair } from '../fixtures/tee/jwt';
import { purgeExpiredSessions } from '../db/sessions';
import { REAUTH_SECONDS, sessionIdOf } from '../services/sessions';
import { ageLogins } from './approval-client';
import { jtiOf } from './refresh-client';
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

type SessionView = AccountSession;
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

void describe('/v1/account: a login lives on in its refresh family after its bearer expires', () => {
  interface Renewed {
    token: string;
    expires_at: number;
    refresh_token: string;
    refresh_expires_at: number;
  }
  const idOf = (token: string): string => sessionIdOf(stack.deps.secrets, jtiOf(token));
  const claim = async (token: string): Promise<{ refresh_token: string; refresh_expires_at: number }> => {
    const r = await stack.request('POST', '/v1/session/refresh_token', { token });
    assert.equal(r.status, 201, r.text);
    return r.body as { refresh_token: string; refresh_expires_at: number };
  };
  const refresh = (refresh_token: string) => stack.request('POST', '/v1/session/refresh', { body: { refresh_token } });
  const renew = async (refresh_token: string): Promise<Renewed> => {
    const r = await refresh(refresh_token);
    assert.equal(r.status, 200, r.text);
    return r.body as Renewed;
  };
  /** Makes these sessions' bearers expired, as 12 hours would (their rows' expiry, which the listing and the purge read). */
  const expireBearers = async (...tokens: string[]) => {
    await stack.db.query(`UPDATE sessions SET expires_at = now() - interval '1 second' WHERE jti = ANY($1)`, [tokens.map(jtiOf)]);
  };
  const live = async (token: string) => (await stack.request('GET', '/v1/session/me', { token })).status === 200;
  const revoke = (id: string, token: string) => stack.request('DELETE', `/v1/account/sessions/${id}`, { token });
  /**
   * A listed refresh_expires_at against the one the holder was given: the listing counts from the
   * token's row (as the refresh does), the answer from the API's clock a moment apart; both floored.
   */
  const near = (listed: number | null, given: number) => assert.ok(listed !== null && Math.abs(listed - given) <= 1, `${listed} vs ${given}`);

  void test('a login whose bearer expired and whose refresh token can still renew is listed; ending it refuses the refresh token; a stranger can neither see nor end it', async () => {
    const wallet = newWallet();
    const thief = await walletLogin(stack, wallet);
    const stolen = await claim(thief.token);
    await expireBearers(thief.token);
    const owner = await walletLogin(stack, wallet);

    const list = await sessionsOf(owner.token);
    assert.equal(list.length, 2, JSON.stringify(list));
    const theirs = list.find((s) => s.session_id === idOf(thief.token));
    assert.ok(theirs, 'the login whose bearer expired is not listed');
    assert.deepEqual(
      { current: theirs.current, bearer_live: theirs.bearer_live, method: theirs.method },
      { current: false, bearer_live: false, method: 'wallet' },
    );
    near(theirs.refresh_expires_at, stolen.refresh_expires_at);
    assert.ok(theirs.expires_at <= Math.floor(Date.now() / 1000));
    const mine = list.find((s) => s.current);
    assert.deepEqual(mine && [mine.session_id, mine.bearer_live, mine.refresh_expires_at], [idOf(owner.token), true, null]);

    // Another account neither lists nor ends it, and nothing changes.
    const stranger = await walletLogin(stack);
    assert.ok(!(await sessionsOf(stranger.token)).some((s) => s.session_id === theirs.session_id));
    const before = await auditRows();
    assert.equal((await revoke(theirs.session_id, stranger.token)).status, 404);
    assert.equal(await auditRows(), before);

    const r = await revoke(theirs.session_id, owner.token);
    assert.equal(r.status, 204, r.text);
    assert.equal(await auditRows(), before + 1);
    const row = await stack.db.query<{ event: string; details: { jti_hash: string } }>(`SELECT event, details FROM audit_log ORDER BY seq DESC LIMIT 1`);
    assert.deepEqual([row.rows[0]?.event, row.rows[0]?.details.jti_hash], ['session.revoke', theirs.session_id]);
    const refused = await refresh(stolen.refresh_token);
    assert.equal(refused.status, 401, refused.text);
    assert.deepEqual(
      (await sessionsOf(owner.token)).map((s) => s.session_id),
      [idOf(owner.token)],
    );
    assert.equal((await revoke(theirs.session_id, owner.token)).status, 404);
    assert.equal(await live(owner.token), true);
  });

  void test('a family whose expired session rows the purge deleted is still listed, once, and ended', async () => {
    const wallet = newWallet();
    const thief = await walletLogin(stack, wallet);
    const renewed = await renew((await claim(thief.token)).refresh_token);
    await expireBearers(thief.token, renewed.token);
    await purgeExpiredSessions(stack.db, new Date());
    const rows = await stack.db.query('SELECT 1 FROM sessions WHERE jti = ANY($1)', [[jtiOf(thief.token), jtiOf(renewed.token)]]);
    assert.equal(rows.rowCount, 0, 'the purge kept the rows');
    const owner = await walletLogin(stack, wallet);

    const list = await sessionsOf(owner.token);
    assert.equal(list.length, 2, JSON.stringify(list));
    const theirs = list.find((s) => !s.current);
    assert.ok(theirs);
    // Its newest session stands for it, as the family recorded it.
    assert.equal(theirs.session_id, idOf(renewed.token));
    assert.equal(theirs.bearer_live, false);
    near(theirs.refresh_expires_at, renewed.refresh_expires_at);
    assert.equal(theirs.method, 'wallet');
    assert.ok(Math.abs(theirs.expires_at - renewed.expires_at) <= 2, `${theirs.expires_at} vs ${renewed.expires_at}`);

    const stranger = await walletLogin(stack);
    assert.equal((await revoke(theirs.session_id, stranger.token)).status, 404);
    // The refused revoke ended nothing: the family still renews.
    const again = await renew(renewed.refresh_token);
    // That refresh made a live bearer of the family again: still one entry, now its newest session.
    const relisted = (await sessionsOf(owner.token)).filter((s) => !s.current);
    assert.equal(relisted.length, 1, JSON.stringify(relisted));
    assert.equal(relisted[0]?.bearer_live, true);

    // The id listed before that refresh still names the login.
    const r = await revoke(theirs.session_id, owner.token);
    assert.equal(r.status, 204, r.text);
    assert.deepEqual(
      (await sessionsOf(owner.token)).map((s) => s.session_id),
      [idOf(owner.token)],
    );
    assert.equal(await live(again.token), false);
    assert.equal((await refresh(again.refresh_token)).status, 401);
    // The family is ended once (its revocation row, which every refresh reads first) and its one
    // unspent token revoked; its spent tokens are left as they are (ending a family never reads them).
    const familyOf = `(SELECT family_id FROM refresh_tokens WHERE session_jti = $1)`;
    const unspent = await stack.db.query<{ n: string }>(
      `SELECT count(*) AS n FROM refresh_tokens WHERE family_id = ${familyOf} AND used_at IS NULL AND revoked_at IS NULL`,
      [jtiOf(thief.token)],
    );
    assert.equal(unspent.rows[0]?.n, '0');
    const ended = await stack.db.query(`SELECT 1 FROM refresh_family_revocations WHERE family_id = ${familyOf}`, [jtiOf(thief.token)]);
    assert.equal(ended.rowCount, 1);
  });

  void test("a refreshed login shows once, as the caller's own session when the caller is one of it; any id of it ends all of it", async () => {
    const wallet = newWallet();
    const first = await walletLogin(stack, wallet);
    const second = await renew((await claim(first.token)).refresh_token);
    const mineFrom = async (token: string) => {
      const list = await sessionsOf(token);
      assert.equal(list.length, 1, JSON.stringify(list));
      return list[0];
    };
    for (const token of [first.token, second.token]) {
      const mine = await mineFrom(token);
      assert.deepEqual(mine && [mine.session_id, mine.current, mine.bearer_live], [idOf(token), true, true]);
      near(mine?.refresh_expires_at ?? null, second.refresh_expires_at);
    }

    const owner = await walletLogin(stack, wallet);
    const others = (await sessionsOf(owner.token)).filter((s) => !s.current);
    assert.deepEqual(
      others.map((s) => s.session_id),
      [idOf(second.token)],
      'the newest session stands for a login the caller is not in',
    );
    // The older session's id, no longer listed, names the same login.
    const r = await revoke(idOf(first.token), owner.token);
    assert.equal(r.status, 204, r.text);
    assert.equal(await live(first.token), false);
    assert.equal(await live(second.token), false);
    assert.equal((await refresh(second.refresh_token)).status, 401);
    assert.equal(await live(owner.token), true);
  });

  void test('ending another login this way still needs a recent login; ending the one of its own bearer is a logout', async () => {
    const wallet = newWallet();
    const thief = await walletLogin(stack, wallet);
    const stolen = await claim(thief.token);
    await expireBearers(thief.token);
    const owner = await walletLogin(stack, wallet);
    await ageLogins(stack, owner.omni_account, REAUTH_SECONDS + 10);
    const r = await revoke(idOf(thief.token), owner.token);
    assert.equal(r.status, 401, r.text);
    assert.equal((r.body as { reauthenticate?: boolean }).reauthenticate, true);
    // The thief's family is untouched: its token still renews (and is then spent).
    const renewed = await renew(stolen.refresh_token);
    // The renewed bearer ends its own login, aged or not.
    assert.equal((await revoke(idOf(renewed.token), renewed.token)).status, 204);
    assert.equal((await refresh(renewed.refresh_token)).status, 401);
    assert.equal(await live(owner.token), true);
  });
});
