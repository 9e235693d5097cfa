/**
 * A refreshed session outliving its family's rows, over real HTTP and Postgres. The hourly purge
 * deleted a family's rows once it was past BROKER_REFRESH_MAX_SECONDS, while the session its last
 * refresh issued lived on (a full BROKER_LOGIN_SESSION_TTL_SECONDS) with nothing left to tie it to
 * its family: it could then claim a new family (30 more days, again and again) and counted as a
 * login made when it was refreshed. Now the purge keeps a family while a session it issued lives,
 * and, whatever the purge did, a session's own row says a refresh issued it and which login is
 * behind it (migration 024): it claims no family (409) and is no recent login (401
 * `reauthenticate`), nothing written. A fresh login still claims a family, and its refreshed
 * sessions still refresh and count from it. Rows from before migration 024 are backfilled from the
 * families still there; the others are not known, and claim nothing nor count as recent.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { purgeRefreshTokens } from '../db/refresh-tokens';
import { migrate } from '../db/migrate';
import { createPool } from '../db/pool';
import { assertRefused, assertUnchanged, dbSnapshot, spyWorkflowStarts } from './adversarial-probes';
import { createTestDatabase, startStack, type TestStack } from './harness';
import { claimRefreshToken, jtiOf, refreshFamilyOf, renewSession } from './refresh-client';
import { walletLogin } from './mint-client';

let stack: TestStack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.stop();
});

const claimOf = (token: string) => stack.request('POST', '/v1/session/refresh_token', { token });
const registrationOptionsOf = (token: string) => stack.request('POST', '/v1/passkeys/registration/options', { token });
const me = async (token: string) => (await stack.request('GET', '/v1/session/me', { token })).status;

const claim = (token: string) => claimRefreshToken(stack, token);
const refresh = (refreshToken: string) => renewSession(stack, refreshToken);
const familyOf = (token: string) => refreshFamilyOf(stack, token);

const familyRows = async (family: string): Promise<number> =>
  (await stack.db.query('SELECT 1 FROM refresh_tokens WHERE family_id = $1', [family])).rowCount ?? 0;

/** A claim by `token` is refused with 409, and nothing is written (no refresh token, no audit row, no other row). */
async function claimRefused(token: string, message: RegExp, what: string): Promise<void> {
  const before = await dbSnapshot(stack.db);
  assertRefused(await claimOf(token), 409, 'conflict', message, what);
  await assertUnchanged(stack.db, before, what);
  const rows = await stack.db.query<{ n: number }>('SELECT count(*)::int AS n FROM refresh_tokens WHERE session_jti = $1', [jtiOf(token)]);
  assert.ok((rows.rows[0]?.n ?? 0) <= 1, `${what}: a second refresh token for one session`);
}

/** Passkey registration options for `token` are refused as no recent login: 401 `reauthenticate`, no ceremony started, nothing written. */
async function notARecentLogin(token: string, what: string): Promise<void> {
  const starts = spyWorkflowStarts(stack.temporal);
  try {
    const before = await dbSnapshot(stack.db);
    const r = await registrationOptionsOf(token);
    assertRefused(r, 401, 'unauthorized', /adding a passkey needs a login at most 300 s old: sign in again, then add it/, what);
    assert.equal((r.body as { reauthenticate?: unknown }).reauthenticate, true, `${what}: ${r.text}`);
    assert.equal(starts.count(), 0, `${what}: a ceremony was started`);
    await assertUnchanged(stack.db, before, what);
  } finally {
    starts.restore();
  }
}

