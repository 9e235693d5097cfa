/** `agentkeys mint aws`, `agentkeys mint oidc` and `agentkeys mint gcp`. */
import { Command, Option } from 'commander';
import type { AwsCredsBody, GcpTokenBody, OidcJwtBody } from '../../lib/wire';
import { ReportedFailure, UsageError } from '../errors';
import { AUDIENCE_ENV, executableFailure, executableSuccess, IMPERSONATED_EMAIL_ENV } from '../gcp';
import { CliContext } from '../context';
import { mintOrWait } from './approvals';
import { saveAwsCache } from '../renew';
import {
  cacheableExpiry,
  cacheKey,
  cachedCredentials,
  checkedAwsCredentials,
  credentialProcessLine,
  mintBody,
  shellQuoted,
  type MintOptions,
} from '../credential-cache';

interface MintAwsOptions extends MintOptions {
  env?: boolean;
  credentialProcess?: boolean;
  wait?: boolean;
}

async function mintAws(ctx: CliContext, o: MintAwsOptions): Promise<void> {
  if ([o.env, o.credentialProcess, ctx.json].filter(Boolean).length > 1) throw new UsageError('choose one of --env, --json and --credential-process');
  const body = mintBody(o);
  const session = await ctx.session();
  const stored = 'fromEnv' in session ? undefined : session;
  // A --broker-url / AGENTKEYS_BROKER_URL naming another broker is refused before the cache answers
  // that broker's question with this session's broker's credentials.
  if (stored) ctx.sessionBrokerUrl(stored);
  const cached = o.credentialProcess && stored ? cachedCredentials(stored, body, Math.floor(Date.now() / 1000)) : undefined;
  if (cached) {
    process.stdout.write(credentialProcessLine(cached));
    return;
  }
  const broker = await ctx.authedBroker();
  const spin = o.credentialProcess ? undefined : await ctx.spinner('Minting AWS credentials');
  let creds: AwsCredsBody;
  try {
    creds = checkedAwsCredentials(
      await mintOrWait<AwsCredsBody>(ctx, broker, '/v1/mint-aws-creds', body, o.wait === true, {
        beforeWait: () => spin?.stop(),
        quiet: o.credentialProcess === true,
      }),
    );
  } finally {
    spin?.stop();
  }
  if (o.credentialProcess) {
    if (stored && cacheableExpiry(creds.expiration, Math.floor(Date.now() / 1000))) {
      const { access_key_id, secret_access_key, session_token, expiration } = creds;
      // Into the session as it is now, under the renewal lock (see saveAwsCache). The cache only
      // saves the next call a mint: when it cannot be kept the credentials are still the answer.
      await saveAwsCache(ctx.profile, await ctx.store(), stored, { key: cacheKey(body), access_key_id, secret_access_key, session_token, expiration }).catch(
        () => false,
      );
    }
    process.stdout.write(credentialProcessLine(creds));
    return;
  }
  ctx.print(creds, [
    `export AWS_ACCESS_KEY_ID=${shellQuoted(creds.access_key_id)}`,
    `export AWS_SECRET_ACCESS_KEY=${shellQuoted(creds.secret_access_key)}`,
    `export AWS_SESSION_TOKEN=${shellQuoted(creds.session_token)}`,
    `# for wallet ${creds.wallet}, expires ${new Date(creds.expiration * 1000).toISOString()}`,
  ]);
}

interface MintGcpOptions {
  audience?: string;
  serviceAccount?: string;
  grantId?: string;
  reason?: string;
  wait?: boolean;
  executable?: boolean;
}

/**
 * A token for a workload identity pool provider. With --executable it prints what Google's
 * executable-sourced credentials read on stdout, a failure included, and nothing on stderr; the
 * library passes the audience and the service account in its environment.
 *
 * A failure is the response `{"success": false, "code", "message"}` with exit code 1, as Google's
 * executable-sourced credentials spec asks (google-auth-library README, "Response format fields
 * summary": when false, "exit with a non-zero value"). google-auth-library 10.9
 * (build/src/auth/pluggable-auth-handler.js) joins stdout and stderr into one string and, on a
 * non-zero exit, raises ExecutableError with the exit status as its code and that string as its
 * message: so nothing goes to stderr, and the message is exactly the response (code and message).
 */
