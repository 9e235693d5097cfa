/**
 * The error kinds of the wire contract ({"error": kind, "message": text}) and their HTTP status.
 * Throw a BrokerError anywhere in the API; the errors plugin renders it.
 */
export const ERROR_STATUS = {
  bad_request: 400,
  unauthorized: 401,
  invalid_code: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  expired: 410,
  payload_too_large: 413,
  too_many_attempts: 429,
  rate_limited: 429,
  internal: 500,
  audit_error: 500,
  sts_error: 502,
  unavailable: 503,
} as const;

export type ErrorKind = keyof typeof ERROR_STATUS;

/**
 * The base of every error the broker defines. `code` is a stable machine-readable code (as jose's
 * errors carry): callers branch on `instanceof` or `code`, never on the message text.
 */
export class AgentKeysError extends Error {
  readonly code: string = 'ERR_AGENTKEYS';
  constructor(message?: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** An error the API renders as {"error": kind, "message"}; its code is `ERR_<KIND>`. */
export class BrokerError extends AgentKeysError {
  override readonly code: string;
  readonly status: number;
  constructor(
    readonly kind: ErrorKind,
    message: string,
    /** Extra body fields (e.g. attempts_left) and response headers (e.g. Retry-After). */
    readonly extra: { body?: Record<string, unknown>; headers?: Record<string, string> } = {},
  ) {
    super(message);
    this.code = `ERR_${kind.toUpperCase()}`;
    this.status = ERROR_STATUS[kind];
  }
}

/** An error a caller should retry after a while: `retry_after` in the body, Retry-After in the headers (whole seconds, at least 1). */
function retryLater(kind: ErrorKind, message: string, retryAfterSeconds: number): BrokerError {
  const s = Math.max(1, Math.ceil(retryAfterSeconds));
  return new BrokerError(kind, message, {
    body: { retry_after: s },
    headers: { 'retry-after': String(s) },
  });
}

export function rateLimited(message: string, retryAfterSeconds: number): BrokerError {
  return retryLater('rate_limited', message, retryAfterSeconds);
}

/** 503: a dependency (database, Temporal) did not answer in time; nothing was done that the caller must know of. */
export function unavailable(message: string, retryAfterSeconds = 1): BrokerError {
  return retryLater('unavailable', message, retryAfterSeconds);
}
