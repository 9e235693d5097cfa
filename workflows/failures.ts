import { ApplicationFailure } from '@temporalio/common';
import { ERRORS, type ErrorCode, type FailureTypeName } from '../lib/errors';

/**
 * ApplicationFailures built from the one error vocabulary (lib/errors.ts). From
 * @temporalio/common, not @temporalio/workflow, so activities build theirs here too.
 */

/** Failures an update handler raises to the API (never retried); `details[0]` carries extra body fields. */
export function flowFailure(type: FailureTypeName, message: string, details?: Record<string, unknown>): ApplicationFailure {
  return ApplicationFailure.create({ type, message, nonRetryable: true, details: details ? [details] : [] });
}

/** The same by code: `failureOf('expired', …)`. `retryable` is for activities whose failure may pass (a database, a mail service coming back). */
export function failureOf(code: ErrorCode, message: string, opts: { details?: Record<string, unknown>; retryable?: boolean } = {}): ApplicationFailure {
  return ApplicationFailure.create({
    type: ERRORS[code].failure,
    message,
    nonRetryable: !opts.retryable,
    details: opts.details ? [opts.details] : [],
  });
}

export const secondsUntil = (ms: number, now: number): number => Math.max(1, Math.ceil((ms - now) / 1000));
export const unixSeconds = (ms: number): number => Math.floor(ms / 1000);

/** The ApplicationFailure type somewhere in an error's cause chain (what an activity raised), if any. */
export function failureTypeOf(e: unknown): string | undefined {
  for (let c: unknown = e; c instanceof Error; c = c.cause) {
    if (c instanceof ApplicationFailure) return c.type ?? undefined;
  }
  return undefined;
}
