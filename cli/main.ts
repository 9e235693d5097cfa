/**
 * The `agentkeys` command: log in to the broker by any method, keep the bearer in a file or the OS
 * keychain, and mint credentials for agents. Exit codes: 0 ok, 1 failure, 2 usage.
 */
import { Command, CommanderError } from 'commander';
import { agentCommand } from './commands/agent';
import { approvalsCommand, decisionCommands } from './commands/approvals';
import { completionCommand } from './commands/completion';
import { configureCommand } from './commands/configure';
import { auditCommand, grantCommand } from './commands/grant';
import { initCommand } from './commands/init';
import { keygenCommand } from './commands/keygen';
import { mintCommand } from './commands/mint';
import { logoutCommand, statusCommand, tokenCommand, whoamiCommand } from './commands/session';
import { DEFAULT_BROKER_URL } from './context';
import { CliError, EXIT, ReportedFailure, UsageError } from './errors';
import { shown, shownJson, shownLines } from './terminal-text';
import { VERSION } from './version';

export function buildProgram(): Command {
  const program = new Command('agentkeys')
    .description('AgentKeys: log in to the broker and mint short-lived credentials for your agents')
    .version(VERSION, '-V, --version', 'print the version')
    .option('--broker-url <url>', `the broker (default AGENTKEYS_BROKER_URL, else the one the profile logged in to, else ${DEFAULT_BROKER_URL})`)
    .option('--profile <name>', 'which stored login to use (default AGENTKEYS_PROFILE or "default")')
    .option('--json', 'machine-readable output')
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText(
      'after',
      `
Examples:
  agentkeys keygen                                  # a new wallet key in ~/.agentkeys/agent.key
  agentkeys init wallet --private-key-file ~/.agentkeys/agent.key
  agentkeys init email you@example.com
  agentkeys configure aws                           # [profile agentkeys] in ~/.aws/config: credential_process = agentkeys mint aws --credential-process
  agentkeys grant add 0x1111111111111111111111111111111111111111 --services s3

Environment: AGENTKEYS_BROKER_URL, AGENTKEYS_PROFILE, AGENTKEYS_TOKEN (a bearer for CI, used instead of
the stored session), AGENTKEYS_SESSION_STORE=file|keychain, AGENTKEYS_KEYSTORE_PASSWORD, AGENTKEYS_TEE_URL.`,
    );
  for (const c of [
    keygenCommand(),
    initCommand(),
    whoamiCommand(),
    statusCommand(),
    tokenCommand(),
    logoutCommand(),
    mintCommand(),
    grantCommand(),
    agentCommand(),
    auditCommand(),
    approvalsCommand(),
    ...decisionCommands(),
    configureCommand(),
    completionCommand(),
  ])
    program.addCommand(c);
  // Every command: usage errors exit 2 instead of commander's own exit, so main() decides; a
  // command that only groups subcommands is a usage error without one.
  const strict = (c: Command, path: string): void => {
    c.exitOverride();
    c.configureOutput({ writeErr: (s) => process.stderr.write(s) });
    // addCommand does not pass the program's setting on: each command points at its own help.
    if (c !== program) c.showHelpAfterError(`(${path} --help for usage)`);
    const subs = c.commands;
    if (subs.length > 0 && c !== program && !(c as Command & { _actionHandler?: unknown })._actionHandler) {
      c.action(() => {
        throw new UsageError(`${path} needs a subcommand: ${subs.map((s) => s.name()).join(', ')} (${path} --help)`);
      });
    }
    for (const sub of subs) strict(sub, `${path} ${sub.name()}`);
  };
  strict(program, 'agentkeys');
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  if (argv.length <= 2) {
    process.stderr.write(program.helpInformation());
    return EXIT.usage;
  }
  const json = argv.includes('--json');
  try {
    await program.parseAsync(argv);
    return EXIT.ok;
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help, --version and `agentkeys help` end here with exit code 0. Everything else is a usage
      // error, whose text commander has already written to stderr: an unknown option, a missing
      // argument, global options without a command (commander's help with exit code 1).
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || (e.code === 'commander.help' && e.exitCode === 0)) return EXIT.ok;
      if (json) {
        const message = e.code === 'commander.help' ? 'name a command (agentkeys --help)' : e.message.replace(/^error: /, '');
        process.stdout.write(`${shownJson({ error: new UsageError(message).code, message })}\n`);
      }
      return EXIT.usage;
    }
    if (e instanceof ReportedFailure && e.silent) return e.exitCode;
    // The CLI's code, then (details) the broker's own refusal behind it, when there is one.
    if (json && !(e instanceof ReportedFailure))
      process.stdout.write(
        `${shownJson(e instanceof CliError ? { error: e.code, message: e.message, ...e.details } : { error: 'ERR_UNEXPECTED', message: `unexpected error: ${(e as Error).stack ?? String(e)}` })}\n`,
      );
    // One line for a CliError, whose message may carry the broker's text; an unexpected error keeps
    // its stack's lines. Either way no control character reaches the terminal as it is.
    process.stderr.write(`agentkeys: ${e instanceof CliError ? shown(e.message) : `unexpected error: ${shownLines((e as Error).stack ?? String(e))}`}\n`);
    return e instanceof CliError ? e.exitCode : EXIT.failure;
  }
}
