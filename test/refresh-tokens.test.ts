/**
 * Refresh tokens over real HTTP and Postgres: a session claims one (once), each is traded once
 * for a new session and token; forged ones change nothing; a replayed or raced one revokes its
 * family and every session the family issued, audited; idle and absolute expiry; logout ends
 * the family; only a digest is stored.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { claimRefreshToken } from '../api/session-refresh';
import { purgeRefreshTokens } from '../db/refresh-tokens';
import { BrokerError } from '../lib/errors';
import { buildStatelessWalletMessage } from '../lib/wallet-message';
import { logout, sessionIdOf } from '../services/sessions';
import { assertRefused, assertUnchanged, dbSnapshot } from './adversarial-probes';
import { startStack, type TestStack } from './harness';
import { claimRefreshToken as claimOverHttp, jtiOf } from './refresh-client';
import { walletLogin } from './mint-client';
import { newWallet, nowSeconds } from './wallet-client';

let stack: TestStack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.stop();
});

interface Refreshed {
  token: string;
  expires_at: number;
  omni_account: string;
  refresh_token: string;
  refresh_expires_at: number;
}

async function login(): Promise<{ token: string; omni: string }> {
  const w = newWallet();
  const timestamp = nowSeconds();
  const signature = await w.sign(buildStatelessWalletMessage(w.lower, timestamp));
  const res = await stack.request('POST', '/v1/session/wallet_login', { body: { address: w.lower, signature, timestamp } });
  assert.equal(res.status, 200, res.text);
  const b = res.body as { token: string; omni_account: string };
  return { token: b.token, omni: b.omni_account };
}

const claim = (token: string) => claimOverHttp(stack, token);

const refresh = (refresh_token: string) => stack.request('POST', '/v1/session/refresh', { body: { refresh_token } });
const me = async (token: string) => (await stack.request('GET', '/v1/session/me', { token })).status;

const refreshRowsOfSession = async (jti: string): Promise<number> =>
  Number((await stack.db.query<{ n: string }>('SELECT count(*) AS n FROM refresh_tokens WHERE session_jti = $1', [jti])).rows[0]?.n);

/** Waits until `n` statements of this test's database wait on a lock, or `done()` says the waiting is moot. */
async function lockWaiters(n: number, done: () => boolean = () => false): Promise<void> {
  for (let i = 0; i < 400; i++) {
    const r = await stack.db.query<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'");
    if (Number(r.rows[0]?.n) >= n || done()) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  assert.fail(`${n} statement(s) never waited on a lock`);
}

type Answer = Awaited<ReturnType<TestStack['request']>>;

/**
 * Another connection holds a lock (`lockSql`); `first` is sent and queues behind it, then a logout
 * of `logoutToken` (or the request `then` sends) queues behind both; the lock is released and both
 * answers come back, in that order.
 */
async function queuedBehind(lockSql: string, args: unknown[], first: () => Promise<Answer>, then: string | (() => Promise<Answer>)): Promise<[Answer, Answer]> {
  const holder = await stack.db.connect();
  try {
    await holder.query('BEGIN');
    await holder.query(lockSql, args);
    let answered: Answer | undefined;
    const firstAnswer = first().then((r) => (answered = r));
    await lockWaiters(1, () => answered !== undefined);
    const loggingOut = typeof then === 'string' ? stack.request('POST', '/v1/session/logout', { token: then }) : then();
    await lockWaiters(answered ? 1 : 2);
    await holder.query('COMMIT');
    return await Promise.all([firstAnswer, loggingOut]);
  } finally {
    await holder.query('ROLLBACK').catch(() => undefined);
    holder.release();
  }
}

async function auditEvents(omni: string): Promise<{ event: string; outcome: string }[]> {
  const r = await stack.db.query<{ event: string; outcome: string }>('SELECT event, outcome FROM audit_log WHERE omni_account = $1 ORDER BY seq', [omni]);
  return r.rows;
}

void describe('refresh tokens', () => {
  void test('a session claims one refresh token, once; each is traded once for a new session and a new token; only digests are stored', async () => {
    const { token, omni } = await login();
    const first = await claim(token);
    assert.match(first, /^akr_[A-Za-z0-9_-]{43}$/);
    assertRefused(await stack.request('POST', '/v1/session/refresh_token', { token }), 409, 'conflict', /already has a refresh token/);

    const r1 = await refresh(first);
    assert.equal(r1.status, 200, r1.text);
    const s1 = r1.body as Refreshed;
    assert.equal(s1.omni_account, omni);
    assert.notEqual(s1.token, token);
    assert.notEqual(s1.refresh_token, first);
    assert.ok(s1.expires_at > nowSeconds() + 3600);
    assert.ok(s1.refresh_expires_at > nowSeconds() + 86400);
    assert.equal(await me(s1.token), 200);
    // A refreshed session comes with its refresh token: it cannot claim a second one.
    assertRefused(await stack.request('POST', '/v1/session/refresh_token', { token: s1.token }), 409, 'conflict');

    const r2 = await refresh(s1.refresh_token);
    assert.equal(r2.status, 200, r2.text);
    assert.equal(await me((r2.body as Refreshed).token), 200);

    const stored = await stack.db.query<{ row: string }>('SELECT r::text AS row FROM refresh_tokens r WHERE omni_account = $1', [omni]);
    assert.equal(stored.rows.length, 3);
    for (const { row } of stored.rows) for (const t of [first, s1.refresh_token, (r2.body as Refreshed).refresh_token]) assert.ok(!row.includes(t.slice(4)));
    const events = (await auditEvents(omni)).map((e) => e.event);
    assert.deepEqual(
      events.filter((e) => e.startsWith('session.refresh')),
      ['session.refresh_claim', 'session.refresh', 'session.refresh'],
    );
  });

  void test('forged, malformed and unknown refresh tokens: 401 or 400, and nothing changes', async () => {
    const { token } = await login();
    const real = await claim(token);
    const before = await dbSnapshot(stack.db);
    for (const t of [`akr_${randomBytes(32).toString('base64url')}`, `${real}x`, real.slice(0, -1), real.toUpperCase(), 'akr_', token.slice(0, 400)]) {
      assertRefused(await refresh(t), 401, 'unauthorized', /unknown refresh token/, t.slice(0, 12));
    }
    for (const body of [
      {},
      { refresh_token: '' },
      { refresh_token: token },
      { refresh_token: 'x'.repeat(600) },
      { refresh_token: real, extra: 1 },
      { refresh_token: 5 },
    ]) {
      assertRefused(await stack.request('POST', '/v1/session/refresh', { body }), 400, 'bad_request', undefined, JSON.stringify(body).slice(0, 40));
    }
    assertRefused(await stack.request('POST', '/v1/session/refresh_token', {}), 401, 'unauthorized');
    assertRefused(await stack.request('POST', '/v1/session/refresh_token', { token: `${token}x` }), 401, 'unauthorized');
    await assertUnchanged(stack.db, before, 'after the forged refresh tokens');
    assert.equal((await refresh(real)).status, 200, 'the real one still works');
  });

  void test('a replayed refresh token revokes the family and every session it issued, and is audited', async () => {
    const { token, omni } = await login();
    const a = await claim(token);
    const s1 = (await refresh(a)).body as Refreshed;
    const s2 = (await refresh(s1.refresh_token)).body as Refreshed;
    assert.equal(await me(s2.token), 200);

    assertRefused(await refresh(a), 401, 'unauthorized', /already used: its family and sessions are revoked/);
    assertRefused(await refresh(s2.refresh_token), 401, 'unauthorized', /revoked/, 'the newest token of the family');
    for (const t of [token, s1.token, s2.token]) assert.equal(await me(t), 401, 'every session of the family is logged out');
    const reuse = (await auditEvents(omni)).filter((e) => e.event === 'session.refresh_reuse');
    assert.deepEqual(reuse, [{ event: 'session.refresh_reuse', outcome: 'denied' }]);
    const row = await stack.db.query<{ details: { sessions_revoked: number } }>(
      "SELECT details FROM audit_log WHERE omni_account = $1 AND event = 'session.refresh_reuse'",
      [omni],
    );
    assert.equal(row.rows[0]?.details.sessions_revoked, 3);
    // Presented again: refused, no second audit row.
    assertRefused(await refresh(a), 401, 'unauthorized');
    assert.equal((await auditEvents(omni)).filter((e) => e.event === 'session.refresh_reuse').length, 1);
  });

  void test('the same token raced: exactly one refresh wins, the others count as reuse and end the family', async () => {
    const { token } = await login();
    const t = await claim(token);
    const answers = await Promise.all(Array.from({ length: 5 }, () => refresh(t)));
    const won = answers.filter((r) => r.status === 200);
    assert.equal(won.length, 1, answers.map((r) => r.status).join(','));
    for (const r of answers.filter((x) => x.status !== 200)) assertRefused(r, 401, 'unauthorized');
    const winner = won[0]?.body as Refreshed;
    assertRefused(await refresh(winner.refresh_token), 401, 'unauthorized', /revoked/);
    assert.equal(await me(winner.token), 401);

    // Two different sessions claiming at once: each its own family.
    const [x, y] = await Promise.all([login(), login()]);
    const [cx, cy] = await Promise.all([claim(x.token), claim(y.token)]);
    assert.notEqual(cx, cy);
    // One session claiming twice at once: one claim.
    const z = await login();
    const claims = await Promise.all([1, 2, 3].map(() => stack.request('POST', '/v1/session/refresh_token', { token: z.token })));
    assert.deepEqual(claims.map((c) => c.status).sort(), [201, 409, 409]);
  });

  void test('a claim for a session logged out after its bearer was checked is 401 and starts no family', async () => {
    // The race: the claim passes the bearer check, the owner logs out (no family yet, so only the
    // session is revoked), then the claim's transaction runs. Played in that order, deterministically.
    const { token, omni } = await login();
    const jti = jtiOf(token);
    const captured = { omniAccount: omni, jti, method: 'wallet' as const };
    await logout(stack.deps, { kind: 'session', omniAccount: omni, jti }, 'test-logout');
    const before = await dbSnapshot(stack.db);
    await assert.rejects(claimRefreshToken(stack.deps, captured, 'test-claim'), (e: unknown) => {
      assert.ok(e instanceof BrokerError, String(e));
      assert.equal(e.kind, 'unauthorized');
      assert.match(e.message, /logged out/);
      return true;
    });
    await assertUnchanged(stack.db, before, 'a claim for a logged-out session');
    assert.equal(await refreshRowsOfSession(jti), 0);
    // Over HTTP the bearer itself is refused.
    assertRefused(await stack.request('POST', '/v1/session/refresh_token', { token }), 401, 'unauthorized', /logged out/);
    assert.equal(await refreshRowsOfSession(jti), 0);
    assert.equal((await auditEvents(omni)).filter((e) => e.event === 'session.refresh_claim').length, 0);
  });

  void test('a claim in flight when the session logs out: the two queue on the session row, and the logout ends the family the claim started', async () => {
    const { token, omni } = await login();
    const jti = jtiOf(token);
    // Hold the session's row so the claim (already past the bearer check) and then the logout queue behind it, in that order.
    const [c, out] = await queuedBehind(
      'SELECT 1 FROM sessions WHERE jti = $1 FOR UPDATE',
      [jti],
      () => stack.request('POST', '/v1/session/refresh_token', { token }),
      token,
    );
    assert.equal(c.status, 201, c.text);
    assert.equal(out.status, 204, out.text);
    const refreshToken = (c.body as { refresh_token: string }).refresh_token;
    assertRefused(await refresh(refreshToken), 401, 'unauthorized', /revoked/, 'the refresh token claimed just before the logout');
    assert.equal(await me(token), 401);
    assert.deepEqual(
      (await auditEvents(omni)).map((e) => e.event).filter((e) => e.startsWith('session.')),
      ['session.refresh_claim', 'session.logout'],
    );
  });

  void test('a refresh in flight when an older session of its family logs out: the logout ends what the refresh added too', async () => {
    const { token: first } = await login();
    const r1 = await claim(first);
    const renewed = await refresh(r1);
    assert.equal(renewed.status, 200, renewed.text);
    const { token: second, refresh_token: r2 } = renewed.body as { token: string; refresh_token: string };
    assert.equal(await me(first), 200, 'the first session lives on beside the refreshed one');
    // Hold r2's row: the refresh of r2 queues on it, then the logout of the first session queues behind the refresh.
    const [got, out] = await queuedBehind('SELECT 1 FROM refresh_tokens WHERE session_jti = $1 FOR UPDATE', [jtiOf(second)], () => refresh(r2), first);
    assert.equal(out.status, 204, out.text);
    assert.equal(got.status, 200, got.text);
    const third = got.body as { token: string; refresh_token: string };
    assert.equal(await me(third.token), 401, 'the session the refresh added outlived the logout of its family');
    assertRefused(await refresh(third.refresh_token), 401, 'unauthorized', /revoked/, 'the refresh token the refresh added');
    assert.equal(await me(second), 401);
  });

  void test('a replayed token and a logout of the same family at once: they queue, neither deadlocks, both answer', async () => {
    const { token: first } = await login();
    const spent = await claim(first);
    const renewed = await refresh(spent);
    assert.equal(renewed.status, 200, renewed.text);
    const family = (await stack.db.query<{ family_id: string }>('SELECT family_id FROM refresh_tokens WHERE session_jti = $1', [jtiOf(first)])).rows[0]
      ?.family_id;
    assert.ok(family);
    // Hold the family's lock: the replay queues on it first, then the logout of the first session.
    const [replay, out] = await queuedBehind(
      `SELECT pg_advisory_xact_lock(hashtextextended('refresh_family:' || $1, 0))`,
      [family],
      () => refresh(spent),
      first,
    );
    assertRefused(replay, 401, 'unauthorized', /already used/, 'the replayed token');
    assert.equal(out.status, 204, out.text);
    assert.equal(await me(first), 401);
    assert.equal(await me((renewed.body as { token: string }).token), 401);
  });

  void test("a revoke by id of a login whose bearer expired, with a refresh of its family in flight: both queue on the family's lock, and the revoke ends what the refresh added", async () => {
    const wallet = newWallet();
    const thief = await walletLogin(stack, wallet);
    const stolen = await claim(thief.token);
    await stack.db.query(`UPDATE sessions SET expires_at = now() - interval '1 second' WHERE jti = $1`, [jtiOf(thief.token)]);
    const owner = await walletLogin(stack, wallet);
    const family = (await stack.db.query<{ family_id: string }>('SELECT family_id FROM refresh_tokens WHERE session_jti = $1', [jtiOf(thief.token)])).rows[0]
      ?.family_id;
    assert.ok(family);
    const [got, revoked] = await queuedBehind(
      `SELECT pg_advisory_xact_lock(hashtextextended('refresh_family:' || $1, 0))`,
      [family],
      () => refresh(stolen),
      () => stack.request('DELETE', `/v1/account/sessions/${sessionIdOf(stack.deps.secrets, jtiOf(thief.token))}`, { token: owner.token }),
    );
    assert.equal(got.status, 200, got.text);
    assert.equal(revoked.status, 204, revoked.text);
    const added = got.body as Refreshed;
    assert.equal(await me(added.token), 401, 'the session the refresh added outlived the revoke of its login');
    assertRefused(await refresh(added.refresh_token), 401, 'unauthorized', /revoked/, 'the refresh token the refresh added');
    assert.equal(await me(owner.token), 200);
  });

  void test('idle and absolute expiry: refused, nothing changes; logout ends the family', async () => {
    const idle = await login();
    const it = await claim(idle.token);
    await stack.db.query("UPDATE refresh_tokens SET created_at = now() - interval '7 days 1 second' WHERE omni_account = $1", [idle.omni]);
    let before = await dbSnapshot(stack.db);
    assertRefused(await refresh(it), 401, 'unauthorized', /expired/);
    await assertUnchanged(stack.db, before, 'an idle token');

    const old = await login();
    const ot = await claim(old.token);
    const s = (await refresh(ot)).body as Refreshed;
    await stack.db.query("UPDATE refresh_tokens SET family_started_at = now() - interval '30 days 1 second' WHERE omni_account = $1", [old.omni]);
    before = await dbSnapshot(stack.db);
    assertRefused(await refresh(s.refresh_token), 401, 'unauthorized', /expired/);
    await assertUnchanged(stack.db, before, 'a family past its maximum');

    const out = await login();
    const lt = await claim(out.token);
    const ls = (await refresh(lt)).body as Refreshed;
    assert.equal((await stack.request('POST', '/v1/session/logout', { token: ls.token })).status, 204);
    assertRefused(await refresh(ls.refresh_token), 401, 'unauthorized', /revoked/);
    assert.equal(await me(out.token), 401, 'the login session of the family ends too');
  });

  void test('ending a family records its end once and revokes only its unspent token; its spent ones are refused as revoked, with no reuse row; the purge drops the record with the family', async () => {
    const { token, omni } = await login();
    const a = await claim(token);
    const s1 = (await refresh(a)).body as Refreshed;
    const s2 = (await refresh(s1.refresh_token)).body as Refreshed;
    const family = (await stack.db.query<{ family_id: string }>('SELECT family_id FROM refresh_tokens WHERE session_jti = $1', [jtiOf(token)])).rows[0]
      ?.family_id;
    assert.ok(family);
    assert.equal((await stack.request('POST', '/v1/session/logout', { token: s2.token })).status, 204);

    const ends = await stack.db.query('SELECT 1 FROM refresh_family_revocations WHERE family_id = $1', [family]);
    assert.equal(ends.rowCount, 1);
    const rows = await stack.db.query<{ unspent: boolean; revoked: boolean }>(
      'SELECT used_at IS NULL AS unspent, revoked_at IS NOT NULL AS revoked FROM refresh_tokens WHERE family_id = $1 ORDER BY created_at',
      [family],
    );
    assert.deepEqual(rows.rows, [
      { unspent: false, revoked: false },
      { unspent: false, revoked: false },
      { unspent: true, revoked: true },
    ]);
    for (const t of [a, s1.refresh_token, s2.refresh_token]) assertRefused(await refresh(t), 401, 'unauthorized', /revoked/);
    for (const t of [token, s1.token, s2.token]) assert.equal(await me(t), 401);
    assert.deepEqual(
      (await auditEvents(omni)).filter((e) => e.event === 'session.refresh_reuse'),
      [],
      'a spent token of an ended family is no reuse',
    );

    // Past the family's maximum age its tokens and the record of its end go together.
    await stack.db.query(`UPDATE refresh_tokens SET family_started_at = now() - interval '31 days' WHERE family_id = $1`, [family]);
    await stack.db.query(`UPDATE refresh_family_revocations SET revoked_at = now() - interval '31 days' WHERE family_id = $1`, [family]);
    assert.ok((await purgeRefreshTokens(stack.db, new Date(), stack.config.BROKER_REFRESH_MAX_SECONDS)) >= 3);
    assert.equal((await stack.db.query('SELECT 1 FROM refresh_tokens WHERE family_id = $1', [family])).rowCount, 0);
    assert.equal((await stack.db.query('SELECT 1 FROM refresh_family_revocations WHERE family_id = $1', [family])).rowCount, 0);
  });
});
