import { canonicalJson, CanonicalJsonError } from './canonical-json';
import { AgentKeysError } from './errors';

/**
 * The signed mint intent: the optional v2 body of `POST /v1/mint-aws-creds` (docs/mint.md,
 * "Signed intents"), in the form the later AgentKeys broker accepts
 * (litentry/agent-terrier, crates/agentkeys-broker-server/src/handlers/mint.rs):
 *
 *   {"request_id", "issued_at", "intent": {"agent_id", "service", "scope_path"?},
 *    "auth": {"address", "signature"}}
 *
 * `auth.signature` is an EIP-191 `personal_sign` by `auth.address` over the canonical JSON of the
 * whole body without `auth.signature`: object keys sorted at every depth, no whitespace, values
 * as JSON writes them (upstream's `canonicalize_json`). A fresh signature per mint is proof that
 * the wallet itself asked for this mint, beyond holding its session bearer.
 */

export class MintIntentError extends AgentKeysError {
  override readonly code: string = 'ERR_MINT_INTENT';
  override name = 'MintIntentError';
}

/** The text the wallet signs: the body without auth.signature, canonicalised. */
export function mintIntentSigningInput(body: Record<string, unknown>): string {
  const auth = body.auth;
  if (auth === null || typeof auth !== 'object' || Array.isArray(auth)) throw new MintIntentError('auth must be an object');
  const { signature: _signature, ...authRest } = auth as Record<string, unknown>;
  try {
    // Upstream's canonicalize_json: sorted keys, no whitespace; floats refused (no agreed spelling to sign).
    return canonicalJson({ ...body, auth: authRest }, true);
  } catch (e) {
    if (e instanceof CanonicalJsonError) throw new MintIntentError(`numbers in a signed intent must be whole and below 2^53`);
    throw e;
  }
}

const RFC3339_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

/** issued_at as unix milliseconds; RFC 3339 only (what upstream clients send). */
export function parseIssuedAt(issuedAt: string): number {
  if (!RFC3339_RE.test(issuedAt)) throw new MintIntentError('issued_at must be an RFC 3339 time, e.g. 2026-11-30T09:00:00Z');
  const ms = Date.parse(issuedAt);
  if (Number.isNaN(ms)) throw new MintIntentError('issued_at is not a real time');
  return ms;
}
