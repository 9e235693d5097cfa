import type { Queryable } from './pool';

export async function insertSession(
  q: Queryable,
  s: { jti: string; omniAccount: string; method: string; expiresAt: Date },
): Promise<void> {
  await q.query(
    `INSERT INTO sessions (jti, omni_account, method, expires_at) VALUES ($1, $2, $3, $4) ON CONFLICT (jti) DO NOTHING`,
    [s.jti, s.omniAccount, s.method, s.expiresAt],
  );
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
