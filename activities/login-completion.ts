import { ApplicationFailure } from '@temporalio/common';
import { accountTag, hmacHex } from '../lib/digest';
import { IdentityError } from '../lib/omni';
import { LoginProofReplayedError, LoginRecordedForAnotherError, recordLogin, type CompleteLoginInput } from '../services/logins';
import { FailureType, type LoginOutcome } from '../workflows/definitions';
import { currentRun } from './context';
import type { ActivityDeps } from './deps';

export function createLoginActivities(deps: ActivityDeps) {
  return {
    /**
     * Ends every workflow login (recordLogin): returns the session's claims, not a token.
     * Idempotent per workflow run and identity: a retry reuses the jti, the session row and the
     * audit row. The identity is part of both: a run whose completion committed for one account
     * and whose result was lost (a workflow task that did not complete, so concurrent approvals of
     * a device code are delivered again, maybe in another order) can complete for another, which
     * gets a session row and an audit row of its own instead of a token on the first one's row.
     */
    async completeLogin(input: CompleteLoginInput): Promise<LoginOutcome> {
      const { workflowId, runId } = currentRun();
      const again = input.reissue ? ['retry'] : [];
      const who = hmacHex(deps.secrets.hmacSecret, 'login-identity', input.identity.type, input.identity.value).slice(0, 16);
      const jti = hmacHex(deps.secrets.hmacSecret, 'session-jti', workflowId, runId, who, ...again).slice(0, 32);
      try {
        const session = await recordLogin(deps, input, { jti, idemKey: ['login', workflowId, runId, who, ...again].join(':') });
        return { ...session, account_tag: accountTag(deps.secrets.hmacSecret, session.omni_account) };
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
