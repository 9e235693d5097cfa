import { AgentKeysError } from '../lib/errors';

/** Exit codes of every command: 0 ok, 1 failure, 2 usage. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

/**
 * The broker's own answer to a refused request, as `--json` reports it beside the CLI's code: its
 * `error` (a kind of the broker's closed vocabulary, lib/errors.ts), the HTTP status (`http_status`)
 * and the body's kind-specific fields (`retry_after`, `attempts_left`, …). Scripts branch on `broker.error`, never
 * on the message text.
 */
export interface BrokerRefusal {
  error: string;
  http_status: number;
  [field: string]: unknown;
}

/** A failure to report in one line (no stack) with the exit code it maps to. */
export class CliError extends AgentKeysError {
  override readonly code: string = 'ERR_CLI';
  constructor(
    message: string,
    readonly exitCode: number = EXIT.failure,
    /** What `--json` adds to `{"error","message"}`: the broker's refusal behind this failure, when there is one. */
    readonly details: { broker?: BrokerRefusal } & Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/** The command line itself is wrong: usage goes to stderr, exit 2. */
export class UsageError extends CliError {
  override readonly code: string = 'ERR_CLI_USAGE';
  constructor(message: string) {
    super(message, EXIT.usage);
  }
}

/** The stored session is missing, expired or refused by the broker. */
export class NotLoggedInError extends CliError {
  override readonly code: string = 'ERR_CLI_NOT_LOGGED_IN';
}

/** The broker's refusal as `--json` shows it: kind and status first, then the body's own fields (its message is the error's). */
export function brokerRefusal(status: number, kind: string, body: Record<string, unknown>): BrokerRefusal {
  const { error: _error, message: _message, ...fields } = body;
  return { error: kind, http_status: status, ...fields };
}

/**
 * No answer from the broker: not reachable (refused, unknown host, TLS), no answer in time, or an
 * answer broken off. Nothing is known to have happened there; a script may try again later.
 */
export class BrokerUnreachableError extends CliError {
  override readonly code: string = 'ERR_CLI_BROKER_UNREACHABLE';
}

/** The broker answered with an error body. */
export class BrokerAnswerError extends CliError {
  override readonly code: string = 'ERR_CLI_BROKER_ANSWER';
  constructor(
    message: string,
    readonly status: number,
    readonly kind: string,
    readonly body: Record<string, unknown>,
  ) {
    super(message, EXIT.failure, { broker: brokerRefusal(status, kind, body) });
  }
}

/**
 * A mint that waits for the grant holder's approval, run without --wait: nothing minted yet. `--json`
 * names the request (`approval_id`, `expires_at`) so a script can tell the holder, or wait for it.
 */
export class ApprovalPendingError extends CliError {
  override readonly code: string = 'ERR_CLI_APPROVAL_PENDING';
  constructor(message: string, approvalId: string, expiresAt: number) {
    super(message, EXIT.failure, { approval_id: approvalId, expires_at: expiresAt });
  }
}

/**
 * A failure whose details were already printed (status): only the exit code and a line on stderr —
 * or, `silent`, not even that line (a program that reads stdout and stderr as one answer).
 */
export class ReportedFailure extends CliError {
  override readonly code: string = 'ERR_CLI_REPORTED';
  constructor(
    message: string,
    readonly silent = false,
  ) {
    super(message);
  }
}

/** The command that logs this profile in again: `agentkeys init` names the profile unless it is the default one. */
export function initCommandFor(profile: string | undefined): string {
  return profile === undefined || profile === 'default' ? 'agentkeys init' : `agentkeys init --profile ${profile}`;
}
