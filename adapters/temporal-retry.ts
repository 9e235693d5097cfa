/**
 * Retries of the API's Temporal calls that fail as unavailable (gRPC UNAVAILABLE: a Temporal node
 * gone, a connection reset, a frontend whose history shard is moving to another node), inside the
 * deadline of the request that made them, so losing one Temporal node costs the caller latency,
 * not a 503.
 *
 * The retry is at the gRPC level and re-sends the very request message the first attempt sent
 * (the Temporal SDK's own retry interceptor, `makeGrpcRetryInterceptor`, does the re-send). That is
 * what makes a retry the same call on the server when the first attempt got through and only its
 * answer was lost:
 * - StartWorkflowExecution: the SDK sets `request_id` once per start; the server answers a start
 *   whose request id created the current run with that run, whatever the id conflict policy (the
 *   mints, the Google login start);
 * - ExecuteMultiOperation (Update-with-Start): the start's `request_id` as above plus the Update's
 *   `meta.update_id`, also set once per call (or by the route: the email code's id comes from its
 *   Idempotency-Key); the server answers a repeated Update id with that Update's outcome instead
 *   of running it again;
 * - UpdateWorkflowExecution: `meta.update_id`, the same;
 * - Signal, SignalWithStart, RequestCancel: their `request_id` (the server drops a repeated one);
 * - reads (history long-polls of a result, polls of an Update's outcome, describe, query, system
 *   info, search attributes): no effect to double.
 * Any other method is not retried inside a request's scope (Terminate, Reset, schedules, task
 * queue and namespace changes carry no id that makes a repeat the same call). A retry never calls
 * the route's code again: that would mint a new request id and Update id, so a repeat could start
 * a second run or run an Update twice.
 *
 * Calls made outside a request's scope (start-up checks, readiness probes) keep the SDK's default
 * retries. Inside a scope (`temporalRetryScope`, entered by the flow deadline in
 * api/dependencies.ts) the retries back off with jitter (100 ms doubling to at most 1 s, each delay
 * 50–100 % of that), stop when the next try could not finish before the request's deadline or the
 * request was given up, and note when the last failure was UNAVAILABLE: the flow deadline then does
 * not cut the call because its own probe of Temporal fails (the same outage), while a Temporal that
 * hangs (no failure, no answer) is still cut after one probe, as before.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import {
  defaultGrpcRetryOptions,
  isGrpcServiceError,
  isRetryableError,
  makeGrpcRetryInterceptor,
  WorkflowUpdateFailedError,
  type ConnectionOptions,
} from '@temporalio/client';
import { BrokerError } from '../lib/errors';

type Interceptor = NonNullable<ConnectionOptions['interceptors']>[number];
type Status = Parameters<ReturnType<typeof defaultGrpcRetryOptions>['retryableDecider']>[1];

/** gRPC status UNAVAILABLE. */
export const GRPC_UNAVAILABLE = 14;
export const RETRY_INITIAL_MS = 100;
export const RETRY_MAX_DELAY_MS = 1000;
/** A try started later than this before the deadline could not be answered in time. */
export const RETRY_LAST_TRY_MS = 250;
/** How long after an UNAVAILABLE failure the call counts as retrying through an outage. */
export const RETRYING_WINDOW_MS = 2000;

/** The WorkflowService methods whose re-sent request is the same call on the server (see above). */
export const SAFE_TO_RESEND = new Set([
  'StartWorkflowExecution',
  'ExecuteMultiOperation',
  'UpdateWorkflowExecution',
  'PollWorkflowExecutionUpdate',
  'SignalWorkflowExecution',
  'SignalWithStartWorkflowExecution',
  'RequestCancelWorkflowExecution',
  'GetWorkflowExecutionHistory',
  'GetWorkflowExecutionHistoryReverse',
  'DescribeWorkflowExecution',
  'QueryWorkflow',
  'GetSystemInfo',
  'DescribeNamespace',
  'ListWorkflowExecutions',
  'CountWorkflowExecutions',
  'GetSearchAttributes',
  'ListSearchAttributes',
]);

/** `/temporal.api.workflowservice.v1.WorkflowService/StartWorkflowExecution` → `StartWorkflowExecution`. */
export function methodName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/** The delay before retry number `attempt` (1 = the first retry): exponential, capped, 50–100 % of it. */
export function retryDelayMs(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(RETRY_MAX_DELAY_MS, RETRY_INITIAL_MS * 2 ** (attempt - 1));
  return Math.round(ceiling * (0.5 + random() * 0.5));
}

export class TemporalRetryScope {
  tries = 0;
  unavailableTries = 0;
  firstUnavailableAt: number | undefined;
  lastUnavailableAt: number | undefined;

  constructor(
    readonly deadlineAt: number,
    readonly signal?: AbortSignal,
    readonly now: () => number = Date.now,
  ) {}

  /** Runs `call` with every Temporal gRPC request it makes under this scope's retry rule. */
  run<T>(call: () => Promise<T>): Promise<T> {
    return storage.run(this, async () => {
      try {
        return await call();
      } catch (e) {
        throw this.gaveUp(e) ?? e;
      }
    });
  }

