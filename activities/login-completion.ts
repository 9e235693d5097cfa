import { ApplicationFailure } from '@temporalio/common';
import { appendAudit } from '../db/audit';
import { withTransaction } from '../db/pool';
import { insertSession } from '../db/sessions';
import { recordMainWallet, upsertUserOnLogin } from '../db/users';
import { hmacHex } from '../lib/digest';
import { deriveOmniAccount, type Identity } from '../lib/omni';
import type { LoginMethod } from '../lib/session-token';
import { FailureType, type LoginOutcome } from '../workflows/definitions';
import { currentRun } from './context';
import type { ActivityDeps } from './deps';

export interface CompleteLoginInput {
  method: LoginMethod;
  identity: Identity;
  requestId: string;
  /** The EVM address that signed in (wallet logins): recorded as the account's main wallet. */
  wallet?: string;
  /**
   * A one-time proof (e.g. the hash of a wallet signature) consumed in the same transaction as the
   * session: inserted into used_signatures, and a proof already used by another login fails the
   * activity with a non-retryable FailureType.replayed. `expiresAt` is unix seconds (keep the row
   * at least as long as the proof could be accepted).
   */
  consumeProof?: { hash: string; purpose: string; expiresAt: number };
}

export function createLoginActivities(deps: ActivityDeps) {
  return {
    /**
     * Ends every front-of-house login: upserts the user, records the session and its audit row in
     * one transaction, and returns what the session is. It signs no token: the API does that
     * after the flow returns, so the history holds nothing a caller could present. Idempotent per
     * workflow run: a retry reuses the jti, the session row and the audit row.
     */
    async completeLogin(input: CompleteLoginInput): Promise<LoginOutcome> {
      const workflowExecution = currentRun();
      const { config, secrets } = deps;
      const omniAccount = deriveOmniAccount(config.BROKER_CLIENT_ID, input.identity);
      const jti = hmacHex(secrets.hmacSecret, 'session-jti', workflowExecution.workflowId, workflowExecution.runId).slice(0, 32);
      const nowSeconds = Math.floor(deps.now() / 1000);
      const expiresAt = nowSeconds + config.BROKER_SESSION_TTL_SECONDS;
      let userId: string;
      try {
        userId = await withTransaction(deps.db, async (tx) => {
          if (input.consumeProof) {
            const p = input.consumeProof;
            const fresh = await tx.query(
              `INSERT INTO used_signatures (signature_hash, purpose, expires_at) VALUES ($1, $2, to_timestamp($3)) ON CONFLICT (signature_hash) DO NOTHING`,
              [p.hash, p.purpose, p.expiresAt],
            );
            // Already there: fine only if this very run stored it (a retry after a lost commit ack).
            if (fresh.rowCount === 0 && (await tx.query('SELECT 1 FROM sessions WHERE jti = $1', [jti])).rowCount === 0) {
              throw ApplicationFailure.nonRetryable('this signature has already been used; sign a new message', FailureType.replayed);
            }
          }
          const user = await upsertUserOnLogin(tx, { clientId: config.BROKER_CLIENT_ID, omniAccount, identity: input.identity });
          if (input.wallet) await recordMainWallet(tx, omniAccount, input.wallet);
          await insertSession(tx, { jti, omniAccount, method: input.method, expiresAt: new Date(expiresAt * 1000) });
          await appendAudit(tx, {
            event: `login.${input.method}`,
            outcome: 'ok',
            omniAccount,
            requestId: input.requestId,
            idemKey: `login:${workflowExecution.workflowId}:${workflowExecution.runId}`,
            details: { user_id: user.userId, first_login: user.created, jti_hash: hmacHex(secrets.hmacSecret, 'audit-jti', jti).slice(0, 32) },
          });
          return user.userId;
        });
      } catch (e) {
        if (e instanceof ApplicationFailure) throw e;
        // Retryable (the DB may come back); after the last attempt the flow reports audit_error.
        throw ApplicationFailure.retryable(`could not record the login: ${(e as Error).message}`, FailureType.auditFailed);
      }
      return {
        jti,
        method: input.method,
        ...(input.wallet ? { wallet: input.wallet } : {}),
        issued_at: nowSeconds,
        expires_at: expiresAt,
        omni_account: omniAccount,
        user_id: userId,
        identity: input.identity,
      };
    },
  };
}