void describe('a session refreshed just before its family reaches its maximum age', () => {
  void test('the purge keeps the family while that session lives; with the family purged, the session claims no family and is no recent login', async () => {
    const max = stack.config.BROKER_REFRESH_MAX_SECONDS;
    const login = await walletLogin(stack);
    const first = await claim(login.token);
    const family = await familyOf(login.token);
    // The family is MAX - 60 s old: its token still renews, once more.
    await stack.db.query(`UPDATE refresh_tokens SET family_started_at = now() - make_interval(secs => $2) WHERE family_id = $1`, [family, max - 60]);
    await stack.db.query(`UPDATE sessions SET created_at = now() - make_interval(secs => $2) WHERE jti = $1`, [jtiOf(login.token), max - 60]);
    const refreshed = await refresh(first);
    assert.equal(await me(refreshed.token), 200);
    assert.ok(refreshed.expires_at * 1000 > Date.now() + 3600_000, 'the refreshed session lives its full lifetime');

    // The hourly purge, as of two minutes on: the family is past its maximum, but the session it issued lives.
    const pastMax = new Date(Date.now() + 120_000);
    await purgeRefreshTokens(stack.db, pastMax, max);
    assert.equal(await familyRows(family), 2, 'the purge deleted a family one of whose sessions is live');
    await claimRefused(refreshed.token, /already has a refresh token/, 'a claim by the refreshed session, its family kept');
    await notARecentLogin(refreshed.token, 'the refreshed session, its family kept');
    // Its family cannot renew any more either (past its maximum, as of pastMax; refused here once the clock passes it).

    // Once that session has expired the family goes. Run as of then, the session is still live now:
    // the state the old purge left a refreshed session in, which its own row must answer for.
    const afterSession = new Date(refreshed.expires_at * 1000 + 1000);
    assert.ok((await purgeRefreshTokens(stack.db, afterSession, max)) >= 2);
    assert.equal(await familyRows(family), 0, 'the purge kept the family after its sessions expired');
    assert.equal(await me(refreshed.token), 200, 'the bearer itself is still good until it expires');
    await claimRefused(refreshed.token, /already has a refresh token/, 'a claim by the refreshed session, its family purged');
    await notARecentLogin(refreshed.token, 'the refreshed session, its family purged');
    const families = await stack.db.query('SELECT 1 FROM refresh_tokens WHERE omni_account = $1', [login.omni_account]);
    assert.equal(families.rowCount, 0, 'a new family was started');
  });

  void test('no regression: a fresh login claims a family; its refreshed sessions refresh, count from that login, and claim none', async () => {
    const login = await walletLogin(stack);
    const first = await claim(login.token);
    const s1 = await refresh(first);
    assert.equal(await me(s1.token), 200);
    // A refreshed session of a login made just now is a recent login.
    const options = await registrationOptionsOf(s1.token);
    assert.equal(options.status, 200, options.text);
    await claimRefused(s1.token, /already has a refresh token/, 'a claim by a refreshed session');
    const s2 = await refresh(s1.refresh_token);
    assert.equal(await me(s2.token), 200);
    assert.equal((await registrationOptionsOf(s2.token)).status, 200);

    const rows = await stack.db.query<{ jti: string; issued_by_refresh: boolean | null; login_at: Date | null; login_method: string | null; created_at: Date }>(
      'SELECT jti, issued_by_refresh, login_at, login_method, created_at FROM sessions WHERE omni_account = $1',
      [login.omni_account],
    );
    const byJti = new Map(rows.rows.map((r) => [r.jti, r]));
    const own = byJti.get(jtiOf(login.token));
    assert.deepEqual([own?.issued_by_refresh, own?.login_at, own?.login_method], [false, null, null], "the login's own session");
    for (const s of [s1, s2]) {
      const row = byJti.get(jtiOf(s.token));
      assert.equal(row?.issued_by_refresh, true);
      assert.equal(row?.login_method, 'wallet');
      // The family's start: the login session's issue (to the millisecond, as the family records it).
      assert.equal(row?.login_at?.getTime(), own?.created_at.getTime());
    }
  });

  void test('a session whose row predates migration 024: not tied to a family, it claims nothing and is no recent login; tied to one, it answers for that family', async () => {
    const unknown = await walletLogin(stack);
    await stack.db.query('UPDATE sessions SET issued_by_refresh = NULL WHERE jti = $1', [jtiOf(unknown.token)]);
    await claimRefused(unknown.token, /issued before the broker recorded whether a refresh issued it.*log in again/, 'a claim by a session of unknown issue');
    await notARecentLogin(unknown.token, 'a session of unknown issue');

    const login = await walletLogin(stack);
    const refreshed = await refresh(await claim(login.token));
    await stack.db.query('UPDATE sessions SET issued_by_refresh = NULL, login_at = NULL, login_method = NULL WHERE jti = ANY($1)', [
      [jtiOf(login.token), jtiOf(refreshed.token)],
    ]);
    assert.equal((await registrationOptionsOf(refreshed.token)).status, 200, "tied to its family: the family's fresh login");
    await stack.db.query(`UPDATE refresh_tokens SET family_started_at = now() - interval '10 minutes' WHERE family_id = $1`, [await familyOf(login.token)]);
    await notARecentLogin(refreshed.token, "tied to its family: the family's old login");
  });
});

