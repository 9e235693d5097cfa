import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/** Keyed and unkeyed digests used for ids, code derivation and audit records (never reversible). */

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The PKCE S256 code challenge of a verifier (RFC 7636 §4.2): base64url of its SHA-256, no padding. */
export function pkceS256Challenge(verifier: string): string {
  return createHash('sha256').update(verifier, 'ascii').digest('base64url');
}

/** HMAC-SHA256 over the parts joined unambiguously (length-prefixed), hex encoded. */
export function hmacHex(secret: Uint8Array, ...parts: string[]): string {
  const h = createHmac('sha256', secret);
  for (const p of parts) {
    const b = Buffer.from(p, 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32BE(b.length);
    h.update(len).update(b);
  }
  return h.digest('hex');
}

/**
 * What a login request a client holds by its request id is known by in Temporal: the keyed digest
 * of that id (64 hex), the suffix of its workflow id. A workflow id is visible to whoever can list
 * the namespace's workflows without the payload key, and a request id is the client's handle on
 * its flow (an email login's alone spends its attempts; a wallet challenge's lets a stranger keep
 * it busy with junk signatures), so none appears there.
 */
export function requestIdDigest(secret: Uint8Array, flow: 'email-login' | 'wallet-login', requestId: string): string {
  return hmacHex(secret, `${flow}-request`, requestId);
}

/**
 * An account as Temporal shows it (the AkAccount search attribute, the TEE bookkeeping workflow's
 * id): the keyed digest of its OmniAccount, 32 hex. The OmniAccount is an unkeyed hash of the
 * client id and the identity, so anyone listing the namespace could hash a list of addresses and
 * learn which have accounts; the tag needs the broker's secret.
 */
export function accountTag(secret: Uint8Array, omniAccount: string): string {
  return hmacHex(secret, 'account-tag', omniAccount.toLowerCase()).slice(0, 32);
}

/** Constant-time comparison of two strings (false when lengths differ). */
export function safeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a, 'utf8');
  const bb = Buffer.from(b, 'utf8');
  return ab.length === bb.length && timingSafeEqual(ab, bb);
}
