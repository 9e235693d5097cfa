/**
 * `agentkeys configure aws`: writes (or updates) the AWS profile whose `credential_process` runs
 * `agentkeys mint aws --credential-process` for this agentkeys profile, in AWS_CONFIG_FILE or
 * ~/.aws/config. Shows the change; a second run changes nothing. `agentkeys configure gcp`:
 * writes the Google external-account credential file whose executable is `agentkeys mint gcp --executable`.
 * With `--wait` the configured command waits for a holder's approval when the grant asks for one.
 * Both replace their file whole (`replaceFile`); a file that is a symbolic link stays one, and the
 * file it points to gets the new text.
 */
import { existsSync, realpathSync, statSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { Command } from 'commander';
import { CliError, UsageError } from '../errors';
import { CliContext } from '../context';
import { externalAccountFile, GCP_EXECUTABLE_MAX_TIMEOUT_MS } from '../gcp';
import { replaceFile, writeTarget } from '../write-file';

/** How the AWS tools should start this CLI: `agentkeys` when that is on PATH and is this one, else node and the absolute script. */
export function agentkeysInvocation(env: NodeJS.ProcessEnv, script = process.argv[1] ?? ''): string {
  const self = existsSync(script) ? realpathSync(script) : script;
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, 'agentkeys');
    try {
      if (dir && statSync(candidate).isFile() && realpathSync(candidate) === self) return 'agentkeys';
    } catch {
      /* not here */
    }
  }
  const quote = (s: string) => (/[\s"'\\]/.test(s) ? `"${s.replace(/(["\\])/g, '\\$1')}"` : s);
  return `${quote(process.execPath)} ${quote(self)}`;
}

interface Change {
  text: string;
  previous: string | undefined;
  changed: boolean;
}

/**
 * The section a header line opens, as the AWS tools read it: `[ profile  a ]` is `[profile a]`,
 * and a comment after the bracket (`[profile a] ; mine`, `[profile a]# x`) is no part of it
 * (botocore's configparser matches the bracketed name and ignores the rest; the JavaScript SDK
 * strips `;` / `#` comments first). Undefined for a line that opens no section.
 */
function sectionOf(line: string): string | undefined {
  const m = /^\s*\[([^\]]*)\]\s*(?:[;#].*)?$/.exec(line);
  return m ? `[${(m[1] as string).replace(/\s+/g, ' ').trim()}]` : undefined;
}

/** The config text with `credential_process = line` in section `header` (added, replaced or left as it is). */
export function setCredentialProcess(text: string, header: string, value: string): Change {
  const lines = text.length ? text.replace(/\r?\n$/, '').split(/\r?\n/) : [];
  const wanted = `credential_process = ${value}`;
  // A second section of the same name would make botocore refuse the whole file.
  const start = lines.findIndex((l) => sectionOf(l) === header);
  if (start < 0) {
    const out = [...lines, ...(lines.length && lines[lines.length - 1]?.trim() !== '' ? [''] : []), header, wanted];
    return { text: `${out.join('\n')}\n`, previous: undefined, changed: true };
  }
  let end = lines.findIndex((l, i) => i > start && /^\s*\[/.test(l));
  if (end < 0) end = lines.length;
  const at = lines.findIndex((l, i) => i > start && i < end && /^\s*credential_process\s*=/.test(l));
  if (at >= 0) {
    const previous = (lines[at] as string).replace(/^\s*credential_process\s*=\s*/, '').trim();
    if (previous === value) return { text, previous, changed: false };
    lines[at] = wanted;
    return { text: `${lines.join('\n')}\n`, previous, changed: true };
  }
  lines.splice(start + 1, 0, wanted);
  return { text: `${lines.join('\n')}\n`, previous: undefined, changed: true };
}

/** This CLI with the profile the configured tool should mint through. */
const mintInvocation = (ctx: CliContext): string => `${agentkeysInvocation(ctx.env)}${ctx.profile === 'default' ? '' : ` --profile ${ctx.profile}`}`;

interface GcpOptions {
  audience: string;
  serviceAccount?: string;
  output?: string;
  tokenUrl?: string;
  iamCredentialsUrl?: string;
  wait?: boolean;
}

export function configureCommand(): Command {
  const configure = new Command('configure').description('set up other tools to use this profile');
  configure
    .command('aws')
    .description('write the AWS profile whose credential_process mints through this profile (AWS_CONFIG_FILE or ~/.aws/config)')
    .option('--aws-profile <name>', 'the AWS profile to write (default "agentkeys", or "agentkeys-<profile>" for another agentkeys profile)')
    .option('--wait', "the command waits for the holder's decision when the grant asks for approval (else the AWS tool fails at once)")
    .action(async (o: { awsProfile?: string; wait?: boolean }, cmd: Command) => {
      const ctx = await CliContext.open(cmd);
      const awsProfile = o.awsProfile ?? (ctx.profile === 'default' ? 'agentkeys' : `agentkeys-${ctx.profile}`);
      if (!/^[A-Za-z0-9_.@+-]{1,64}$/.test(awsProfile)) throw new UsageError(`--aws-profile "${awsProfile}": use letters, digits and _ . @ + -`);
      const path = ctx.env.AWS_CONFIG_FILE || join(homedir(), '.aws', 'config');
      const target = await writeTarget(path);
      const header = awsProfile === 'default' ? '[default]' : `[profile ${awsProfile}]`;
      const value = `${mintInvocation(ctx)} mint aws --credential-process${o.wait ? ' --wait' : ''}`;
      let text = '';
      let mode = 0o600;
      try {
        text = await readFile(target, 'utf8');
        mode = statSync(target).mode & 0o777;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
          throw new CliError(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
      const change = setCredentialProcess(text, header, value);
      if (change.changed) {
        await mkdir(dirname(target), { recursive: true, mode: 0o700 });
        await replaceFile(target, change.text, mode);
      }
      const shown = `credential_process = ${value}`;
      ctx.print({ aws_config: path, aws_profile: awsProfile, credential_process: value, changed: change.changed, previous: change.previous ?? null }, [
        change.changed ? `${path}: ${change.previous === undefined ? 'added to' : 'updated'} ${header}` : `${path}: ${header} already set; nothing changed`,
        ...(change.changed && change.previous !== undefined ? [`- credential_process = ${change.previous}`] : []),
        `${change.changed ? '+' : ' '} ${shown}`,
        `Try it: aws sts get-caller-identity --profile ${awsProfile}`,
      ]);
    });
  configure
    .command('gcp')
    .description('write a Google Cloud external-account credential file whose executable mints through this profile (docs/gcp.md)')
    .requiredOption('--audience <provider>', '//iam.googleapis.com/projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>')
    .option('--service-account <email>', 'impersonate this service account (service_account_impersonation_url)')
    .option('--output <file>', 'where to write it (default ~/.config/agentkeys/gcp-<profile>.json)')
    .option('--token-url <url>', "Google's STS token endpoint (default https://sts.googleapis.com/v1/token)")
    .option('--iam-credentials-url <url>', 'the IAM credentials API base (default https://iamcredentials.googleapis.com)')
    .option(
      '--wait',
      `the executable waits for the holder's decision when the grant asks for approval, up to the library's longest executable timeout (${GCP_EXECUTABLE_MAX_TIMEOUT_MS / 1000} s)`,
    )
    .action(async (o: GcpOptions, cmd: Command) => {
      const ctx = await CliContext.open(cmd);
      if (!o.audience.startsWith('//iam.googleapis.com/'))
        throw new UsageError(
          '--audience is a pool provider: //iam.googleapis.com/projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider>',
        );
      const path = o.output ?? join(homedir(), '.config', 'agentkeys', `gcp-${ctx.profile}.json`);
      // The library passes the audience and the service account to the executable in its environment.
      const command = `${mintInvocation(ctx)} mint gcp --executable${o.wait ? ' --wait' : ''}`;
      const file = externalAccountFile({
        audience: o.audience,
        command,
        serviceAccount: o.serviceAccount,
        tokenUrl: o.tokenUrl,
        iamCredentialsUrl: o.iamCredentialsUrl,
        ...(o.wait ? { timeoutMillis: GCP_EXECUTABLE_MAX_TIMEOUT_MS } : {}),
      });
      const target = await writeTarget(path);
      await mkdir(dirname(target), { recursive: true, mode: 0o700 });
      await replaceFile(target, `${JSON.stringify(file, null, 2)}\n`, 0o600);
      ctx.print({ credential_file: path, ...file }, [
        `${path}: external account for ${o.audience}${o.serviceAccount ? `, impersonating ${o.serviceAccount}` : ''}`,
        `  executable: ${command}`,
        `Use it: export GOOGLE_APPLICATION_CREDENTIALS=${path} GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES=1`,
        // The broker signs for any of its accounts: only the provider's condition keeps the others out.
        `The pool provider must admit only your account: --attribute-condition="assertion.agentkeys_user_wallet == '<the wallet a mint answers>'" (docs/gcp.md)`,
      ]);
    });
  return configure;
}
