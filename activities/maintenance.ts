import { purgeFinishedApprovals } from '../db/approvals';
import { purgeEmailSends } from '../db/email-sends';
import { purgeRefreshTokens } from '../db/refresh-tokens';
import { purgeExpiredSessions, purgeExpiredTeeTokenRevocations } from '../db/sessions';
import { purgeExpiredProofs } from '../db/used-signatures';
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
  /** Refresh tokens of families past BROKER_REFRESH_MAX_SECONDS that no longer hold a live session (none of them renews anything). */
  refreshTokens?: number;
  /** Approval requests finished more than BROKER_APPROVAL_RETENTION_DAYS ago (their audit rows stay). Optional: runs recorded before it returned none. */
  approvals?: number;
}

export function createMaintenanceActivities(deps: ActivityDeps) {
  return {
    /** Deletes rows that can no longer change any decision. Idempotent: a retry deletes nothing more. */
    async purgeExpiredRows(): Promise<PurgeResult> {
      const now = new Date(deps.now());
      const proofs = await purgeExpiredProofs(deps.db, now);
      const sessions = await purgeExpiredSessions(deps.db, now);
      const revokedTeeTokens = await purgeExpiredTeeTokenRevocations(deps.db, now);
      const emailSends = await purgeEmailSends(deps.db, deps.now());
      const refreshTokens = await purgeRefreshTokens(deps.db, now, deps.config.BROKER_REFRESH_MAX_SECONDS);
      const approvals = await purgeFinishedApprovals(deps.db, now, deps.config.BROKER_APPROVAL_RETENTION_DAYS);
      return { proofs, sessions, revokedTeeTokens, emailSends, refreshTokens, approvals };
    },
  };
}
