/**
 * The per-address send budget of email login, across every flow and requester: at most
 * `perHour` codes mailed to one address in any rolling hour, and `cooldownSeconds` between two of
 * them. It limits mail bombing and, with the per-flow attempt budget, how many guesses anyone gets
 * against the codes of one address (perHour x attempts per hour). Pure: the API (a read-only
 * pre-check) and the send activity (the reservation, under a lock) decide with the same function.
 */

export const EMAIL_SEND_WINDOW_MS = 3_600_000;

export interface EmailSendPolicy {
  cooldownSeconds: number;
  perHour: number;
}

export type EmailSendDecision = { ok: true } | { ok: false; reason: 'cooldown' | 'budget'; retryAfterSeconds: number };

/**
 * Whether one more code may be mailed now, given when the address's earlier codes were mailed
 * (milliseconds; any order, older ones ignored).
 */
export function decideEmailSend(sentAtMs: readonly number[], nowMs: number, policy: EmailSendPolicy): EmailSendDecision {
  const recent = sentAtMs.filter((t) => t > nowMs - EMAIL_SEND_WINDOW_MS).sort((a, b) => a - b);
  const newest = recent[recent.length - 1];
  if (newest !== undefined && policy.cooldownSeconds > 0 && nowMs < newest + policy.cooldownSeconds * 1000) {
    return { ok: false, reason: 'cooldown', retryAfterSeconds: secondsFrom(nowMs, newest + policy.cooldownSeconds * 1000) };
  }
  if (recent.length >= policy.perHour) {
    // Free again once enough of the window's sends have aged out to leave room for one more.
    const freeing = recent[recent.length - policy.perHour] ?? nowMs;
    return { ok: false, reason: 'budget', retryAfterSeconds: secondsFrom(nowMs, freeing + EMAIL_SEND_WINDOW_MS) };
  }
  return { ok: true };
}

/** The refusal message of a decision (the same from the API and from the flow). */
export function emailSendRefusalMessage(reason: 'cooldown' | 'budget'): string {
  return reason === 'cooldown'
    ? 'a code was sent to this address moments ago; wait before asking again'
    : 'too many codes were sent to this address; try again later';
}

function secondsFrom(nowMs: number, atMs: number): number {
  return Math.max(1, Math.ceil((atMs - nowMs) / 1000));
}
