import { createHmac } from 'node:crypto';
import { hmacHex } from './digest';

/**
 * Email login codes. The code for dispatch n of a flow is HMAC(secret, workflow id, n), so a
 * retried send activity mails the same code, and nothing but a keyed digest of it ever reaches
 * Temporal: the API digests what the user typed the same way before it talks to the workflow.
 */
export const EMAIL_CODE_RE = /^\d{6}$/;

export function deriveEmailCode(secret: Uint8Array, workflowId: string, dispatch: number): string {
  const mac = createHmac('sha256', secret).update(`email-code\0${workflowId}\0${dispatch}`).digest();
  const n = mac.readUInt32BE(0) % 1_000_000;
  return n.toString().padStart(6, '0');
}

export function emailCodeDigest(secret: Uint8Array, workflowId: string, code: string): string {
  return hmacHex(secret, 'email-code-digest', workflowId, code);
}

/** Keyed, non-reversible key of an address: the workflow id part, rate-limit key and log field. */
export function emailKey(secret: Uint8Array, email: string): string {
  return hmacHex(secret, 'email', email.trim().toLowerCase()).slice(0, 32);
}
