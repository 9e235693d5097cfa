import { AgentKeysError } from './errors';

/**
 * The one spelling check for every JWT the broker takes (broker session tokens, TEE access
 * tokens): each of the three compact segments must be base64url exactly as RFC 7515 §2 writes
 * it — the alphabet `A-Z a-z 0-9 - _`, no padding, and no bits set in the last character
 * beyond the encoded bytes.
 *
 * Decoders (jose's, Node's) ignore those unused bits: a 256-byte RS256 signature ends in a
 * character carrying 2 data bits and 4 unused ones, so 16 spellings decode to the same
 * signature, and a JWT verifies under each. Anything keyed by the token's text (a logout record,
 * an idempotency key) would tell them apart while the signature check does not. Refusing all
 * spellings but the canonical one, and keying records by the decoded bytes
 * (`canonicalCompactJws`), makes a token one thing whatever a client typed.
 */

export class JwsSpellingError extends AgentKeysError {
  override readonly code: string = 'ERR_JWS_SPELLING';
  override name = 'JwsSpellingError';
}

const SEGMENT_NAMES = ['header', 'payload', 'signature'] as const;
const BASE64URL_RE = /^[A-Za-z0-9_-]*$/;

/** True when `segment` is the one base64url spelling of its bytes (RFC 4648 §5, no padding). */
export function isCanonicalBase64url(segment: string): boolean {
  if (!BASE64URL_RE.test(segment) || segment.length % 4 === 1) return false;
  return Buffer.from(segment, 'base64url').toString('base64url') === segment;
}

/**
 * The token written canonically from its decoded header, payload and signature bytes: every
 * spelling of one token maps here. Records about a token (revocation, idempotency) are keyed by
 * a digest of this, never of the text as sent.
 */
export function canonicalCompactJws(token: string): string {
  return token
    .split('.')
    .map((segment) => Buffer.from(segment, 'base64url').toString('base64url'))
    .join('.');
}

/** Throws JwsSpellingError unless `token` is three canonical base64url segments. */
export function assertCanonicalCompactJws(token: string): void {
  const segments = token.split('.');
  if (segments.length !== 3) throw new JwsSpellingError(`not a JWT: 3 segments expected, got ${segments.length}`);
  segments.forEach((segment, i) => {
    if (!isCanonicalBase64url(segment)) {
      throw new JwsSpellingError(`the ${SEGMENT_NAMES[i]} segment is not canonical base64url (RFC 7515 §2: no padding, no unused bits set)`);
    }
  });
}
