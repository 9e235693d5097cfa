import { CanonicalJsonError, canonicalJsonTree, parseJsonTree } from './canonical-json';
import { AgentKeysError } from './errors';

/**
 * The signed mint intent: the optional v2 body of `POST /v1/mint-aws-creds` (docs/mint.md,
 * "Signed intents"), in the form AgentKeys' own broker accepted at its Stage-7 commit
 * (litentry/agent-terrier 5f79a9f, crates/agentkeys-broker-server/src/handlers/mint.rs; upstream
 * retired the route and the handler in 958c375):
 *
 *   {"request_id", "issued_at", "intent": {"agent_id", "service", "scope_path"?},
 *    "auth": {"address", "signature"}}
 *
 * `auth.signature` is an EIP-191 `personal_sign` by `auth.address` over the canonical JSON of the
 * whole body without `auth.signature`: object keys sorted (UTF-8 byte order) at every depth, no
 * whitespace, strings and numbers as serde_json writes them (upstream's `canonicalize_json`). A fresh signature per mint is proof that
 * the wallet itself asked for this mint, beyond holding its session bearer.
 */

export class MintIntentError extends AgentKeysError {
  override readonly code: string = 'ERR_MINT_INTENT';
  override name = 'MintIntentError';
}

/**
 * The text the wallet signs: the body as it was sent, without auth.signature, in AgentKeys'
 * canonical form (lib/canonical-json.ts, `parseJsonTree` + `canonicalJsonTree`), read from the raw
 * body text so numbers keep the spelling upstream signs. A body upstream could not read (nested
 * deeper than serde_json reads, a number out of its range, a lone surrogate) or that repeats a key
 * is refused.
 */
export function mintIntentSigningInput(rawBody: string): string {
  let tree;
  try {
    tree = parseJsonTree(rawBody);
  } catch (e) {
    if (e instanceof CanonicalJsonError) throw new MintIntentError(`the signed intent cannot be put in canonical form: ${e.message}`);
    throw e;
  }
  if (tree.kind !== 'object') throw new MintIntentError('a signed intent must be a JSON object');
  const auth = tree.entries.find(([key]) => key === 'auth')?.[1];
  if (auth?.kind !== 'object') throw new MintIntentError('auth must be an object');
  auth.entries = auth.entries.filter(([key]) => key !== 'signature');
  return canonicalJsonTree(tree);
}

const RFC3339_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

/** issued_at as unix milliseconds; RFC 3339 only (what upstream clients send). */
export function parseIssuedAt(issuedAt: string): number {
  if (!RFC3339_RE.test(issuedAt)) throw new MintIntentError('issued_at must be an RFC 3339 time, e.g. 2026-11-30T09:00:00Z');
  const ms = Date.parse(issuedAt);
  if (Number.isNaN(ms)) throw new MintIntentError('issued_at is not a real time');
  return ms;
}
