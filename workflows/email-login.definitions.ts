/** Email code login (workflow `email-login/…`): its input, settings, updates and outcomes. */
import { defineUpdate } from '@temporalio/workflow';
import type { LoginOutcome } from './definitions';

export interface EmailLoginSettings {
  ttlSeconds: number;
  maxAttempts: number;
  resendCooldownSeconds: number;
  /** Mails per flow (a flow is one requester's login request). */
  maxSends: number;
  /**
   * How long a run waits for its first dispatch (which arrives with the start, by Update-with-Start)
   * before it ends expired.
   */
  firstDispatchSeconds: number;
  /**
   * How long after a success a repeat of that submission under the same Idempotency-Key gets a
   * fresh session (the client lost the first answer).
   */
  retryWindowSeconds: number;
  /**
   * The wait before the mail is tried again after a transient failure (doubling, 4 tries in all).
   * Absent in runs started before it was set: 500 ms.
   */
  sendBackoffMs?: number;
}

/**
 * Input of the retired emailLoginRequestWorkflow (1.1.0 and before): one flow per requester,
 * workflow id email-login/<request id>, the request id read from it.
 */
export interface EmailLoginRequestInput {
  /** Lower-cased address; encrypted in history by the payload codec. */
  email: string;
  /** emailKey(secret, email): a resend must name the same address. */
  email_key: string;
  /** 32 random hex from the API, mixed into every code of this run. */
  code_salt: string;
  settings: EmailLoginSettings;
}

/**
 * Input of emailCodeLoginWorkflow (since 1.2.0): one flow per requester, workflow id
 * email-login/<requestIdDigest(secret, 'email-login', request id)> (lib/digest.ts). The request id travels in the input, which
 * the payload codec encrypts, never in the id.
 */
export interface EmailCodeLoginInput extends EmailLoginRequestInput {
  /** 32 random hex from the API (or derived from an Idempotency-Key): what the requester holds. */
  request_id: string;
}

/** Argument of requestCode: whose address the caller asks a (re)send for. */
export interface RequestCodeInput {
  email_key: string;
  /**
   * The caller's requester network as a keyed digest (32 hex, emailSendNetworkKey): the send
   * spends that network's allowance and cooldown for the mailbox.
   */
  network_key: string;
}

export interface CodeDispatched {
  request_id: string;
  /** Unix seconds. */
  expires_at: number;
  /** Unix seconds from which a resend is accepted. */
  resend_after: number;
}

export interface SubmitCodeInput {
  request_id: string;
  /** emailCodeDigest(secret, workflowId, code) computed by the API: never the code itself. */
  code_digest: string;
  /**
   * The caller's Idempotency-Key as a keyed digest bound to this flow (emailRetryKeyDigest): a
   * repeat of the successful submission with the same key and code, within the retry window, gets
   * a fresh session instead of 410. Absent: no repeat is answered.
   */
  retry_key_digest?: string;
}

export type EmailLoginOutcome = 'succeeded' | 'expired' | 'too_many_attempts' | 'delivery_failed' | 'rate_limited';

export const requestCodeUpdate = defineUpdate<CodeDispatched, [RequestCodeInput]>('requestCode');
export const submitCodeUpdate = defineUpdate<LoginOutcome, [SubmitCodeInput]>('submitCode');

export const EMAIL_LOGIN_ID_PREFIX = 'email-login/';