async function mintGcp(cmd: Command, o: MintGcpOptions): Promise<void> {
  try {
    const ctx = await CliContext.open(cmd);
    const audience = o.audience ?? ctx.env[AUDIENCE_ENV];
    const serviceAccount = o.serviceAccount ?? ctx.env[IMPERSONATED_EMAIL_ENV];
    if (!audience) throw new UsageError(`name the pool provider: --audience //iam.googleapis.com/projects/… (or ${AUDIENCE_ENV})`);
    const broker = await ctx.authedBroker();
    const body = { audience, ...(serviceAccount ? { service_account: serviceAccount } : {}), ...(mintBody(o) ?? {}) };
    const r = await mintOrWait<GcpTokenBody>(ctx, broker, '/v1/mint-gcp-token', body, o.wait === true, { quiet: o.executable === true });
    if (o.executable) process.stdout.write(`${JSON.stringify(executableSuccess(r.id_token, r.expiration))}\n`);
    else ctx.print(r, r.id_token);
  } catch (e) {
    if (!o.executable) throw e;
    // The library refuses a failure without a code or a message: neither is ever empty.
    const code = (e as { code?: unknown }).code;
    const message = e instanceof Error && e.message ? e.message : String(e) || 'unknown error';
    process.stdout.write(`${JSON.stringify(executableFailure(typeof code === 'string' && code ? code : 'ERR_AGENTKEYS', message))}\n`);
    throw new ReportedFailure('the token was not minted (the executable response says why)', true);
  }
}

/** The agent's side of a grant that asks for approval (docs/approvals.md), the same on every target. */
function withApprovalOptions(cmd: Command): Command {
  return cmd
    .option('--reason <text>', 'as an agent: why, shown to a holder who approves mints')
    .option('--wait', "as an agent: when the grant asks for its holder's approval, wait for the decision (a spinner shows it)");
}

export function mintCommand(): Command {
  const mint = new Command('mint').description('mint short-lived credentials for this profile (or its grant)');
  withApprovalOptions(
    mint
      .command('aws')
      .description('AWS credentials for the data role (default output: export lines for a shell)')
      .option('--env', 'print export lines for a shell (the default)')
      .option('--credential-process', 'print the AWS credential_process JSON, reusing cached credentials until 5 minutes before they expire')
      .option('--duration <seconds>', 'session duration (900 up to the broker’s BROKER_STS_SESSION_DURATION_SECONDS)')
      .addOption(new Option('--grant-id <id>', 'as an agent: mint under this grant')),
  ).action(async (o: MintAwsOptions, cmd: Command) => mintAws(await CliContext.open(cmd), o));
  withApprovalOptions(
    mint
      .command('oidc')
      .description('an OIDC JWT for sts:AssumeRoleWithWebIdentity (prints the JWT)')
      .option('--grant-id <id>', 'as an agent: mint under this grant'),
  ).action(async (o: { grantId?: string; reason?: string; wait?: boolean }, cmd: Command) => {
    const ctx = await CliContext.open(cmd);
    const broker = await ctx.authedBroker();
    const r = await mintOrWait<OidcJwtBody>(ctx, broker, '/v1/mint-oidc-jwt', mintBody(o), o.wait === true);
    ctx.print(r, r.jwt);
  });
  withApprovalOptions(
    mint
      .command('gcp')
      .description('an OIDC JWT for a Google Cloud workload identity pool provider (docs/gcp.md)')
      .option(
        '--audience <provider>',
        `//iam.googleapis.com/projects/<number>/locations/global/workloadIdentityPools/<pool>/providers/<provider> (default: $${AUDIENCE_ENV})`,
      )
      .option('--service-account <email>', `the service account to impersonate (default: $${IMPERSONATED_EMAIL_ENV})`)
      .option('--grant-id <id>', 'as an agent: mint under this grant'),
  )
    .option(
      '--executable',
      "print Google's executable-sourced credential response (for `configure gcp`); with --wait, the library's executable timeout bounds the wait",
    )
    .action(async (o: MintGcpOptions, cmd: Command) => mintGcp(cmd, o));
  return mint;
}
