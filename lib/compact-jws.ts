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

/** The order of P-256's group (FIPS 186-4 D.1.2.3): an ES256 signature (r, s) and (r, n − s) both verify. */
const P256_N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;

/**
 * An ES256 compact JWS with its signature's s in the lower half (s replaced by n − s otherwise):
 * the one of a signature's two valid forms that the broker issues its session tokens in and keys
 * records about a bearer by, so a bearer's ECDSA twin is the same bearer. A token whose signature
 * is not 64 bytes (RS256, a malformed one) is returned as it is.
 */
export function lowSCompactJws(token: string): string {
  const dot = token.lastIndexOf('.');
  const sig = Buffer.from(token.slice(dot + 1), 'base64url');
  if (dot < 0 || sig.length !== 64) return token;
  const s = BigInt(`0x${sig.subarray(32).toString('hex')}`);
  if (s <= P256_N / 2n) return token;
  const low = Buffer.from((P256_N - s).toString(16).padStart(64, '0'), 'hex');
  return `${token.slice(0, dot + 1)}${Buffer.concat([sig.subarray(0, 32), low]).toString('base64url')}`;
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
