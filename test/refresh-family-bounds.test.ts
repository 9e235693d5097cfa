/**
 * A refresh family's size bounds nothing the owner needs, over real HTTP and Postgres with the
 * default BROKER_DB_QUERY_TIMEOUT_MS. A family renewed for weeks (150 000 spent tokens, bulk-inserted
 * as the budget would have let them accumulate, with the live sessions of its last session lifetime)
 * still ends at once: by the owner's DELETE /v1/account/sessions/:session_id, by a replay of one of
 * its spent tokens and by a logout of its bearer, and its current token is refused after each. A
 * family renews at most BROKER_RATE_LIMIT_REFRESH_PER_MINUTE times in any 60 s: past that, 429 with
 * nothing changed and the token presented still good once the window has moved (moved here by aging
 * the family's rows, not by waiting). However many bearers one family holds, the account's other
 * logins stay listed and can be ended by id. A login is ended by the id it was first listed under
 * however many refreshes came since (more than an hour of them at the budget, bulk-inserted), and
 * no other account can end it with that id.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sessionIdOf } from '../services/sessions';
import { assertRefused, assertUnchanged, dbSnapshot } from './adversarial-probes';
import { startStack, type TestStack } from './harness';
import { claimRefreshToken, jtiOf, refreshFamilyOf, renewSession } from './refresh-client';
import { walletLogin } from './mint-client';
import { newWallet } from './wallet-client';

let stack: TestStack;
before(async () => {
  // The API's own pool, with BROKER_DB_QUERY_TIMEOUT_MS as api/main.ts sets it (default 1500 ms).
  stack = await startStack({ apiDatabaseUrl: (url) => url });
});
after(async () => {
  await stack?.stop();
});

/** A family's spent tokens: 17 days of refreshes at 6 a minute, the default budget. */
const SPENT_TOKENS = 150_000;
/** Its live sessions: 12 hours (the default BROKER_LOGIN_SESSION_TTL_SECONDS) of refreshes at 6 a minute. */
const LIVE_SESSIONS = 6 * 60 * 12;

const idOf = (token: string): string => sessionIdOf(stack.deps.secrets, jtiOf(token));
const refresh = (refresh_token: string) => stack.request('POST', '/v1/session/refresh', { body: { refresh_token } });
const me = async (token: string) => (await stack.request('GET', '/v1/session/me', { token })).status;

const claim = (token: string) => claimRefreshToken(stack, token);
const renew = (refreshToken: string) => renewSession(stack, refreshToken);
const familyOf = (token: string) => refreshFamilyOf(stack, token);

/**
 * Adds to the family `spent` spent tokens issued every 10 s back from a minute ago (older than its
 * real ones, so its real newest token stays its newest) and, for the newest `live` of them, their
 * sessions' rows, live; moves the family's start back before all of them. One statement each.
 */
async function pump(family: string, opts: { spent: number; live: number }): Promise<void> {
  const t0 = Date.now();
  const owner = await stack.db.query<{ omni_account: string }>('SELECT omni_account FROM refresh_tokens WHERE family_id = $1 LIMIT 1', [family]);
  const omni = owner.rows[0]?.omni_account;
  assert.ok(omni);
  const started = `now() - make_interval(secs => ${opts.spent * 10 + 3600})`;
  await stack.db.query(`UPDATE refresh_tokens SET family_started_at = ${started} WHERE family_id = $1`, [family]);
  await stack.db.query(
    `INSERT INTO refresh_tokens (token_digest, family_id, omni_account, method, session_jti, family_started_at, created_at, used_at)
     SELECT 'pumped-' || $1 || '-' || lpad(i::text, 7, '0'), $1, $2, 'wallet', 'pumped-' || $1 || '-' || lpad(i::text, 7, '0'), ${started},
            now() - make_interval(secs => 60 + i * 10), now() - make_interval(secs => 50 + i * 10)
       FROM generate_series(1, $3::int) AS i`,
    [family, omni, opts.spent],
  );
  await stack.db.query(
    `INSERT INTO sessions (jti, omni_account, method, created_at, expires_at)
     SELECT 'pumped-' || $1 || '-' || lpad(i::text, 7, '0'), $2, 'wallet', now() - make_interval(secs => 60 + i * 10), now() + interval '1 hour'
       FROM generate_series(1, $3::int) AS i`,
    [family, omni, opts.live],
  );
  console.log(`pumped ${opts.spent} spent tokens and ${opts.live} live sessions into a family in ${Date.now() - t0} ms`);
}

