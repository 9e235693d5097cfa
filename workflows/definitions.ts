/**
 * Definitions every flow shares: the login session body and the failure types the API maps to
 * error kinds. A flow's own inputs, results and updates live beside it in `F.definitions.ts`.
 * Imported by workflows, activities and the API alike, so it must stay deterministic
 * (no Node built-ins, no I/O).
 */
/** What a login flow returns (the session as recorded, never a token): defined with the login-method registry. */
export type { LoginOutcome } from '../lib/login-methods';

/** ApplicationFailure types: derived from the one error vocabulary (lib/errors.ts), re-exported for the flows that import them here. */
export { FailureType } from '../lib/errors';
