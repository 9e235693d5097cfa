/**
 * What the API must answer while a dependency hangs (issue 14), as the fault test checks it: every
 * call answered within 2 s — 503 `unavailable` with Retry-After for a call that needs the part,
 * the normal answer for one that does not — and the ops /readyz 503 naming the part.
 */

/** The promised answer time while a dependency hangs. */
export const HANG_ANSWER_WITHIN_MS = 2000;

export type HungPart = 'database' | 'temporal';

/** One call made while the part hung, as the client saw it. */
export interface HangAnswer {
  call: string;
  /** HTTP status; 0 when no answer came (the client's own timeout or a network error). */
  status: number;
  ms: number;
  /** The body's `error` kind, if any. */
  error?: string;
  retryAfter?: string;
  /** /readyz: the parts it reported down. */
  partsDown?: string[];
  /** A network error or the client's timeout. */
  failure?: string;
}

/** The calls the fault test makes while a part hangs, and the status each must get. */
export const HANG_CALLS = {
  me: 'GET /v1/session/me',
  emailCode: 'POST /v1/session/email_code',
  mint: 'POST /v1/mint-oidc-jwt',
  readyz: 'GET /readyz (ops, token)',
} as const;

/** The status each call must get while `part` hangs: /me needs the database but not Temporal. */
export function expectedStatus(part: HungPart, call: string): number {
  return call === HANG_CALLS.me && part === 'temporal' ? 200 : 503;
}

/** One line per call: what it got, and whether that meets the rule. */
export function describeHangAnswer(a: HangAnswer): string {
  const got = a.status === 0 ? (a.failure ?? 'no answer') : `${a.status}${a.error ? ` ${a.error}` : ''}`;
  const parts = a.partsDown ? ` (not ready: ${a.partsDown.join(', ') || 'none'})` : '';
  return `${a.call} -> ${got}${parts} in ${(a.ms / 1000).toFixed(2)} s`;
}

/** What is wrong with the answers while `part` hung; empty when every call met the rule. */
export function hangProblems(part: HungPart, answers: HangAnswer[]): string[] {
  const problems: string[] = [];
  for (const call of Object.values(HANG_CALLS)) {
    const a = answers.find((x) => x.call === call);
    if (!a) {
      problems.push(`${call}: not called`);
      continue;
    }
    const want = expectedStatus(part, call);
    if (a.status !== want) problems.push(`${call}: ${a.status === 0 ? (a.failure ?? 'no answer') : a.status}, expected ${want}`);
    if (a.ms >= HANG_ANSWER_WITHIN_MS) problems.push(`${call}: answered after ${(a.ms / 1000).toFixed(2)} s, not within ${HANG_ANSWER_WITHIN_MS / 1000} s`);
    if (want !== 503 || a.status !== 503) continue;
    if (call === HANG_CALLS.readyz) {
      if (!a.partsDown?.includes(part)) problems.push(`${call}: does not name ${part} (down: ${a.partsDown?.join(', ') || 'none'})`);
    } else {
      if (a.error !== 'unavailable') problems.push(`${call}: error ${a.error ?? 'none'}, expected unavailable`);
      if (!(Number(a.retryAfter) >= 1)) problems.push(`${call}: no Retry-After`);
    }
  }
  return problems;
}
