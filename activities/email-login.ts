import { ApplicationFailure } from '@temporalio/common';
import { deriveEmailCode, emailCodeDigest } from '../lib/email-login-code';
import { FailureType } from '../workflows/definitions';
import type { ActivityDeps } from './deps';
import { PERMANENT_SES_ERRORS } from '../adapters/ses-mailer';

export interface SendLoginCodeInput {
  workflowId: string;
  dispatch: number;
  email: string;
  ttlSeconds: number;
}

export function createEmailLoginActivities(deps: ActivityDeps) {
  return {
    /**
     * Derives the code for this dispatch and mails it. Returns only a keyed digest of the code.
     * Retries resend the same code (the derivation is deterministic).
     */
    async sendLoginCode(input: SendLoginCodeInput): Promise<{ codeDigest: string }> {
      const secret = deps.secrets.hmacSecret;
      const code = deriveEmailCode(secret, input.workflowId, input.dispatch);
      const minutes = Math.max(1, Math.round(input.ttlSeconds / 60));
      try {
        await deps.mailer.send({
          to: input.email,
          subject: `Your AgentKeys login code: ${code}`,
          text: `Your AgentKeys login code is ${code}.\n\nIt expires in ${minutes} minute${minutes === 1 ? '' : 's'}. If you did not ask for it, ignore this mail.\n`,
        });
      } catch (e) {
        const name = (e as Error).name;
        if (PERMANENT_SES_ERRORS.has(name)) {
          throw ApplicationFailure.nonRetryable(`the mail service refused the message (${name})`, FailureType.deliveryFailed);
        }
        throw ApplicationFailure.retryable(`sending the code failed (${name}); will retry`, 'MailTransient');
      }
      return { codeDigest: emailCodeDigest(secret, input.workflowId, code) };
    },
  };
}
