import type { Queryable } from './pool';

export interface RefreshTokenRow {
  token_digest: string;
  family_id: string;
  omni_account: string;
  method: string;
  wallet: string | null;
  session_jti: string;
  /** That session's public name (services/sessions.ts sessionIdOf); null on tokens issued before migration 023. */
  session_jti_hash: string | null;
  family_started_at: Date;
  created_at: Date;
  used_at: Date | null;
  revoked_at: Date | null;
}

/**
 * Inserts a refresh token, with its session's public name (`sessionJtiHash`: services/sessions.ts
 * sessionIdOf of `sessionJti`, by which a revoke by id finds it); false when its session already
 * has one (the unique session_jti).
 */
export async function insertRefreshToken(
  q: Queryable,
  t: {
    digest: string;
    familyId: string;
    omniAccount: string;
    method: string;
    wallet?: string;
    sessionJti: string;
    sessionJtiHash: string;
    familyStartedAt: Date;
  },
): Promise<boolean> {
  const r = await q.query(
    `INSERT INTO refresh_tokens (token_digest, family_id, omni_account, method, wallet, session_jti, session_jti_hash, family_started_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (session_jti) DO NOTHING`,
    [t.digest, t.familyId, t.omniAccount, t.method, t.wallet ?? null, t.sessionJti, t.sessionJtiHash, t.familyStartedAt],
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

/**
 * The token's row, locked until the transaction ends (concurrent presentations of one token queue
 * here), with whether its family has ended (refresh_family_revocations: the record that counts, as
 * ending a family revokes only its unspent token).
 */
export async function lockRefreshToken(q: Queryable, digest: string): Promise<(RefreshTokenRow & { family_ended: boolean }) | undefined> {
  const r = await q.query<RefreshTokenRow & { family_ended: boolean }>(
    `SELECT t.*, EXISTS (SELECT 1 FROM refresh_family_revocations f WHERE f.family_id = t.family_id) AS family_ended
       FROM refresh_tokens t WHERE t.token_digest = $1 FOR UPDATE OF t`,
    [digest],
  );
  return r.rows[0];
}

export async function markRefreshTokenUsed(q: Queryable, digest: string): Promise<void> {
  await q.query('UPDATE refresh_tokens SET used_at = now() WHERE token_digest = $1', [digest]);
}

/**
 * Ends the family, at a cost that does not grow with its size: records its end once
 * (refresh_family_revocations, which every refresh of the family reads first) and revokes its one
 * unspent token (its partial index); its spent tokens, which can renew nothing, are left as they
 * are. Answers whether this call ended it (false: it had ended before) and how many tokens it
 * revoked (0 or 1). Its sessions are the caller's to revoke (db/sessions.ts revokeSessionsOfFamily).
 */
export async function endRefreshFamily(q: Queryable, familyId: string): Promise<{ ended: boolean; tokensRevoked: number }> {
  const r = await q.query<{ ended: boolean; tokens_revoked: number }>(
    `WITH ended AS (
       INSERT INTO refresh_family_revocations (family_id) VALUES ($1) ON CONFLICT (family_id) DO NOTHING RETURNING family_id
     ), revoked AS (
       UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL AND used_at IS NULL RETURNING token_digest
     )
     SELECT EXISTS (SELECT 1 FROM ended) AS ended, (SELECT count(*) FROM revoked)::int AS tokens_revoked`,
    [familyId],
  );
  const row = r.rows[0];
  return { ended: row?.ended ?? false, tokensRevoked: row?.tokens_revoked ?? 0 };
}

/**
 * What the family's refresh budget needs: the creation times of its newest tokens issued in the
 * last `windowSeconds` (at most `take`, newest first), whether its first token (the claim, which is
 * no refresh) may be among them (no token of the family is older than the window), and the
 * database's clock. Reads at most `take` + 1 index entries whatever the family's size.
 */
export async function recentTokensOfFamily(
  q: Queryable,
  familyId: string,
  windowSeconds: number,
  take: number,
): Promise<{ now: Date; createdAt: Date[]; firstInWindow: boolean }> {
  const r = await q.query<{ now: Date; created: Date[]; older: boolean }>(
    `SELECT now() AS now,
            EXISTS (SELECT 1 FROM refresh_tokens WHERE family_id = $1 AND created_at <= now() - make_interval(secs => $2)) AS older,
            coalesce(ARRAY(SELECT created_at FROM refresh_tokens WHERE family_id = $1 AND created_at > now() - make_interval(secs => $2)
                            ORDER BY created_at DESC LIMIT $3), '{}') AS created`,
    [familyId, windowSeconds, take],
  );
  const row = r.rows[0];
  if (!row) throw new Error('recentTokensOfFamily: no row');
  return { now: row.now, createdAt: row.created, firstInWindow: !row.older };
}

/** How long a refresh token renews (the Config's BROKER_REFRESH_IDLE_SECONDS and BROKER_REFRESH_MAX_SECONDS). */
export interface RefreshLimits {
  idleSeconds: number;
  maxSeconds: number;
}

export interface LiveRefreshFamilyRow {
  family_id: string;
  /** The session issued with the family's one unspent token: its newest. */
  session_jti: string;
  method: string;
  /**
   * When that session was issued, by the family's own record: the family's start for the login's
   * own session (the family's only token), else the token's creation (one transaction with it).
   */
  session_created_at: Date;
  /** Unix seconds: when the unspent token stops renewing, as api/session-refresh.ts counts it (its `refresh_expires_at`). */
  refresh_expires_at: number;
}

/**
 * The account's refresh families that can still renew, newest first, at most `limit`: each one's
 * unspent token (a family has at most one: a claim adds it, each refresh spends it and adds the
 * next) that is not revoked and not past its idle or absolute limit, which api/session-refresh.ts
 * refuses from the whole second min(created + idle, family start + max), floored, on.
 */
export async function listLiveRefreshFamiliesOfAccount(
  q: Queryable,
  omniAccount: string,
  limits: RefreshLimits,
  limit: number,
): Promise<LiveRefreshFamilyRow[]> {
  const r = await q.query<LiveRefreshFamilyRow>(
    `SELECT family_id, session_jti, method, session_created_at, refresh_expires_at FROM (
       SELECT t.family_id, t.session_jti, t.method, t.created_at, t.token_digest,
              CASE WHEN EXISTS (SELECT 1 FROM refresh_tokens o WHERE o.family_id = t.family_id AND o.token_digest <> t.token_digest)
                   THEN t.created_at ELSE t.family_started_at END AS session_created_at,
              floor(extract(epoch FROM least(t.created_at + make_interval(secs => $2), t.family_started_at + make_interval(secs => $3))))::float8 AS refresh_expires_at
         FROM refresh_tokens t
        WHERE t.omni_account = $1 AND t.revoked_at IS NULL AND t.used_at IS NULL
          AND NOT EXISTS (SELECT 1 FROM refresh_family_revocations f WHERE f.family_id = t.family_id)
     ) live
     WHERE to_timestamp(refresh_expires_at) > now()
     ORDER BY created_at DESC, token_digest LIMIT $4`,
    [omniAccount, limits.idleSeconds, limits.maxSeconds, limit],
  );
  return r.rows;
}

/**
 * The sessions these families issued most recently: each one's newest `perFamily` tokens' (read
 * newest first on the (family_id, created_at) index), so as many rows whatever the families' sizes.
 */
export async function newestSessionsOfFamilies(
  q: Queryable,
  familyIds: string[],
  perFamily: number,
): Promise<Array<{ family_id: string; session_jti: string }>> {
  if (familyIds.length === 0) return [];
  const r = await q.query<{ family_id: string; session_jti: string }>(
    `SELECT f.family_id, t.session_jti
       FROM unnest($1::text[]) AS f(family_id)
       CROSS JOIN LATERAL (
         SELECT session_jti FROM refresh_tokens WHERE family_id = f.family_id ORDER BY created_at DESC LIMIT $2
       ) t`,
    [familyIds, perFamily],
  );
  return r.rows;
}

/**
 * The session of the account `omniAccount` whose public name (services/sessions.ts sessionIdOf) is
 * `sessionJtiHash`, by the name its refresh token recorded (migration 023): the session, its
 * family and the method the family recorded, with whether that family can still renew (not ended,
 * and its unspent token not revoked and not past its idle or absolute limit, counted as
 * listLiveRefreshFamiliesOfAccount counts them). One index entry, then the family's unspent token
 * by its own index: as many rows whatever the family's size or age. Undefined when no token of
 * this account recorded that name (another account's, a session of no family, or one issued
 * before migration 023).
 */
export async function sessionOfRefreshFamilyNamed(
  q: Queryable,
  omniAccount: string,
  sessionJtiHash: string,
  limits: RefreshLimits,
): Promise<{ session_jti: string; family_id: string; method: string; can_renew: boolean } | undefined> {
  const r = await q.query<{ session_jti: string; family_id: string; method: string; can_renew: boolean }>(
    `SELECT t.session_jti, t.family_id, t.method,
            NOT EXISTS (SELECT 1 FROM refresh_family_revocations f WHERE f.family_id = t.family_id)
            AND EXISTS (
              SELECT 1 FROM refresh_tokens u
               WHERE u.family_id = t.family_id AND u.revoked_at IS NULL AND u.used_at IS NULL
                 AND to_timestamp(floor(extract(epoch FROM least(u.created_at + make_interval(secs => $3), u.family_started_at + make_interval(secs => $4))))::float8) > now()
            ) AS can_renew
       FROM refresh_tokens t
      WHERE t.session_jti_hash = $1 AND t.omni_account = $2
      ORDER BY t.created_at DESC LIMIT 1`,
    [sessionJtiHash, omniAccount, limits.idleSeconds, limits.maxSeconds],
  );
  return r.rows[0];
}

/** The family a session belongs to, and its account, if the session claimed or was issued a refresh token. */
export async function refreshFamilyOfSession(q: Queryable, jti: string): Promise<{ familyId: string; omniAccount: string } | undefined> {
  const r = await q.query<{ family_id: string; omni_account: string }>('SELECT family_id, omni_account FROM refresh_tokens WHERE session_jti = $1', [jti]);
  const row = r.rows[0];
  return row && { familyId: row.family_id, omniAccount: row.omni_account };
}

/**
 * Deletes the families past their maximum age (as of `now`) that no longer hold a live session:
 * none of their tokens can renew anything any more, and no session they issued can still be
 * presented (each session row a token of theirs names is revoked, expired or gone). A family past
 * its maximum whose newest session still lives is kept until that session expires (at most about
 * one session lifetime, BROKER_LOGIN_SESSION_TTL_SECONDS, more): its token rows are what tie that
 * session to the family, for its logout and the revocation of the family. Its sessions are found as
 * revokeSessionsOfFamily finds them (db/sessions.ts): the account's sessions not revoked, each one's
 * family by its token. Their end's record goes with them (a family ends after it starts, so one
 * ended before the cut-off started before it). Answers how many tokens it deleted.
 */
export async function purgeRefreshTokens(q: Queryable, now: Date, maxSeconds: number): Promise<number> {
  const r = await q.query(
    `WITH aged AS MATERIALIZED (
       SELECT DISTINCT family_id, omni_account FROM refresh_tokens WHERE family_started_at < $1::timestamptz - make_interval(secs => $2)
     ), kept AS MATERIALIZED (
       SELECT a.family_id FROM aged a
        WHERE EXISTS (
          SELECT 1 FROM sessions s
           WHERE s.omni_account = a.omni_account AND s.revoked_at IS NULL AND s.expires_at >= $1::timestamptz
             AND (SELECT t.family_id FROM refresh_tokens t WHERE t.session_jti = s.jti) = a.family_id
        )
     ), ends AS (
       DELETE FROM refresh_family_revocations
        WHERE revoked_at < $1::timestamptz - make_interval(secs => $2) AND family_id NOT IN (SELECT family_id FROM kept)
     )
     DELETE FROM refresh_tokens
      WHERE family_started_at < $1::timestamptz - make_interval(secs => $2) AND family_id NOT IN (SELECT family_id FROM kept)`,
    [now, maxSeconds],
  );
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