  /** Whether a dependency the flow deadline found down is the outage this call is retrying through. */
  covers(down: string): boolean {
    return down.startsWith('temporal') && this.lastUnavailableAt !== undefined && this.now() - this.lastUnavailableAt < RETRYING_WINDOW_MS;
  }

  /** The delay before the next try, or undefined when the failed try is the last. */
  nextDelay(method: string, attempt: number, status: Status): number | undefined {
    this.tries = attempt;
    if (Number(status.code) === GRPC_UNAVAILABLE) {
      this.unavailableTries += 1;
      this.firstUnavailableAt ??= this.now();
      this.lastUnavailableAt = this.now();
    }
    if (this.signal?.aborted || !SAFE_TO_RESEND.has(method) || !isRetryableError(status)) return undefined;
    const delay = retryDelayMs(attempt);
    return this.now() + delay < this.deadlineAt - RETRY_LAST_TRY_MS ? delay : undefined;
  }

  /** A still-unavailable Temporal at the end of the retries: the caller's 503, saying so. */
  private gaveUp(e: unknown): BrokerError | undefined {
    const cause = e instanceof Error && !isGrpcServiceError(e) ? e.cause : e;
    if (!isGrpcServiceError(cause) || Number(cause.code) !== GRPC_UNAVAILABLE || this.firstUnavailableAt === undefined) return undefined;
    const seconds = ((this.now() - this.firstUnavailableAt) / 1000).toFixed(1);
    return new BrokerError(
      'unavailable',
      `the broker's workflow service stayed unreachable for ${seconds} s (${this.tries} tries, until this request's deadline); retry shortly`,
    );
  }
}

const storage = new AsyncLocalStorage<TemporalRetryScope>();

/** Sends of an Update the worker never processed, in all, before its rejection is the answer. */
export const UNPROCESSED_UPDATE_SENDS = 5;

/**
 * Temporal rejects an Update its worker never processed: it arrived while the run's workflow task
 * was busy with concurrent Updates and a local activity ("wasn't processed by worker"). No handler
 * ran, so the call (the route's, with its own Update id) is made again, a few times at most; every
 * handler decides on the run's state, not on the attempt, so a later send that is processed gets
 * the answer the first would have had.
 */
export async function resendUnprocessedUpdate<T>(call: () => Promise<T>): Promise<T> {
  for (let send = 1; ; send++) {
    try {
      return await call();
    } catch (e) {
      const unprocessed = e instanceof WorkflowUpdateFailedError && /wasn't processed by worker/.test(String(e.cause?.message ?? e.message));
      if (!unprocessed || send >= UNPROCESSED_UPDATE_SENDS) throw e;
    }
  }
}

/** A scope for one request's Temporal calls: retries end before `deadlineAt` or when `signal` aborts. */
export function temporalRetryScope(deadlineAt: number, signal?: AbortSignal): TemporalRetryScope {
  return new TemporalRetryScope(deadlineAt, signal);
}

const sdkDefault = makeGrpcRetryInterceptor(defaultGrpcRetryOptions());

type NextCall = Parameters<Interceptor>[1];
type Call = ReturnType<NextCall>;

/**
 * A re-send whose timer fires after the connection was closed (the process is shutting down)
 * would throw "Channel has been shut down" from that timer, an uncaught exception. Such a re-send
 * is dropped instead: the call is never started and reports nothing, as the connection it was
 * made on is gone.
 */
export function reSendUnlessClosed(next: NextCall): NextCall {
  let sent = false;
  return (options) => {
    // The first send throws to its caller as before; only a later re-send is guarded.
    if (!sent) {
      const call = next(options);
      sent = true;
      return call;
    }
    try {
      return next(options);
    } catch (e) {
      if (!/shut down|closed/i.test((e as Error).message)) throw e;
      const dropped = {
        start: () => undefined,
        sendMessage: () => undefined,
        sendMessageWithContext: () => undefined,
        startRead: () => undefined,
        halfClose: () => undefined,
        cancelWithStatus: () => undefined,
        getPeer: () => '',
        setCredentials: () => undefined,
      };
      return dropped as unknown as Call;
    }
  };
}

/**
 * The client connection's retry interceptor: the SDK's re-send, deciding per call. A call made in
 * a scope follows the scope's rule; any other the SDK default (up to 10 tries).
 */
export const temporalRetryInterceptor: Interceptor = (options, next) => {
  const nextCall = reSendUnlessClosed(next);
  const scope = storage.getStore();
  if (!scope) return sdkDefault(options, nextCall);
  const method = methodName(options.method_definition.path);
  let delay: number | undefined;
  return makeGrpcRetryInterceptor({
    retryableDecider: (attempt, status) => (delay = scope.nextDelay(method, attempt, status)) !== undefined,
    delayFunction: () => delay ?? 0,
  })(options, nextCall);
};

/**
 * What the API's Temporal connection adds: the interceptor above, and reconnects at most 1 s apart
 * (gRPC's default backoff grows to 2 min), so a node that is back is used within the deadline.
 */
export function temporalRetryConnectionOptions(): Pick<ConnectionOptions, 'interceptors' | 'channelArgs'> {
  return {
    interceptors: [temporalRetryInterceptor],
    channelArgs: { 'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': RETRY_MAX_DELAY_MS },
  };
}
