/**
 * Definitions every flow shares: the login session body and the failure types the API maps to
 * error kinds. A flow's own inputs, results and updates live beside it in `F.definitions.ts`.
 * Imported by workflows, activities and the API alike, so it must stay deterministic
 * (no Node built-ins, no I/O).
 */
import type { Identity } from '../lib/omni';
import type { LoginMethod } from '../lib/session-token';

/** The wire body of a successful login (docs/contracts.md §5). */
export interface LoginSession {
  token: string;
  token_type: 'Bearer';
  expires_at: number;
  omni_account: string;
  user_id: string;
  identity: Identity;
}

/**
 * What a login flow returns: the session as recorded (its jti, times and account), not a token.
 * The API signs the bearer from it after the flow returns (api/session-issue.ts), so no history
 * holds a usable session token.
 */
export interface LoginOutcome {
  jti: string;
  method: LoginMethod;
  /** The EVM address that signed in (wallet logins), lower-case. */
  wallet?: string;
  /** Unix seconds; the token's iat. */
  issued_at: number;
  /** Unix seconds; the token's exp and the session row's expiry. */
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
  /** The request contradicts what is recorded (an Idempotency-Key reused for another request, a cap reached): 409 conflict. */
  conflict: 'Conflict',
  /** The EVM RPC needed for a contract-wallet signature did not answer: 503 unavailable. */
  chainUnavailable: 'ChainUnavailable',
  /** An identity provider (Google) kept failing or did not answer in time: 503 unavailable. */
  providerUnavailable: 'ProviderUnavailable',
} as const;
