/**
 * The `agentkeys` command: log in to the broker by any method, keep the bearer in the OS keychain
 * (or a 0600 file), and mint credentials for agents. Exit codes: 0 ok, 1 failure, 2 usage.
 */
import { Command, CommanderError } from 'commander';
import { auditCommand, grantCommand } from './commands/grant';
import { initCommand } from './commands/init';
import { mintCommand } from './commands/mint';
import { logoutCommand, statusCommand, whoamiCommand } from './commands/session';
import { DEFAULT_BROKER_URL } from './context';
import { CliError, EXIT } from './errors';

export function buildProgram(): Command {
  const program = new Command('agentkeys')
    .description('AgentKeys: log in to the broker and mint short-lived credentials for your agents')
    .option('--broker-url <url>', `the broker (default AGENTKEYS_BROKER_URL or ${DEFAULT_BROKER_URL})`)
    .option('--profile <name>', 'which stored login to use (default AGENTKEYS_PROFILE or "default")')
    .option('--json', 'machine-readable output')
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText(
      'after',
      `
Examples:
  agentkeys init wallet --private-key-file ~/.agentkeys/agent.key
  agentkeys init email you@example.com
  agentkeys mint aws --credential-process      # in ~/.aws/config: credential_process = agentkeys mint aws --credential-process
  agentkeys grant add 0x1111111111111111111111111111111111111111 --services s3`,
    );
  for (const c of [initCommand(), whoamiCommand(), logoutCommand(), statusCommand(), mintCommand(), grantCommand(), auditCommand()]) program.addCommand(c);
  // Every command: usage errors exit 2 instead of commander's own exit, so main() decides.
  const strict = (c: Command): void => {
    c.exitOverride();
    c.configureOutput({ writeErr: (s) => process.stderr.write(s) });
    for (const sub of c.commands) strict(sub);
  };
  strict(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return EXIT.ok;
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version end here with exit code 0; everything else is a usage error.
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.help' || e.code === 'commander.version') return EXIT.ok;
      return EXIT.usage;
    }
    const json = argv.includes('--json');
    const message = e instanceof CliError ? e.message : `unexpected error: ${(e as Error).stack ?? String(e)}`;
    if (json) process.stdout.write(`${JSON.stringify({ error: e instanceof CliError ? e.code : 'ERR_UNEXPECTED', message })}\n`);
    process.stderr.write(`agentkeys: ${message}\n`);
    return e instanceof CliError ? e.exitCode : EXIT.failure;
  }
}

if (require.main === module) {
  void main(process.argv).then((code) => process.exit(code));
}