void describe('migration 024', () => {
  void test('marks the sessions still tied to a refresh family: the claimant as a login, the others as refreshed with the family login', async () => {
    const database = await createTestDatabase();
    const db = createPool(database.url, 2);
    const dir = await mkdtemp(join(tmpdir(), 'akb-migrations-'));
    try {
      const source = join(__dirname, '..', 'db', 'migrations');
      const files = (await readdir(source)).filter((f) => f.endsWith('.sql')).sort();
      assert.ok(files.includes('024_sessions_issued_by_refresh.sql'));
      for (const f of files.filter((f) => f < '024')) await copyFile(join(source, f), join(dir, f));
      await migrate(db, dir);
      // A family of an email login (its first session relabelled as it is handed out), refreshed twice; another whose first session's row is gone; a session of none.
      await db.query(
        `INSERT INTO sessions (jti, omni_account, method, created_at, expires_at) VALUES
           ('login', 'acct', 'google_cli', now() - interval '3 hours', now() + interval '9 hours'),
           ('r1', 'acct', 'google', now() - interval '2 hours', now() + interval '10 hours'),
           ('r2', 'acct', 'google', now() - interval '1 hour', now() + interval '11 hours'),
           ('orphan-r', 'acct', 'device', now() - interval '1 hour', now() + interval '11 hours'),
           ('plain', 'acct', 'email', now() - interval '1 hour', now() + interval '11 hours')`,
      );
      await db.query(
        `INSERT INTO refresh_tokens (token_digest, family_id, omni_account, method, session_jti, family_started_at, created_at, used_at) VALUES
           ('t0', 'f', 'acct', 'google', 'login', now() - interval '3 hours', now() - interval '3 hours', now() - interval '2 hours'),
           ('t1', 'f', 'acct', 'google', 'r1', now() - interval '3 hours', now() - interval '2 hours', now() - interval '1 hour'),
           ('t2', 'f', 'acct', 'google', 'r2', now() - interval '3 hours', now() - interval '1 hour', NULL),
           ('u0', 'g', 'acct', 'device', 'gone', now() - interval '20 hours', now() - interval '20 hours', now() - interval '1 hour'),
           ('u1', 'g', 'acct', 'device', 'orphan-r', now() - interval '20 hours', now() - interval '1 hour', NULL)`,
      );
      assert.deepEqual(await migrate(db, source), ['024_sessions_issued_by_refresh']);
      const rows = await db.query<{ jti: string; issued_by_refresh: boolean | null; login_hours: number | null; login_method: string | null }>(
        `SELECT jti, issued_by_refresh, round(extract(epoch FROM now() - login_at) / 3600)::int AS login_hours, login_method FROM sessions ORDER BY jti`,
      );
      assert.deepEqual(rows.rows, [
        { jti: 'login', issued_by_refresh: false, login_hours: null, login_method: null },
        { jti: 'orphan-r', issued_by_refresh: true, login_hours: 20, login_method: 'device' },
        { jti: 'plain', issued_by_refresh: null, login_hours: null, login_method: null },
        { jti: 'r1', issued_by_refresh: true, login_hours: 3, login_method: 'google_cli' },
        { jti: 'r2', issued_by_refresh: true, login_hours: 3, login_method: 'google_cli' },
      ]);
      // A refreshed session carries its login.
      await assert.rejects(
        db.query(
          `INSERT INTO sessions (jti, omni_account, method, expires_at, issued_by_refresh) VALUES ('bad', 'acct', 'email', now() + interval '1 hour', true)`,
        ),
        /sessions_login_of_refresh/,
      );
    } finally {
      await db.end();
      await database.drop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
