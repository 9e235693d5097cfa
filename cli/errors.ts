import { AgentKeysError } from '../lib/errors';

/** Exit codes of every command: 0 ok, 1 failure, 2 usage. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

/** A failure to report in one line (no stack) with the exit code it maps to. */
export class CliError extends AgentKeysError {
  override readonly code: string = 'ERR_CLI';
  constructor(
    message: string,
    readonly exitCode: number = EXIT.failure,
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

/** The broker answered with an error body. */
export class BrokerAnswerError extends CliError {
  override readonly code: string = 'ERR_CLI_BROKER_ANSWER';
  constructor(
    message: string,
    readonly status: number,
    readonly kind: string,
    readonly body: Record<string, unknown>,
  ) {
    super(message);
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
