/**
 * Pacing of a poll-mode request (RFC 8628 §3.5, OpenID CIBA §7.3): a client that polls faster
 * than its interval hears slow_down, and its interval grows by 5 seconds for this and every later
 * poll; past a budget of polls per run, a poll that would hand nothing out is refused unrecorded.
 * Workflow state and validators only (no commands), so flows that already ran replay unchanged.
 */
import { FailureType } from '../lib/errors';
import { flowFailure } from './failures';

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

/**
 * Polls one run records while it waits for the other party. Temporal records every Update a
 * validator accepts and takes at most 2,000 per run (`history.maxTotalUpdates`, temporalio/temporal
 * v1.29.1 `common/dynamicconfig/constants.go`), refusing every later one; a polled window at its
 * longest (an hour's approval polled every second) passes that, and the other party's answer — the
 * holder's decision, the person's approval, the provider's callback: an Update of the same run —
 * would then be refused. A poll a validator refuses is not recorded
 * (`service/history/workflow/update/registry.go`), so past this many polls the validator refuses
 * a poll made while the run still waits for that answer (a poll then has nothing to hand out):
 * 429 rate_limited, poll again after the interval. Once the other party has answered, polls are
 * taken again: the one that hands out, and those that hear how the request ended.
 */
export const MAX_POLLS_PER_RUN = 1500;

export interface PollBudget {
  /** Counts a poll the run accepted: in its Update handler, before the first await. */
  count(): void;
  /** In the poll's validator: refuses a poll past the budget while the run waits for the other party. */
  check(waiting: boolean, intervalSeconds: number): void;
}

/** The budget of one run; `max` lowered only by the workflow tests, through the flow's input. */
export function pollBudget(max: number = MAX_POLLS_PER_RUN): PollBudget {
  let accepted = 0;
  return {
    count() {
      accepted += 1;
    },
    check(waiting: boolean, intervalSeconds: number) {
      if (!waiting || accepted < max) return;
      throw flowFailure(
        FailureType.rateLimited,
        `this request has answered ${accepted} polls while it waits, all it answers before the other party does: poll again in ${intervalSeconds} s`,
        { retry_after: intervalSeconds },
      );
    },
  };
}
