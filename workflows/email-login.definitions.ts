/** Email code login (workflow `email-login/…`): its input, settings, updates and outcomes. */
import { defineUpdate } from '@temporalio/workflow';
import type { LoginSession } from './definitions';

export interface EmailLoginSettings {
  ttlSeconds: number;
  maxAttempts: number;
  resendCooldownSeconds: number;
  maxSends: number;
}

export interface EmailLoginInput {
  /** Lower-cased address; encrypted in history by the payload codec. */
  email: string;
  settings: EmailLoginSettings;
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
}

export type EmailLoginOutcome = 'succeeded' | 'expired' | 'too_many_attempts' | 'delivery_failed';

export const requestCodeUpdate = defineUpdate<CodeDispatched, []>('requestCode');
export const submitCodeUpdate = defineUpdate<LoginSession, [SubmitCodeInput]>('submitCode');

export const EMAIL_LOGIN_ID_PREFIX = 'email-login/';
