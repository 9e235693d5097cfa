import type { Queryable } from './pool';

export interface RefreshTokenRow {
  token_digest: string;
  family_id: string;
  omni_account: string;
  method: string;
  wallet: string | null;
  session_jti: string;
  family_started_at: Date;
  created_at: Date;
  used_at: Date | null;
  revoked_at: Date | null;
}

/** Inserts a refresh token; false when its session already has one (the unique session_jti). */
export async function insertRefreshToken(
  q: Queryable,
  t: { digest: string; familyId: string; omniAccount: string; method: string; wallet?: string; sessionJti: string; familyStartedAt: Date },
): Promise<boolean> {
  const r = await q.query(
    `INSERT INTO refresh_tokens (token_digest, family_id, omni_account, method, wallet, session_jti, family_started_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (session_jti) DO NOTHING`,
    [t.digest, t.familyId, t.omniAccount, t.method, t.wallet ?? null, t.sessionJti, t.familyStartedAt],
  );
  return (r.rowCount ?? 0) > 0;
}

/**
 * Serialises the changes of one refresh family until the transaction ends: a refresh (which adds a
 * token and a session to the family) and a revocation of the family (logout, reuse) take it first,
 * so a revocation never misses a token a refresh was adding meanwhile.
 */
export async function lockRefreshFamily(q: Queryable, familyId: string): Promise<void> {
  await q.query(`SELECT pg_advisory_xact_lock(hashtextextended('refresh_family:' || $1, 0))`, [familyId]);
}

/** The family of a token, read without a lock (to take the family's lock before the token's). */
export async function familyOfRefreshToken(q: Queryable, digest: string): Promise<string | undefined> {
  const r = await q.query<{ family_id: string }>('SELECT family_id FROM refresh_tokens WHERE token_digest = $1', [digest]);
  return r.rows[0]?.family_id;
}

/** The token's row, locked until the transaction ends (concurrent presentations of one token queue here). */
export async function lockRefreshToken(q: Queryable, digest: string): Promise<RefreshTokenRow | undefined> {
  const r = await q.query<RefreshTokenRow>('SELECT * FROM refresh_tokens WHERE token_digest = $1 FOR UPDATE', [digest]);
  return r.rows[0];
}

export async function markRefreshTokenUsed(q: Queryable, digest: string): Promise<void> {
  await q.query('UPDATE refresh_tokens SET used_at = now() WHERE token_digest = $1', [digest]);
}

/** Revokes every token of the family; answers the sessions the family issued. */
export async function revokeRefreshFamily(q: Queryable, familyId: string): Promise<string[]> {
  const r = await q.query<{ session_jti: string }>(
    'UPDATE refresh_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE family_id = $1 RETURNING session_jti',
    [familyId],
  );
  return r.rows.map((row) => row.session_jti);
}

/** The family a session belongs to, if it claimed or was issued a refresh token. */
export async function refreshFamilyOfSession(q: Queryable, jti: string): Promise<string | undefined> {
  const r = await q.query<{ family_id: string }>('SELECT family_id FROM refresh_tokens WHERE session_jti = $1', [jti]);
  return r.rows[0]?.family_id;
}

/** Deletes the families past their maximum age: none of their tokens can renew anything any more. */
export async function purgeRefreshTokens(q: Queryable, now: Date, maxSeconds: number): Promise<number> {
  const r = await q.query(`DELETE FROM refresh_tokens WHERE family_started_at < $1::timestamptz - make_interval(secs => $2)`, [now, maxSeconds]);
  return r.rowCount ?? 0;
}

/**
 * The login behind a session of a refresh family: when it happened (the family's start), the method
 * the family recorded and the session that began it (the family's first token's). Undefined when
 * the session is of no family.
 */
export async function refreshFamilyLoginOfSession(
  q: Queryable,
  jti: string,
): Promise<{ startedAt: Date; method: string; firstSessionJti: string } | undefined> {
  const r = await q.query<{ family_started_at: Date; method: string; first_session_jti: string }>(
    `SELECT r.family_started_at, first.method, first.session_jti AS first_session_jti
       FROM refresh_tokens r
       CROSS JOIN LATERAL (
         SELECT f.method, f.session_jti FROM refresh_tokens f WHERE f.family_id = r.family_id ORDER BY f.created_at, f.token_digest LIMIT 1
       ) first
      WHERE r.session_jti = $1`,
    [jti],
  );
  const row = r.rows[0];
  return row && { startedAt: row.family_started_at, method: row.method, firstSessionJti: row.first_session_jti };
}
