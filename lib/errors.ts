/**
 * The broker's one error vocabulary: a closed set of codes (ERRORS), from which everything else is
 * derived — the HTTP answer (status and body `error`, docs/contracts.md "Errors"), the
 * ApplicationFailure type a workflow or activity raises for it (FailureType), the way the API reads
 * such a failure back (errorCodeOfFailure) and the TEE callbacks' envelope code (callbackCode).
 * Adding a failure is one entry here; no other module keeps a table of them.
 *
 * Pure and deterministic: imported by workflows (their bundle), activities, the API and the CLI.
 */

/**
 * Every code. `status` and `error` are the HTTP answer (`error` defaults to the code itself:
 * several codes answer one wire kind, e.g. a replayed proof is a 409 `conflict`); `failure` is the
 * ApplicationFailure type (recorded in workflow histories: never rename one that shipped).
 * `internal: true` marks a failure activities raise for their workflow only: the workflow turns it
 * into an answerable code, and one that reaches the API anyway is a plain 500 (its message is not
 * shown).
 */
export const ERRORS = {
  bad_request: { status: 400, failure: 'BadRequest' },
  unauthorized: { status: 401, failure: 'Unauthorized' },
  /** A wrong email login code; the body carries `attempts_left`. */
  invalid_code: { status: 401, failure: 'InvalidCode' },
  forbidden: { status: 403, failure: 'Forbidden' },
  not_found: { status: 404, failure: 'NotFound' },
  /** The request contradicts what is recorded (an Idempotency-Key reused for another request, a cap reached, a state already left). */
  conflict: { status: 409, failure: 'Conflict' },
  /** A one-time proof (wallet signature, nonce) was already consumed. */
  replayed: { status: 409, error: 'conflict', failure: 'Replayed' },
  expired: { status: 410, failure: 'Expired' },
  payload_too_large: { status: 413, failure: 'PayloadTooLarge' },
  /** Too many wrong codes: the login is locked. */
  too_many_attempts: { status: 429, failure: 'TooManyAttempts' },
  /** A budget is spent for now; `retry_after` in the body, Retry-After in the headers. */
  rate_limited: { status: 429, failure: 'RateLimited' },
  internal: { status: 500, failure: 'Internal' },
  /** The audit row could not be written, so nothing was done (fail closed). */
  audit_error: { status: 500, failure: 'AuditFailed' },
  /** The cloud's token service refused or kept failing. */
  sts_error: { status: 502, failure: 'StsFailed' },
  /** A dependency (database, Temporal) did not answer in time; `retry_after` as for rate_limited. */
  unavailable: { status: 503, failure: 'Unavailable' },
  /** The mail service refused the login code or kept failing. */
  delivery_failed: { status: 503, error: 'unavailable', failure: 'DeliveryFailed' },
  /** The EVM RPC needed for a contract-wallet signature did not answer. */
  chain_unavailable: { status: 503, error: 'unavailable', failure: 'ChainUnavailable' },
  /** An identity provider (Google) kept failing or did not answer in time. */
  provider_unavailable: { status: 503, error: 'unavailable', failure: 'ProviderUnavailable' },

  // Raised by activities for their workflow only (retried, then turned into one of the above).
  /** A transient mail-service failure (the send is retried). */
  mail_transient: { status: 500, failure: 'MailTransient', internal: true },
  /** The OIDC signing key is not usable. */
  mint_signing_failed: { status: 500, failure: 'MintSigningFailed', internal: true },
  /** The caller's account or grants could not be read. */
  mint_authorise_failed: { status: 500, failure: 'MintAuthoriseFailed', internal: true },
  /** A Google call failed; details[0].reason says how (the workflow picks the answer). */
  google_provider_failed: { status: 500, failure: 'GoogleProviderFailed', internal: true },
} as const satisfies Record<string, { status: number; error?: string; failure: string; internal?: true }>;

