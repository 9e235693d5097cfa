import { ApplicationFailure } from '@temporalio/common';
import { reserveEmailSend } from '../db/email-sends';
import { deriveEmailCode, emailCodeDigest, emailDispatchKey, type EmailCodeDispatch } from '../lib/email-login-code';
import { emailSendKey, emailSendPolicy, emailSendRefusalMessage } from '../lib/email-send-budget';
import { FailureType } from '../workflows/definitions';
import { currentRun } from './context';
import type { ActivityDeps } from './deps';
import { PERMANENT_SES_ERRORS, type Mailer } from '../adapters/ses-mailer';

export interface SendEmailLoginCodeInput {
  email: string;
  /** 1 for the first mail of the run, +1 per resend. */
  dispatch: number;
  /** The run's random salt (EmailLoginRequestInput.code_salt). */
  salt: string;
  ttlSeconds: number;
  /**
   * The keyed requester network of the call that asked for this dispatch (emailSendNetworkKey):
   * whose allowance and cooldown the send spends.
   */
  networkKey: string;
}

async function mailCode(mailer: Mailer, to: string, code: string, ttlSeconds: number): Promise<void> {
  const minutes = Math.max(1, Math.round(ttlSeconds / 60));
  try {
    await mailer.send({
      to,
      subject: `Your AgentKeys login code: ${code}`,
      text: `Your AgentKeys login code is ${code}.\n\nIt expires in ${minutes} minute${minutes === 1 ? '' : 's'}. If you did not ask for it, ignore this mail.\n`,
    });
  } catch (e) {
    const name = (e as Error).name;
    if (PERMANENT_SES_ERRORS.has(name)) {
      throw ApplicationFailure.nonRetryable(`the mail service refused the message (${name})`, FailureType.deliveryFailed);
    }
    throw ApplicationFailure.retryable(`sending the code failed (${name}); will retry`, FailureType.mailTransient);
  }
}

export function createEmailLoginActivities(deps: ActivityDeps) {
  return {
    /**
     * Reserves a send in the mailbox's budget (db email_sends: the requester network's cooldown and
     * allowance, the mailbox's hourly ceiling, across every flow), derives the code of this
     * dispatch and mails it. Returns only a keyed digest of the code. A retry of the same dispatch
     * finds its reservation and mails the same code (the derivation is deterministic in workflow
     * id, run id, dispatch and the run's salt) and the same reservation time; a spent budget is a
     * non-retryable RateLimited failure with `retry_after`, and nothing is mailed.
     */
    async sendEmailLoginCode(input: SendEmailLoginCodeInput): Promise<{ codeDigest: string; sentAtMs: number }> {
      const secret = deps.secrets.hmacSecret;
      const dispatch: EmailCodeDispatch = { ...currentRun(), dispatch: input.dispatch, salt: input.salt };
      const decision = await reserveEmailSend(deps.db, {
        addressKey: emailSendKey(secret, input.email),
        networkKey: input.networkKey,
        dispatchKey: emailDispatchKey(secret, dispatch),
        now: deps.now,
        policy: emailSendPolicy(deps.config),
      });
      if (!decision.ok) {
        throw ApplicationFailure.create({
          type: FailureType.rateLimited,
          message: emailSendRefusalMessage(decision.reason),
          nonRetryable: true,
          details: [{ retry_after: decision.retryAfterSeconds }],
        });
      }
      const code = deriveEmailCode(secret, dispatch);
      await mailCode(deps.mailer, input.email, code, input.ttlSeconds);
      // sentAtMs: when the address's cooldown started counting (the reservation), which the flow's
      // resend_after must not promise earlier than. A local activity does not move workflow time.
      return { codeDigest: emailCodeDigest(secret, dispatch.workflowId, code), sentAtMs: decision.reservedAtMs };
    },
  };
}
