/**
 * The send budget of email login, across every flow: how many codes are mailed to one mailbox.
 * Two levels (docs/email-login.md, docs/security.md "Second review, item 4"):
 *
 * - per requester network (the client's IPv4 /24 or IPv6 /48, lib/client-address.ts): at most
 *   `perNetworkPerHour` codes to the mailbox in any rolling hour, and `cooldownSeconds` between two
 *   of them. This is the allowance a requester spends: a stranger on another network cannot spend
 *   the owner's.
 * - per mailbox, whoever asks: at most `perHour` codes in any rolling hour, the ceiling that bounds
 *   mail bombing and, with the per-flow attempt budget, how many guesses anyone gets against the
 *   codes of one mailbox (perHour x attempts per hour).
 *
 * The mailbox is the address as the provider delivers it (`emailSendMailbox`): spellings a known
 * provider ignores (+tags; dots at Gmail) share one budget. Pure: the API (a read-only pre-check)
 * and the send activity (the reservation, under a lock) decide with the same function.
 */
import type { Config } from './config';
import { hmacHex } from './digest';
import { emailKey, normalizeEmail } from './email-login-code';

export const EMAIL_SEND_WINDOW_MS = 3_600_000;

export interface EmailSendPolicy {
  cooldownSeconds: number;
  /** Codes to one mailbox per requester network per rolling hour. */
  perNetworkPerHour: number;
  /** Codes to one mailbox per rolling hour, all requesters together. */
  perHour: number;
}

export function emailSendPolicy(config: Config): EmailSendPolicy {
  return {
    cooldownSeconds: config.BROKER_EMAIL_RESEND_COOLDOWN_SECONDS,
    perNetworkPerHour: config.BROKER_RATE_LIMIT_EMAIL_PER_NETWORK_PER_HOUR,
    perHour: config.BROKER_RATE_LIMIT_EMAIL_PER_HOUR,
  };
}

/** One earlier send to the mailbox: when, and the keyed requester network it was for (null: before networks were recorded). */
export interface EmailSendRecord {
  atMs: number;
  network: string | null;
}

export type EmailSendRefusal = 'cooldown' | 'network' | 'budget';
export type EmailSendDecision = { ok: true } | { ok: false; reason: EmailSendRefusal; retryAfterSeconds: number };

/**
 * Whether one more code may be mailed now to the mailbox for a requester on `network`, given its
 * earlier sends (any order, older ones ignored). The requester's own cooldown and allowance first,
 * then the mailbox's ceiling.
 */
export function decideEmailSend(sends: readonly EmailSendRecord[], network: string | null, nowMs: number, policy: EmailSendPolicy): EmailSendDecision {
  const recent = sends
    .filter((s) => s.atMs > nowMs - EMAIL_SEND_WINDOW_MS)
    .sort((a, b) => a.atMs - b.atMs)
    .map((s) => ({ atMs: s.atMs, mine: s.network === network }));
  const mine = recent.filter((s) => s.mine).map((s) => s.atMs);
  const newest = mine[mine.length - 1];
  if (newest !== undefined && policy.cooldownSeconds > 0 && nowMs < newest + policy.cooldownSeconds * 1000) {
    return { ok: false, reason: 'cooldown', retryAfterSeconds: secondsFrom(nowMs, newest + policy.cooldownSeconds * 1000) };
  }
  const networkWait = fullWindow(mine, policy.perNetworkPerHour, nowMs);
  if (networkWait !== undefined) return { ok: false, reason: 'network', retryAfterSeconds: networkWait };
  const mailboxWait = fullWindow(
    recent.map((s) => s.atMs),
    policy.perHour,
    nowMs,
  );
  if (mailboxWait !== undefined) return { ok: false, reason: 'budget', retryAfterSeconds: mailboxWait };
  return { ok: true };
}

/** Seconds until a window holding `sorted` (ascending) has room for one more of `limit`, or undefined when it has room now. */
function fullWindow(sorted: readonly number[], limit: number, nowMs: number): number | undefined {
  if (sorted.length < limit) return undefined;
  // Free again once enough of the window's sends have aged out to leave room for one more.
  const freeing = sorted[sorted.length - limit] ?? nowMs;
  return secondsFrom(nowMs, freeing + EMAIL_SEND_WINDOW_MS);
}

/** The refusal message of a decision (the same from the API and from the flow). */
export function emailSendRefusalMessage(reason: EmailSendRefusal): string {
  switch (reason) {
    case 'cooldown':
      return 'a code was sent to this address from your network moments ago; wait before asking again';
    case 'network':
      return 'too many codes were sent to this address from your network; try again later';
    case 'budget':
      return 'too many codes were sent to this address; try again later';
  }
}

function secondsFrom(nowMs: number, atMs: number): number {
  return Math.max(1, Math.ceil((atMs - nowMs) / 1000));
}

/**
 * Providers documented to deliver every spelling below to one mailbox. Gmail ignores dots in the
 * local part and anything from a `+` on (googlemail.com is the same service); the others ignore a
 * `+tag` only. Deliberately short: a provider missing here costs extra mails to one inbox (each
 * spelling its own budget), a provider wrongly listed would make two real mailboxes share a budget.
 */
const DOTS_AND_TAGS_IGNORED: Readonly<Record<string, string>> = { 'gmail.com': 'gmail.com', 'googlemail.com': 'gmail.com' };
const TAGS_IGNORED = new Set(['outlook.com', 'hotmail.com', 'live.com', 'icloud.com', 'me.com', 'mac.com', 'fastmail.com', 'proton.me', 'protonmail.com']);

/**
 * The mailbox an address is delivered to, as far as the provider is known: the key of the send
 * budget only. The account's identity stays the address as typed (lower-cased); two spellings are
 * still two accounts.
 */
export function emailSendMailbox(email: string): string {
  const address = normalizeEmail(email);
  const at = address.lastIndexOf('@');
  if (at <= 0) return address;
  let local = address.slice(0, at);
  let domain = address.slice(at + 1);
  const gmail = DOTS_AND_TAGS_IGNORED[domain];
  if (gmail === undefined && !TAGS_IGNORED.has(domain)) return address;
  local = local.split('+')[0] ?? '';
  if (gmail !== undefined) {
    local = local.replaceAll('.', '');
    domain = gmail;
  }
  // "+tag@…" alone or "...@gmail.com" have no mailbox left to share: keep them as typed.
  return local === '' ? address : `${local}@${domain}`;
}

/** The ledger key of a mailbox (db email_sends.address_key): keyed, so the table holds no address. */
export function emailSendKey(secret: Uint8Array, email: string): string {
  return emailKey(secret, emailSendMailbox(email));
}

/** The ledger key of a requester network (db email_sends.network_key): keyed, so the table holds no client address. */
export function emailSendNetworkKey(secret: Uint8Array, network: string): string {
  return hmacHex(secret, 'email-send-network', network).slice(0, 32);
}
