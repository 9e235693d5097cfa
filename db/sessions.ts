import type { Queryable } from './pool';

/**
 * Inserts the session row; false when a row with this jti was already there (left as it was).
 * `refreshOf`: the session is issued by a refresh, and this is the login behind it (its refresh
 * family's); without it, the session is a login's own (migration 024, `issued_by_refresh`).
 */
export async function insertSession(
  q: Queryable,
  s: { jti: string; omniAccount: string; method: string; expiresAt: Date; refreshOf?: { loginAt: Date; loginMethod: string } },
): Promise<boolean> {
  const r = await q.query(
    `INSERT INTO sessions (jti, omni_account, method, expires_at, issued_by_refresh, login_at, login_method) VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (jti) DO NOTHING`,
    [s.jti, s.omniAccount, s.method, s.expiresAt, s.refreshOf !== undefined, s.refreshOf?.loginAt ?? null, s.refreshOf?.loginMethod ?? null],
  );
  return (r.rowCount ?? 0) > 0;
}

/**
 * How a session was issued, by its row (migration 024): a login's own session (`issued_by_refresh`
 * false), one a refresh issued (true, with its login's time and method), or not known (NULL: a row
 * written before 024 and no longer tied to a refresh family).
 */
export interface SessionIssue {
  issued_by_refresh: boolean | null;
  login_at: Date | null;
  login_method: string | null;
}

/** Whose session row `jti` is (account and method), if there is one; revoked or not. */
export async function sessionOwner(q: Queryable, jti: string): Promise<{ omni_account: string; method: string; expires_at: Date } | undefined> {
  const r = await q.query<{ omni_account: string; method: string; expires_at: Date }>('SELECT omni_account, method, expires_at FROM sessions WHERE jti = $1', [
    jti,
  ]);
  return r.rows[0];
}

/** True when a session row with this jti exists (revoked or not). */
export async function sessionExists(q: Queryable, jti: string): Promise<boolean> {
  const r = await q.query('SELECT 1 FROM sessions WHERE jti = $1', [jti]);
  return (r.rowCount ?? 0) > 0;
}

/** Deletes the session rows whose token has expired (the token is refused by its exp anyway); answers how many. */
export async function purgeExpiredSessions(q: Queryable, now: Date): Promise<number> {
  const r = await q.query('DELETE FROM sessions WHERE expires_at < $1', [now]);
  return r.rowCount ?? 0;
}

/** Deletes the logged-out TEE tokens past their exp; answers how many. */
export async function purgeExpiredTeeTokenRevocations(q: Queryable, now: Date): Promise<number> {
  const r = await q.query('DELETE FROM revoked_tee_tokens WHERE expires_at < $1', [now]);
  return r.rowCount ?? 0;
}

/** True when the session exists and has not been revoked (expiry is checked on the token itself). */
export async function isSessionLive(q: Queryable, jti: string): Promise<boolean> {
  const r = await q.query('SELECT 1 FROM sessions WHERE jti = $1 AND revoked_at IS NULL', [jti]);
  return (r.rowCount ?? 0) > 0;
}

export async function revokeSession(q: Queryable, jti: string): Promise<boolean> {
  const r = await q.query('UPDATE sessions SET revoked_at = now() WHERE jti = $1 AND revoked_at IS NULL', [jti]);
  return (r.rowCount ?? 0) > 0;
}

/**
 * The session's row, locked until the transaction ends; undefined when there is none. A claim of
 * its refresh token and its logout (or revocation by id) each take this lock first, so they run
 * one after the other: a claim never starts a family for a session a logout already ended, and a
 * logout sees the family a claim before it started.
 */
export async function lockSession(
  q: Queryable,
  jti: string,
): Promise<{ created_at: Date; revoked_at: Date | null; issued_by_refresh: boolean | null } | undefined> {
  const r = await q.query<{ created_at: Date; revoked_at: Date | null; issued_by_refresh: boolean | null }>(
    'SELECT created_at, revoked_at, issued_by_refresh FROM sessions WHERE jti = $1 FOR UPDATE',
    [jti],
  );
  return r.rows[0];
}

/** When the session was issued, under which method, and how (SessionIssue), by its row, if it exists. */
export async function sessionLogin(q: Queryable, jti: string): Promise<({ created_at: Date; method: string } & SessionIssue) | undefined> {
  const r = await q.query<{ created_at: Date; method: string } & SessionIssue>(
    'SELECT created_at, method, issued_by_refresh, login_at, login_method FROM sessions WHERE jti = $1',
    [jti],
  );
  return r.rows[0];
}

/**
 * Gives a session row the method it is handed out under, when it still has the one its login flow
 * recorded; false when it does not (already relabelled, or no such row).
 */
export async function relabelSessionMethod(q: Queryable, jti: string, from: string, to: string): Promise<boolean> {
  const r = await q.query('UPDATE sessions SET method = $3 WHERE jti = $1 AND method = $2', [jti, from, to]);
  return (r.rowCount ?? 0) > 0;
}

