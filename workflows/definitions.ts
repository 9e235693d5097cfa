/**
 * Definitions every flow shares: the login session body and the failure types the API maps to
 * error kinds. A flow's own inputs, results and updates live beside it in `F.definitions.ts`.
 * Imported by workflows, activities and the API alike, so it must stay deterministic
 * (no Node built-ins, no I/O).
 */
import type { Identity } from '../lib/omni';
import type { LoginMethod } from '../lib/session-token';

/** The wire body of a successful login (docs/contracts.md §5), defined in lib/wire.ts. */

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

/** ApplicationFailure types: derived from the one error vocabulary (lib/errors.ts), re-exported for the flows that import them here. */
export { FailureType } from '../lib/errors';
