/** `agentkeys mint aws` and `agentkeys mint oidc`. */
import { Command, Option } from 'commander';
import type { AwsCredsBody, OidcJwtBody } from '../../lib/wire';
import { UsageError } from '../errors';
import { CliContext } from '../context';
import type { AwsCache } from '../session-store';

/** `credential_process` reuses cached credentials until this long before they expire. */
export const CREDENTIAL_CACHE_MARGIN_SECONDS = 300;

interface MintAwsOptions {
  env?: boolean;
  credentialProcess?: boolean;
  duration?: string;
  grantId?: string;
}

function mintBody(o: { duration?: string; grantId?: string }): Record<string, unknown> | undefined {
  const body: Record<string, unknown> = {};
  if (o.duration !== undefined) {
    const d = Number(o.duration);
    if (!Number.isInteger(d) || d < 1) throw new UsageError('--duration takes whole seconds');
    body.duration_seconds = d;
  }
  if (o.grantId !== undefined) body.grant_id = o.grantId;
  return Object.keys(body).length > 0 ? body : undefined;
}

/** The AWS CLI/SDK `credential_process` output (Version 1). */
function credentialProcessJson(c: { access_key_id: string; secret_access_key: string; session_token: string; expiration: number }): object {
  return {
    Version: 1,
    AccessKeyId: c.access_key_id,
    SecretAccessKey: c.secret_access_key,
    SessionToken: c.session_token,
    Expiration: new Date(c.expiration * 1000).toISOString(),
  };
}

async function mintAws(ctx: CliContext, o: MintAwsOptions): Promise<void> {
  if ([o.env, o.credentialProcess, ctx.json].filter(Boolean).length > 1) throw new UsageError('choose one of --env, --json and --credential-process');
  const body = mintBody(o);
  const { broker, session } = await ctx.authedBroker();
  const cacheKey = JSON.stringify(body ?? {});
  const now = Math.floor(Date.now() / 1000);
  if (o.credentialProcess && session.aws_cache && session.aws_cache.key === cacheKey && session.aws_cache.expiration - CREDENTIAL_CACHE_MARGIN_SECONDS > now) {
    process.stdout.write(`${JSON.stringify(credentialProcessJson(session.aws_cache))}\n`);
    return;
  }
  const spin = o.credentialProcess ? undefined : await ctx.spinner('Minting AWS credentials');
  let creds: AwsCredsBody;
  try {
    creds = (await broker.call<AwsCredsBody>('POST', '/v1/mint-aws-creds', { auth: true, body })).body;
  } finally {
    spin?.stop();
  }
  if (o.credentialProcess) {
    const cache: AwsCache = {
      key: cacheKey,
      access_key_id: creds.access_key_id,
      secret_access_key: creds.secret_access_key,
      session_token: creds.session_token,
      expiration: creds.expiration,
    };
    await (await ctx.store()).save(ctx.profile, { ...session, aws_cache: cache });
    process.stdout.write(`${JSON.stringify(credentialProcessJson(creds))}\n`);
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
    .action(async (o: MintAwsOptions, cmd: Command) => mintAws(CliContext.from(cmd), o));
  mint
    .command('oidc')
    .description('an OIDC JWT for sts:AssumeRoleWithWebIdentity (prints the JWT)')
    .option('--grant-id <id>', 'as an agent: mint under this grant')
    .action(async (o: { grantId?: string }, cmd: Command) => {
      const ctx = CliContext.from(cmd);
      const { broker } = await ctx.authedBroker();
      const r = (await broker.call<OidcJwtBody>('POST', '/v1/mint-oidc-jwt', { auth: true, body: mintBody(o) })).body;
      ctx.print(r, r.jwt);
    });
  return mint;
}