const unrevokedSessions = async (family: string): Promise<number> =>
  Number(
    (
      await stack.db.query<{ n: string }>(
        `SELECT count(*) AS n FROM sessions s JOIN refresh_tokens t ON t.session_jti = s.jti WHERE t.family_id = $1 AND s.revoked_at IS NULL`,
        [family],
      )
    ).rows[0]?.n,
  );

/** A pumped family of a fresh account: the thief's bearer, its current refresh token and the spent one before it. */
async function pumpedFamily(wallet = newWallet()): Promise<{ bearer: string; current: string; spent: string; family: string }> {
  const thief = await walletLogin(stack, wallet);
  const spent = await claim(thief.token);
  const renewed = await renew(spent);
  const family = await familyOf(thief.token);
  await pump(family, { spent: SPENT_TOKENS, live: LIVE_SESSIONS });
  return { bearer: renewed.token, current: renewed.refresh_token, spent, family };
}

async function timed<T>(what: string, run: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  const out = await run();
  console.log(`${what}: ${Date.now() - t0} ms`);
  return out;
}

void describe('the refresh budget of a family', () => {
  void test('past BROKER_RATE_LIMIT_REFRESH_PER_MINUTE refreshes in a minute: 429, nothing changes, and the token is good once the minute has moved', async () => {
    const budget = stack.config.BROKER_RATE_LIMIT_REFRESH_PER_MINUTE;
    assert.equal(budget, 6, 'the default budget');
    const { token } = await walletLogin(stack);
    // The claim is no refresh: all `budget` of them right after it pass.
    let refreshToken = await claim(token);
    for (let i = 0; i < budget; i++) refreshToken = (await renew(refreshToken)).refresh_token;

    const snapshot = await dbSnapshot(stack.db);
    const limited = await refresh(refreshToken);
    assertRefused(limited, 429, 'rate_limited', /renewed 6 times in the last minute.*still good/);
    const retryAfter = Number(limited.headers.get('retry-after'));
    assert.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`);
    await assertUnchanged(stack.db, snapshot, 'a refresh past the budget');
    const row = await stack.db.query<{ used_at: Date | null; revoked_at: Date | null }>(
      'SELECT used_at, revoked_at FROM refresh_tokens WHERE session_jti = (SELECT session_jti FROM refresh_tokens WHERE family_id = $1 ORDER BY created_at DESC LIMIT 1)',
      [await familyOf(token)],
    );
    assert.deepEqual(row.rows[0], { used_at: null, revoked_at: null }, 'the token presented was spent or revoked');

    // Refused again while the window holds; then the minute moves on (the family's rows aged by it) and the same token renews.
    assertRefused(await refresh(refreshToken), 429, 'rate_limited');
    await stack.db.query(`UPDATE refresh_tokens SET created_at = created_at - interval '61 seconds' WHERE family_id = $1`, [await familyOf(token)]);
    const renewed = await renew(refreshToken);
    assert.equal(await me(renewed.token), 200);
  });

  void test('each family has its own budget', async () => {
    const budget = stack.config.BROKER_RATE_LIMIT_REFRESH_PER_MINUTE;
    const wallet = newWallet();
    let a = await claim((await walletLogin(stack, wallet)).token);
    for (let i = 0; i < budget; i++) a = (await renew(a)).refresh_token;
    assertRefused(await refresh(a), 429, 'rate_limited');
    // Another login of the same account renews.
    const b = await claim((await walletLogin(stack, wallet)).token);
    await renew(b);
  });
});

void describe("the account's logins when one family holds many bearers", () => {
  void test("the owner's current and other logins stay listed, once each, and the other can be ended by id", async () => {
    const wallet = newWallet();
    const owner = await walletLogin(stack, wallet);
    const laptop = await walletLogin(stack, wallet);
    const thief = await walletLogin(stack, wallet);
    await renew(await claim(thief.token));
    // 300 live bearers of the thief's family, all newer than the owner's two logins.
    const family = await familyOf(thief.token);
    await stack.db.query(
      `INSERT INTO sessions (jti, omni_account, method, expires_at) SELECT 'bearer-' || $1 || '-' || i, $2, 'wallet', now() + interval '1 hour' FROM generate_series(1, 300) AS i`,
      [family, owner.omni_account],
    );
    await stack.db.query(
      `INSERT INTO refresh_tokens (token_digest, family_id, omni_account, method, session_jti, family_started_at, created_at, used_at)
       SELECT 'bearer-' || $1 || '-' || i, $1, $2, 'wallet', 'bearer-' || $1 || '-' || i, now() - interval '1 hour', now() - interval '1 minute', now() - interval '50 seconds'
         FROM generate_series(1, 300) AS i`,
      [family, owner.omni_account],
    );

    const r = await stack.request('GET', '/v1/account/sessions', { token: owner.token });
    assert.equal(r.status, 200, r.text);
    const list = (r.body as { sessions: Array<{ session_id: string; current: boolean }> }).sessions;
    assert.equal(list.length, 3, JSON.stringify(list.map((s) => s.session_id)));
    assert.deepEqual(
      list.filter((s) => s.current).map((s) => s.session_id),
      [idOf(owner.token)],
      "the caller's own login",
    );
    assert.ok(
      list.some((s) => s.session_id === idOf(laptop.token)),
      "the owner's other login",
    );

    const ended = await stack.request('DELETE', `/v1/account/sessions/${idOf(laptop.token)}`, { token: owner.token });
    assert.equal(ended.status, 204, ended.text);
    assert.equal(await me(laptop.token), 401);
    assert.equal(await me(owner.token), 200);
  });
});

void describe('a revoke by id of a login refreshed many times since it was listed', () => {
  void test('ends it by the id it was first listed under; a stranger with that id is 404 and changes nothing; once ended, 404', async () => {
    // The old search: each live family's newest sessions, an hour of refreshes at the budget and one more.
    const oldSearch = stack.config.BROKER_RATE_LIMIT_REFRESH_PER_MINUTE * 60 + 1;
    const renewals = oldSearch + 10;
    const wallet = newWallet();
    const laptop = await walletLogin(stack, wallet);
    const first = await claim(laptop.token);
    const owner = await walletLogin(stack, wallet);
    const listedId = idOf(laptop.token);
    const listed = async () =>
      ((await stack.request('GET', '/v1/account/sessions', { token: owner.token })).body as { sessions: Array<{ session_id: string }> }).sessions.map(
        (s) => s.session_id,
      );
    assert.ok((await listed()).includes(listedId), 'the laptop login is listed under its session');

    // Hours later: the laptop's session expired and the hourly purge deleted its row; its family
    // renewed `renewals` times since (inserted as the budget would have let them accumulate, a
    // refresh every 10 s up to a minute ago), and then once more for real.
    const family = await familyOf(laptop.token);
    const age = renewals * 10 + 120;
    await stack.db.query(
      `UPDATE refresh_tokens SET created_at = now() - make_interval(secs => $2), family_started_at = now() - make_interval(secs => $2 + 60) WHERE family_id = $1`,
      [family, age],
    );
    await stack.db.query(
      `INSERT INTO refresh_tokens (token_digest, family_id, omni_account, method, session_jti, family_started_at, created_at, used_at)
       SELECT 'renewed-' || $1 || '-' || i, $1, $2, 'wallet', 'renewed-' || $1 || '-' || i, now() - make_interval(secs => $4 + 60),
              now() - make_interval(secs => 60 + i * 10), now() - make_interval(secs => 55 + i * 10)
         FROM generate_series(1, $3::int) AS i`,
      [family, owner.omni_account, renewals, age],
    );
    await stack.db.query('DELETE FROM sessions WHERE jti = $1', [jtiOf(laptop.token)]);
    const current = await renew(first);
    assert.ok(!(await listed()).includes(listedId), 'the login is listed under its newest session now');

    const stranger = await walletLogin(stack);
    const snapshot = await dbSnapshot(stack.db);
    assertRefused(
      await stack.request('DELETE', `/v1/account/sessions/${listedId}`, { token: stranger.token }),
      404,
      'not_found',
      undefined,
      "a stranger's revoke",
    );
    await assertUnchanged(stack.db, snapshot, "a stranger's revoke by the owner's id");
    assert.equal(await me(current.token), 200);

    const r = await timed('DELETE by an id listed before an hour of refreshes', () =>
      stack.request('DELETE', `/v1/account/sessions/${listedId}`, { token: owner.token }),
    );
    assert.equal(r.status, 204, r.text);
    assertRefused(await refresh(current.refresh_token), 401, 'unauthorized', /revoked/, "the family's current token");
    assert.equal(await me(current.token), 401);
    assert.equal(await unrevokedSessions(family), 0);
    assert.equal(await me(owner.token), 200);
    const audit = await stack.db.query<{ details: { jti_hash: string } }>(
      "SELECT details FROM audit_log WHERE event = 'session.revoke' AND omni_account = $1",
      [owner.omni_account],
    );
    assert.deepEqual(
      audit.rows.map((row) => row.details.jti_hash),
      [listedId],
    );

    // The login has ended: its id names nothing any more, as any ended login's.
    const ended = await dbSnapshot(stack.db);
    assertRefused(await stack.request('DELETE', `/v1/account/sessions/${listedId}`, { token: owner.token }), 404, 'not_found', undefined, 'an ended login');
    await assertUnchanged(stack.db, ended, 'a revoke of an ended login');
  });
});

void describe('a revoke by id of a login whose tokens are from before migration 023', () => {
  void test('a session its refresh token recorded no name for is still found among its family’s newest, and ended', async () => {
    const wallet = newWallet();
    const laptop = await walletLogin(stack, wallet);
    const current = await renew(await claim(laptop.token));
    const family = await familyOf(laptop.token);
    // Issued before 023: no name recorded; the laptop's bearer has expired, the family still renews.
    await stack.db.query('UPDATE refresh_tokens SET session_jti_hash = NULL WHERE family_id = $1', [family]);
    await stack.db.query(`UPDATE sessions SET expires_at = now() - interval '1 second' WHERE jti = $1`, [jtiOf(laptop.token)]);
    const owner = await walletLogin(stack, wallet);
    const r = await stack.request('DELETE', `/v1/account/sessions/${idOf(laptop.token)}`, { token: owner.token });
    assert.equal(r.status, 204, r.text);
    assertRefused(await refresh(current.refresh_token), 401, 'unauthorized', /revoked/, "the family's current token");
    assert.equal(await me(current.token), 401);
  });
});

void describe('ending a refresh family renewed for weeks', () => {
  void test(`the owner's DELETE of it from a fresh login: 204 within the default query timeout, and the family's current token is refused`, async () => {
    assert.equal(stack.config.BROKER_DB_QUERY_TIMEOUT_MS, 1500, 'the default timeout');
    const wallet = newWallet();
    const { bearer, current, family } = await pumpedFamily(wallet);
    const owner = await walletLogin(stack, wallet);

    const listed = await stack.request('GET', '/v1/account/sessions', { token: owner.token });
    assert.equal(listed.status, 200, listed.text);
    const sessions = (listed.body as { sessions: Array<{ session_id: string; current: boolean }> }).sessions;
    assert.deepEqual(
      sessions.map((s) => [s.session_id, s.current]).sort(),
      [
        [idOf(bearer), false],
        [idOf(owner.token), true],
      ].sort(),
    );

    const r = await timed('DELETE of the pumped login', () => stack.request('DELETE', `/v1/account/sessions/${idOf(bearer)}`, { token: owner.token }));
    assert.equal(r.status, 204, r.text);
    assertRefused(await refresh(current), 401, 'unauthorized', /revoked/, "the family's current token");
    assert.equal(await me(bearer), 401);
    assert.equal(await unrevokedSessions(family), 0, 'a live session of the family outlived its end');
    assert.equal(await me(owner.token), 200);
  });

  void test('a replay of one of its spent tokens ends it, within the default query timeout', async () => {
    const { bearer, current, spent, family } = await pumpedFamily();
    const r = await timed('replay of a spent token', () => refresh(spent));
    assertRefused(r, 401, 'unauthorized', /already used: its family and sessions are revoked/);
    assertRefused(await refresh(current), 401, 'unauthorized', /revoked/, "the family's current token");
    assert.equal(await me(bearer), 401);
    assert.equal(await unrevokedSessions(family), 0);
    const reuseRows = () =>
      stack.db.query<{ details: { sessions_revoked: number } }>(
        "SELECT details FROM audit_log WHERE event = 'session.refresh_reuse' AND omni_account = (SELECT omni_account FROM refresh_tokens WHERE family_id = $1 LIMIT 1)",
        [family],
      );
    const audit = await reuseRows();
    assert.equal(audit.rows.length, 1);
    assert.equal(audit.rows[0]?.details.sessions_revoked, LIVE_SESSIONS + 2, 'the login session, the refreshed one and the pumped live ones');
    // Replayed again: refused as revoked, and the family's end is not audited twice.
    assertRefused(await refresh(spent), 401, 'unauthorized', /revoked/);
    assert.equal((await reuseRows()).rows.length, 1);
  });

  void test('a logout of its bearer ends it, within the default query timeout', async () => {
    const { bearer, current, family } = await pumpedFamily();
    const r = await timed('logout of a pumped family', () => stack.request('POST', '/v1/session/logout', { token: bearer }));
    assert.equal(r.status, 204, r.text);
    assertRefused(await refresh(current), 401, 'unauthorized', /revoked/, "the family's current token");
    assert.equal(await unrevokedSessions(family), 0);
  });
});