/** Records a logged-out TEE access token by its digest until `expiresAt`; false when it was already revoked. */
export async function revokeTeeToken(q: Queryable, t: { tokenDigest: string; omniAccount: string; expiresAt: Date }): Promise<boolean> {
  const r = await q.query('INSERT INTO revoked_tee_tokens (token_digest, omni_account, expires_at) VALUES ($1, $2, $3) ON CONFLICT (token_digest) DO NOTHING', [
    t.tokenDigest,
    t.omniAccount,
    t.expiresAt,
  ]);
  return (r.rowCount ?? 0) > 0;
}

/** True when a TEE access token with this digest has been logged out. */
export async function isTeeTokenRevoked(q: Queryable, tokenDigest: string): Promise<boolean> {
  const r = await q.query('SELECT 1 FROM revoked_tee_tokens WHERE token_digest = $1', [tokenDigest]);
  return (r.rowCount ?? 0) > 0;
}

export interface LiveSessionRow {
  jti: string;
  method: string;
  created_at: Date;
  expires_at: Date;
}

/*
 * A session's refresh family is the family of the refresh token its row in refresh_tokens names
 * (`session_jti`, unique): the queries below read it per session through that index, so they read
 * as many rows as the account has sessions, never a whole family.
 */

/**
 * The account's logins with a live bearer (sessions not revoked and not expired), one row each —
 * all live sessions of one refresh family are one login, a session of none is one on its own —
 * newest first, at most `limit`. Each login stands for its session `preferJti` when that is one of
 * it, else for its newest. Reads every live session of the account, and each one's family by its
 * token; however many bearers one family holds, it is one row and hides no other login.
 */
export async function listLiveLoginsOfAccount(
  q: Queryable,
  omniAccount: string,
  preferJti: string | undefined,
  limit: number,
): Promise<Array<LiveSessionRow & { family_id: string | null }>> {
  const r = await q.query<LiveSessionRow & { family_id: string | null }>(
    `WITH live AS MATERIALIZED (
       SELECT s.jti, s.method, s.created_at, s.expires_at, (SELECT t.family_id FROM refresh_tokens t WHERE t.session_jti = s.jti) AS family_id
         FROM sessions s
        WHERE s.omni_account = $1 AND s.revoked_at IS NULL AND s.expires_at > now()
     )
     SELECT jti, method, created_at, expires_at, family_id FROM (
       SELECT DISTINCT ON (coalesce('family:' || family_id, 'session:' || jti)) jti, method, created_at, expires_at, family_id FROM live
        ORDER BY coalesce('family:' || family_id, 'session:' || jti), coalesce(jti = $2, false) DESC, created_at DESC, jti
     ) logins
     ORDER BY created_at DESC, jti LIMIT $3`,
    [omniAccount, preferJti ?? null, limit],
  );
  return r.rows;
}

/**
 * Every live session of the account (not revoked, not expired), in no order, each with its refresh
 * family (read by its token, as listLiveLoginsOfAccount does; null for a session of none).
 */
export async function liveSessionsOfAccount(q: Queryable, omniAccount: string): Promise<Array<{ jti: string; method: string; family_id: string | null }>> {
  const r = await q.query<{ jti: string; method: string; family_id: string | null }>(
    `SELECT s.jti, s.method, (SELECT t.family_id FROM refresh_tokens t WHERE t.session_jti = s.jti) AS family_id
       FROM sessions s
      WHERE s.omni_account = $1 AND s.revoked_at IS NULL AND s.expires_at > now()`,
    [omniAccount],
  );
  return r.rows;
}

/**
 * Revokes every session of the refresh family not yet revoked; answers how many. Reads the
 * account's sessions not revoked (what the hourly purge leaves: those issued within about one
 * session lifetime) and each one's family by its token, never the family's older tokens.
 */
export async function revokeSessionsOfFamily(q: Queryable, omniAccount: string, familyId: string): Promise<number> {
  const r = await q.query(
    `UPDATE sessions s SET revoked_at = now()
      WHERE s.omni_account = $1 AND s.revoked_at IS NULL
        AND (SELECT t.family_id FROM refresh_tokens t WHERE t.session_jti = s.jti) = $2`,
    [omniAccount, familyId],
  );
  return r.rowCount ?? 0;
}

export interface SessionRow extends LiveSessionRow {
  revoked_at: Date | null;
}

/** The rows of these sessions that exist (the hourly purge deletes those whose bearer expired), revoked or not. */
export async function sessionsByJti(q: Queryable, jtis: string[]): Promise<SessionRow[]> {
  if (jtis.length === 0) return [];
  const r = await q.query<SessionRow>('SELECT jti, method, created_at, expires_at, revoked_at FROM sessions WHERE jti = ANY($1)', [jtis]);
  return r.rows;
}
