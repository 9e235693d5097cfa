import type { Queryable } from './pool';

/** Inserts the session row; false when a row with this jti was already there (left as it was). */
export async function insertSession(q: Queryable, s: { jti: string; omniAccount: string; method: string; expiresAt: Date }): Promise<boolean> {
  const r = await q.query(`INSERT INTO sessions (jti, omni_account, method, expires_at) VALUES ($1, $2, $3, $4) ON CONFLICT (jti) DO NOTHING`, [
    s.jti,
    s.omniAccount,
    s.method,
    s.expiresAt,
  ]);
  return (r.rowCount ?? 0) > 0;
}

/** Whose session row `jti` is (account and method), if there is one; revoked or not. */
export async function sessionOwner(q: Queryable, jti: string): Promise<{ omni_account: string; method: string } | undefined> {
  const r = await q.query<{ omni_account: string; method: string }>('SELECT omni_account, method FROM sessions WHERE jti = $1', [jti]);
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

/** Revokes every session of the list still live; answers how many it revoked. */
export async function revokeSessions(q: Queryable, jtis: string[]): Promise<number> {
  if (jtis.length === 0) return 0;
  const r = await q.query('UPDATE sessions SET revoked_at = now() WHERE jti = ANY($1) AND revoked_at IS NULL', [jtis]);
  return r.rowCount ?? 0;
}

/**
 * The session's row, locked until the transaction ends; undefined when there is none. A claim of
 * its refresh token and its logout (or revocation by id) each take this lock first, so they run
 * one after the other: a claim never starts a family for a session a logout already ended, and a
 * logout sees the family a claim before it started.
 */
export async function lockSession(q: Queryable, jti: string): Promise<{ created_at: Date; revoked_at: Date | null } | undefined> {
  const r = await q.query<{ created_at: Date; revoked_at: Date | null }>('SELECT created_at, revoked_at FROM sessions WHERE jti = $1 FOR UPDATE', [jti]);
  return r.rows[0];
}

/** When the session was issued and by which login method (its row), if it exists. */
export async function sessionLogin(q: Queryable, jti: string): Promise<{ created_at: Date; method: string } | undefined> {
  const r = await q.query<{ created_at: Date; method: string }>('SELECT created_at, method FROM sessions WHERE jti = $1', [jti]);
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

/** The account's sessions not revoked and not expired, newest first, at most `limit`. */
export async function listLiveSessionsOfAccount(q: Queryable, omniAccount: string, limit: number): Promise<LiveSessionRow[]> {
  const r = await q.query<LiveSessionRow>(
    `SELECT jti, method, created_at, expires_at FROM sessions
      WHERE omni_account = $1 AND revoked_at IS NULL AND expires_at > now()
      ORDER BY created_at DESC, jti LIMIT $2`,
    [omniAccount, limit],
  );
  return r.rows;
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
