import { WorkflowFailedError, WorkflowNotFoundError, WorkflowUpdateFailedError, isGrpcServiceError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { BrokerError, errorCodeOfFailure, unavailable } from '../lib/errors';

function fromApplicationFailure(f: ApplicationFailure): BrokerError | undefined {
  const code = errorCodeOfFailure(f.type);
  if (!code) return undefined;
  const details = (f.details?.[0] ?? {}) as Record<string, unknown>;
  const retryAfter = typeof details.retry_after === 'number' ? details.retry_after : undefined;
  return new BrokerError(code, f.message, {
    body: details,
    headers: retryAfter !== undefined ? { 'retry-after': String(retryAfter) } : undefined,
  });
}

/**
 * Maps what the Temporal client throws while driving a flow to the wire error: a flow's own
 * ApplicationFailure answers as its code (lib/errors.ts) with its details; a finished or unknown flow is `expired`; an
 * unreachable Temporal is `unavailable`. Anything else is rethrown (a 500).
 */
export function toBrokerError(e: unknown, notFound: BrokerError = new BrokerError('expired', 'this request has expired or is unknown')): unknown {
  if (e instanceof BrokerError) return e;
  if (e instanceof WorkflowUpdateFailedError || e instanceof WorkflowFailedError) {
    let cause: unknown = e.cause;
    while (cause && !(cause instanceof ApplicationFailure) && cause instanceof Error) cause = cause.cause;
    if (cause instanceof ApplicationFailure) return fromApplicationFailure(cause) ?? e;
    return e;
  }
  if (e instanceof WorkflowNotFoundError) return notFound;
  if (isGrpcServiceError(e)) {
    // 5 NOT_FOUND: the flow finished; 4 DEADLINE_EXCEEDED / 14 UNAVAILABLE: Temporal or the workers are not answering.
    const code: number = e.code;
    if (code === 5) return notFound;
    if (code === 4 || code === 14) return unavailable('the broker could not reach its workflow service in time; retry shortly');
  }
  return e;
}

/**
 * Awaits a Temporal client call, translating its failures (see toBrokerError). No deadline: the
 * routes' `app.driveFlow` (api/plugins/flow-deadline.ts) adds one around this.
 */
export async function translateFlowFailures<T>(call: () => Promise<T>, notFound?: BrokerError): Promise<T> {
  try {
    return await call();
  } catch (e) {
    throw toBrokerError(e, notFound);
  }
}

/**
 * Temporal rejects an Update its worker never processed (it arrived while the run's workflow task
 * was busy with concurrent Updates and a local activity: "wasn't processed by worker"). Nothing ran,
 * so sending it again is safe; each flow's handlers decide on the run's state, not on the attempt.
 */
export async function unprocessedRetried<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (e) {
      const unprocessed = e instanceof WorkflowUpdateFailedError && /wasn't processed by worker/.test(String(e.cause?.message ?? e.message));
      if (!unprocessed || attempt >= 5) throw e;
    }
  }
}
