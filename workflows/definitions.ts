/**
 * Shared definitions of the broker's workflows: inputs, results, updates and signals.
 * Imported by workflows, activities and the API alike, so it must stay deterministic
 * (no Node built-ins, no I/O).
 */
import { defineUpdate } from '@temporalio/workflow';
import type { Identity } from '../lib/omni';

/** The wire body of a successful login (CONTRACTS §5). */
export interface LoginSession {
  token: string;
  token_type: 'Bearer';
  expires_at: number;
  omni_account: string;
  user_id: string;
  identity: Identity;
}

/** ApplicationFailure types a flow raises; the API maps each to an error kind. */
export const FailureType = {
  invalidCode: 'InvalidCode',
  expired: 'Expired',
  tooManyAttempts: 'TooManyAttempts',
  rateLimited: 'RateLimited',
  badRequest: 'BadRequest',
  forbidden: 'Forbidden',
  unauthorized: 'Unauthorized',
  deliveryFailed: 'DeliveryFailed',
  auditFailed: 'AuditFailed',
  stsFailed: 'StsFailed',
  /** A one-time proof (wallet signature, nonce) was already consumed: 409 conflict. */
  replayed: 'Replayed',
  /** The EVM RPC needed for a contract-wallet signature did not answer: 503 unavailable. */
  chainUnavailable: 'ChainUnavailable',
} as const;

// ---- email code login -------------------------------------------------------------------------

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
