import { hmacHex } from './digest';

/**
 * Email login codes. The code of one dispatch is HMAC(secret, workflow id, run id, dispatch
 * number, a random per-run salt): a retried send activity mails the same code, while no other
 * dispatch, run or flow ever shares it (the workflow id holds a keyed digest of the requester's
 * random request id, the run id is the server's, the salt comes from the API's CSPRNG). Nothing but a keyed digest of
 * the code reaches Temporal: the API digests what the user typed the same way before it talks to
 * the workflow.
 */
export const EMAIL_CODE_RE = /^\d{6}$/;

/** What makes one mailed code unique. */
export interface EmailCodeDispatch {
  workflowId: string;
  runId: string;
  /** 1 for the first mail of a run, +1 per resend. */
  dispatch: number;
  /** Random per run (hex); '' only for runs of the retired per-address flow, which had none. */
  salt: string;
}

function dispatchMac(secret: Uint8Array, purpose: string, d: EmailCodeDispatch): Buffer {
  return Buffer.from(hmacHex(secret, purpose, d.workflowId, d.runId, String(d.dispatch), d.salt), 'hex');
}

export function deriveEmailCode(secret: Uint8Array, d: EmailCodeDispatch): string {
  // 48 bits reduced mod 10^6: the bias (10^6 / 2^48) is negligible.
  const n = dispatchMac(secret, 'email-code-v2', d).readUIntBE(0, 6) % 1_000_000;
  return n.toString().padStart(6, '0');
}

/** The ledger key of one dispatch (db email_sends): a retried send finds its own reservation. */
export function emailDispatchKey(secret: Uint8Array, d: EmailCodeDispatch): string {
  return dispatchMac(secret, 'email-dispatch', d).subarray(0, 16).toString('hex');
}

export function emailCodeDigest(secret: Uint8Array, workflowId: string, code: string): string {
  return hmacHex(secret, 'email-code-digest', workflowId, code);
}

/**
 * A client's Idempotency-Key on email_login as the flow sees it: keyed and bound to that flow, so
 * neither the raw key nor one usable on another request is ever stored.
 */
export function emailRetryKeyDigest(secret: Uint8Array, workflowId: string, idempotencyKey: string): string {
  return hmacHex(secret, 'email-login-retry', workflowId, idempotencyKey);
}

/**
 * email_code under an Idempotency-Key: the request id its first try opens (so a repeat finds that
 * flow) and the Update id of the dispatch (so a repeat gets that dispatch's answer, not a new one).
 * Bound to the address and, for a resend, to the request it resends on.
 */
export function emailCodeRetryIds(
  secret: Uint8Array,
  emailKeyValue: string,
  idempotencyKey: string,
  resendOn?: string,
): { requestId: string; updateId: string } {
  return {
    requestId: hmacHex(secret, 'email-code-request', emailKeyValue, idempotencyKey).slice(0, 32),
    updateId: `request-code-${hmacHex(secret, 'email-code-update', emailKeyValue, resendOn ?? '', idempotencyKey).slice(0, 32)}`,
  };
}

/** An address as the email login takes it (trimmed, lower-cased): the identity it signs in, and what two addresses are compared as. */
export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

/** Keyed, non-reversible key of an address: the send-budget key, the flow's owner check and log field. */
export function emailKey(secret: Uint8Array, email: string): string {
  return hmacHex(secret, 'email', normalizeEmail(email)).slice(0, 32);
}

/** RFC 5321 §4.5.3.1.1: a local part holds at most 64 octets. */
export const EMAIL_LOCAL_PART_MAX_OCTETS = 64;

export function emailLocalPartOctets(email: string): number {
  const at = email.lastIndexOf('@');
  return Buffer.byteLength(at < 0 ? email : email.slice(0, at), 'utf8');
}
