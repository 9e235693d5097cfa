/** `agentkeys mint aws` and `agentkeys mint oidc`. */
import { Command, Option } from 'commander';
import type { AwsCredsBody, OidcJwtBody } from '../../lib/wire';
import { UsageError } from '../errors';
import { CliContext } from '../context';
import { cacheKey, cachedCredentials, credentialProcessLine, mintBody, type MintOptions } from '../credential-cache';

interface MintAwsOptions extends MintOptions {
  env?: boolean;
  credentialProcess?: boolean;
}

async function mintAws(ctx: CliContext, o: MintAwsOptions): Promise<void> {
  if ([o.env, o.credentialProcess, ctx.json].filter(Boolean).length > 1) throw new UsageError('choose one of --env, --json and --credential-process');
  const body = mintBody(o);
  const session = await ctx.session();
  const stored = 'fromEnv' in session ? undefined : session;
  const cached = o.credentialProcess && stored ? cachedCredentials(stored, body, Math.floor(Date.now() / 1000)) : undefined;
  if (cached) {
    process.stdout.write(credentialProcessLine(cached));
    return;
  }
  const broker = await ctx.authedBroker();
  const spin = o.credentialProcess ? undefined : await ctx.spinner('Minting AWS credentials');
  let creds: AwsCredsBody;
  try {
    creds = (await broker.call<AwsCredsBody>('POST', '/v1/mint-aws-creds', { auth: true, body })).body;
  } finally {
    spin?.stop();
  }
  if (o.credentialProcess) {
    if (stored) {
      const { access_key_id, secret_access_key, session_token, expiration } = creds;
      await (
        await ctx.store()
      ).save(ctx.profile, { ...stored, aws_cache: { key: cacheKey(body), access_key_id, secret_access_key, session_token, expiration } });
    }
    process.stdout.write(credentialProcessLine(creds));
    return;
  }
  ctx.print(creds, [
    `export AWS_ACCESS_KEY_ID=${creds.access_key_id}`,
    `export AWS_SECRET_ACCESS_KEY=${creds.secret_access_key}`,
    `export AWS_SESSION_TOKEN=${creds.session_token}`,
    `# for wallet ${creds.wallet}, expires ${new Date(creds.expiration * 1000).toISOString()}`,
  ]);
}

export function mintCommand(): Command {
  const mint = new Command('mint').description('mint short-lived credentials for this profile (or its grant)');
  mint
    .command('aws')
    .description('AWS credentials for the data role (default output: export lines for a shell)')
    .option('--env', 'print export lines for a shell (the default)')
    .option('--credential-process', 'print the AWS credential_process JSON, reusing cached credentials until 5 minutes before they expire')
    .option('--duration <seconds>', 'session duration (900 up to the broker’s BROKER_SESSION_DURATION_SECONDS)')
    .addOption(new Option('--grant-id <id>', 'as an agent: mint under this grant'))
    .action(async (o: MintAwsOptions, cmd: Command) => mintAws(await CliContext.open(cmd), o));
  mint
    .command('oidc')
    .description('an OIDC JWT for sts:AssumeRoleWithWebIdentity (prints the JWT)')
    .option('--grant-id <id>', 'as an agent: mint under this grant')
    .action(async (o: { grantId?: string }, cmd: Command) => {
      const ctx = await CliContext.open(cmd);
      const broker = await ctx.authedBroker();
      const r = (await broker.call<OidcJwtBody>('POST', '/v1/mint-oidc-jwt', { auth: true, body: mintBody(o) })).body;
      ctx.print(r, r.jwt);
    });
  return mint;
}