export type ErrorCode = keyof typeof ERRORS;

type Spec = (typeof ERRORS)[ErrorCode];
/** The body `error` of a code: its `error` when it names one, else the code itself. */
type WireOf<C extends ErrorCode> = (typeof ERRORS)[C] extends { error: infer W extends string } ? W : C;
type Answerable = { [C in ErrorCode]: (typeof ERRORS)[C] extends { internal: true } ? never : C }[ErrorCode];

/** The `error` values of the HTTP contract ({"error": kind, "message"}). */
export type ErrorKind = WireOf<Answerable>;

const spec = (code: ErrorCode): Spec => ERRORS[code];

/** The HTTP answer of a code: its status and body `error`. */
export function httpAnswerOf(code: ErrorCode): { status: number; error: ErrorKind | 'internal' } {
  const s = spec(code);
  if ('internal' in s) return { status: 500, error: 'internal' };
  return { status: s.status, error: ('error' in s ? s.error : code) as ErrorKind };
}

/** Status of each wire kind, as the contract lists them. */
export const ERROR_STATUS = Object.fromEntries(
  (Object.keys(ERRORS) as ErrorCode[]).filter((c) => !('internal' in spec(c))).map((c) => [httpAnswerOf(c).error, httpAnswerOf(c).status]),
) as Record<ErrorKind, number>;

/** The TEE callbacks' envelope code of a failure (docs/contracts.md §3): the HTTP status × 100. */
export const callbackCode = (status: number): number => status * 100;

const camel = (code: string): string => code.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase());
type Camel<S extends string> = S extends `${infer H}_${infer T}` ? `${H}${Capitalize<Camel<T>>}` : S;

/**
 * ApplicationFailure types by camelCase code (`FailureType.rateLimited === 'RateLimited'`): what
 * workflows and activities raise. workflows/failures.ts builds the failures.
 */
export const FailureType = {
  ...(Object.fromEntries((Object.keys(ERRORS) as ErrorCode[]).map((c) => [camel(c), spec(c).failure])) as {
    readonly [C in ErrorCode as Camel<C>]: (typeof ERRORS)[C]['failure'];
  }),
} as const;
export type FailureTypeName = Spec['failure'];

const CODE_BY_FAILURE = new Map<string, ErrorCode>((Object.keys(ERRORS) as ErrorCode[]).map((c) => [spec(c).failure, c]));

/** The code of an ApplicationFailure type the API may answer with; undefined for an unknown or internal one. */
export function errorCodeOfFailure(type: string | undefined | null): ErrorCode | undefined {
  const code = type ? CODE_BY_FAILURE.get(type) : undefined;
  return code && !('internal' in spec(code)) ? code : undefined;
}

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

/**
 * An error the API renders as {"error": kind, "message", ...extra.body}. Built from any code of
 * ERRORS; `kind` is its wire kind, `errorCode` the code itself, `code` is `ERR_<KIND>`.
 */
export class BrokerError extends AgentKeysError {
  override readonly code: string;
  readonly status: number;
  readonly kind: ErrorKind | 'internal';
  readonly errorCode: ErrorCode;
  constructor(
    code: ErrorCode,
    message: string,
    /** Extra body fields (e.g. attempts_left) and response headers (e.g. Retry-After). */
    readonly extra: { body?: Record<string, unknown>; headers?: Record<string, string> } = {},
  ) {
    super(message);
    const answer = httpAnswerOf(code);
    this.errorCode = code;
    this.kind = answer.error;
    this.status = answer.status;
    this.code = `ERR_${answer.error.toUpperCase()}`;
  }
}

/** An error a caller should retry after a while: `retry_after` in the body, Retry-After in the headers (whole seconds, at least 1). */
function retryLater(code: ErrorCode, message: string, retryAfterSeconds: number): BrokerError {
  const s = Math.max(1, Math.ceil(retryAfterSeconds));
  return new BrokerError(code, message, {
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
