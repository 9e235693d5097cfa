import { AgentKeysError } from './errors';

export class CanonicalJsonError extends AgentKeysError {
  override readonly code: string = 'ERR_CANONICAL_JSON';
  override name = 'CanonicalJsonError';
}

/**
 * JSON with object keys sorted at every depth (by UTF-16 code unit) and no whitespace, so the same
 * value always serialises — and hashes, and signs — the same. The audit chain hashes rows in this
 * form (lib/audit-chain.ts) and signed mint intents are signed in it (lib/mint-intent.ts).
 *
 * `wholeNumbersOnly` refuses floats and integers past 2^53, whose spelling differs between JSON
 * writers: for text another program must reproduce byte for byte.
 */
export function canonicalJson(value: unknown, wholeNumbersOnly = false): string {
  if (wholeNumbersOnly && typeof value === 'number' && !Number.isSafeInteger(value)) {
    throw new CanonicalJsonError('numbers must be whole and below 2^53');
  }
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v, wholeNumbersOnly)).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj)
    .filter((k) => obj[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k], wholeNumbersOnly)}`).join(',')}}`;
}
