import { purgeEmailSends } from '../db/email-sends';
import { purgeRefreshTokens } from '../db/refresh-tokens';
import type { ActivityDeps } from './deps';

export interface PurgeResult {
  /** Replay-guard rows past their window (the proof would be refused by its own time check). */
  proofs: number;
  /** Session rows whose token has expired (the token is refused by its exp anyway). */
  sessions: number;
  /** Logged-out TEE tokens past their exp (the token is refused by its exp anyway). */
  revokedTeeTokens: number;
  /** Email send-budget rows older than its one-hour window. */
  emailSends: number;
  /** Refresh tokens of families past BROKER_REFRESH_MAX_SECONDS (none of them renews anything). */
  refreshTokens?: number;
}

export function createMaintenanceActivities(deps: ActivityDeps) {
  return {
    /** Deletes rows that can no longer change any decision. Idempotent: a retry deletes nothing more. */
    async purgeExpiredRows(): Promise<PurgeResult> {
      const now = new Date(deps.now());
      const proofs = await deps.db.query('DELETE FROM used_signatures WHERE expires_at < $1', [now]);
      const sessions = await deps.db.query('DELETE FROM sessions WHERE expires_at < $1', [now]);
      const revokedTeeTokens = await deps.db.query('DELETE FROM revoked_tee_tokens WHERE expires_at < $1', [now]);
      const emailSends = await purgeEmailSends(deps.db, deps.now());
      const refreshTokens = await purgeRefreshTokens(deps.db, now, deps.config.BROKER_REFRESH_MAX_SECONDS);
      return { proofs: proofs.rowCount ?? 0, sessions: sessions.rowCount ?? 0, revokedTeeTokens: revokedTeeTokens.rowCount ?? 0, emailSends, refreshTokens };
    },
  };
}
