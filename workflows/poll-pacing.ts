/**
 * Pacing of a poll-mode request (RFC 8628 §3.5, OpenID CIBA §7.3): a client that polls faster
 * than its interval hears slow_down, and its interval grows by 5 seconds for this and every later
 * poll. Workflow state only (no commands), so flows that already ran replay unchanged.
 */

/** RFC 8628 §3.5: slow_down adds 5 seconds to the interval, for this and every later poll. */
export const SLOW_DOWN_STEP_SECONDS = 5;
/**
 * Slack on "faster than the interval": the poll's time here is when the workflow task ran, which
 * lags the request by the queue's delay, so a client that waits exactly `interval` can land a
 * little early.
 */
const POLL_SLACK_MS = 1000;
/** …but never more than a fifth of the interval, so a short interval still tells a too-fast client. */
const pollSlackMs = (intervalSeconds: number): number => Math.min(POLL_SLACK_MS, intervalSeconds * 200);

export interface PollPacer {
  /** Seconds the client waits between polls now. */
  readonly interval: number;
  /** Counts a poll at `nowMs`: true when it came too soon (the interval has then grown). */
  tooSoon(nowMs: number): boolean;
}

export function pollPacer(initialIntervalSeconds: number): PollPacer {
  let interval = initialIntervalSeconds;
  let lastPollMs: number | undefined;
  return {
    get interval() {
      return interval;
    },
    tooSoon(nowMs: number): boolean {
      const early = lastPollMs !== undefined && nowMs - lastPollMs < interval * 1000 - pollSlackMs(interval);
      lastPollMs = nowMs;
      if (early) interval += SLOW_DOWN_STEP_SECONDS;
      return early;
    },
  };
}
