import { ApplicationFailure } from '@temporalio/workflow';
import { FailureType } from './definitions';

/** Failures an update handler raises to the API; `details[0]` carries extra body fields. */
export function flowFailure(type: (typeof FailureType)[keyof typeof FailureType], message: string, details?: Record<string, unknown>): ApplicationFailure {
  return ApplicationFailure.create({ type, message, nonRetryable: true, details: details ? [details] : [] });
}

export const secondsUntil = (ms: number, now: number): number => Math.max(1, Math.ceil((ms - now) / 1000));
export const unixSeconds = (ms: number): number => Math.floor(ms / 1000);
