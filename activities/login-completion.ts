import { ApplicationFailure } from '@temporalio/common';
import { hmacHex } from '../lib/digest';
import { IdentityError } from '../lib/omni';
import { LoginProofReplayedError, LoginRecordedForAnotherError, recordLogin, type CompleteLoginInput } from '../services/logins';
import { FailureType, type LoginOutcome } from '../workflows/definitions';
import { currentRun } from './context';
import type { ActivityDeps } from './deps';

export function createLoginActivities(deps: ActivityDeps) {
  return {
    /**
     * Ends every workflow login (recordLogin): returns the session's claims, not a token.
     * Idempotent per workflow run: a retry reuses the jti, the session row and the audit row.
     */
    async completeLogin(input: CompleteLoginInput): Promise<LoginOutcome> {
      const { workflowId, runId } = currentRun();
      const again = input.reissue ? ['retry'] : [];
      const jti = hmacHex(deps.secrets.hmacSecret, 'session-jti', workflowId, runId, ...again).slice(0, 32);
      try {
        return await recordLogin(deps, input, { jti, idemKey: ['login', workflowId, runId, ...again].join(':') });
      } catch (e) {
        if (e instanceof LoginProofReplayedError) throw ApplicationFailure.nonRetryable(e.message, FailureType.replayed);
        if (e instanceof LoginRecordedForAnotherError) throw ApplicationFailure.nonRetryable(e.message, FailureType.conflict);
        if (e instanceof IdentityError)
          throw ApplicationFailure.create({ message: e.message, type: FailureType.badRequest, nonRetryable: true, details: [{ reason: 'identity_too_long' }] });
        // Retryable (the DB may come back); after the last attempt the flow reports audit_error.
        throw ApplicationFailure.retryable(`could not record the login: ${(e as Error).message}`, FailureType.auditError);
      }
    },
  };
}
