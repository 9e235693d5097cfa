import { AssumeRoleWithWebIdentityCommand, GetCallerIdentityCommand, STSClient, STSServiceException } from '@aws-sdk/client-sts';
import type { Config } from '../lib/config';
import { awsRequestHandler } from './aws-request';
import { AgentKeysError } from '../lib/errors';
import { stsErrors, stsRequestDuration, timed } from '../lib/metrics';

/**
 * AWS STS as the broker uses it: AssumeRoleWithWebIdentity with the broker's own OIDC token
 * (an unsigned call: the token is the credential), and GetCallerIdentity at start-up to prove
 * the broker's AWS credentials work. The SDK's own retries are off (maxAttempts 1): the Temporal
 * activity retry policy is the one place retries are decided.
 */

/** Static AWS credentials (tests; production uses the SDK's default provider chain). */
export interface StaticAwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export function createStsClient(
  config: Pick<Config, 'AWS_REGION' | 'BROKER_STS_ENDPOINT'>,
  opts: { credentials?: StaticAwsCredentials; maxAttempts?: number; /** Tests: a shorter answer timeout. */ requestTimeoutMs?: number } = {},
): STSClient {
  return new STSClient({
    region: config.AWS_REGION,
    maxAttempts: opts.maxAttempts ?? 1,
    requestHandler: awsRequestHandler(opts.requestTimeoutMs),
    ...(config.BROKER_STS_ENDPOINT ? { endpoint: config.BROKER_STS_ENDPOINT } : {}),
    ...(opts.credentials ? { credentials: opts.credentials } : {}),
  });
}

export interface StsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
  /** Unix seconds. */
  expiration: number;
  /** The assumed-role ARN STS reports (not secret). */
  assumedRoleArn?: string;
}

/** One STS call, timed into broker_sts_request_duration_seconds and counted in broker_sts_errors_total when it fails. */
function stsCall<T>(operation: string, call: () => Promise<T>): Promise<T> {
  return timed(
    (outcome, seconds) => stsRequestDuration.observe({ operation, outcome }, seconds),
    (code) => stsErrors.inc({ operation, code }),
    call,
  );
}

export class StsResponseError extends AgentKeysError {
  override readonly code: string = 'ERR_STS_RESPONSE';
  override name = 'StsResponseError';
}

export async function assumeRoleWithWebIdentity(
  client: STSClient,
  input: {
    roleArn: string;
    sessionName: string;
    webIdentityToken: string;
    durationSeconds: number;
    /** Inline session policy (JSON): the session gets the intersection of the role's policies and this. */
    policy?: string;
  },
): Promise<StsCredentials> {
  const command = new AssumeRoleWithWebIdentityCommand({
    RoleArn: input.roleArn,
    RoleSessionName: input.sessionName,
    WebIdentityToken: input.webIdentityToken,
    DurationSeconds: input.durationSeconds,
    ...(input.policy !== undefined ? { Policy: input.policy } : {}),
  });
  const out = await stsCall('AssumeRoleWithWebIdentity', () => client.send(command));
  const c = out.Credentials;
  if (!c?.AccessKeyId || !c.SecretAccessKey || !c.SessionToken || !c.Expiration) {
    throw new StsResponseError('STS answered AssumeRoleWithWebIdentity without complete credentials');
  }
  return {
    accessKeyId: c.AccessKeyId,
    secretAccessKey: c.SecretAccessKey,
    sessionToken: c.SessionToken,
    expiration: Math.floor(c.Expiration.getTime() / 1000),
    assumedRoleArn: out.AssumedRoleUser?.Arn,
  };
}

/** STS error codes that mean "slow down": retried with backoff. */
const THROTTLING_CODES = new Set(['Throttling', 'ThrottlingException', 'RequestLimitExceeded', 'TooManyRequestsException', 'RequestThrottled', 'SlowDown']);

/** SDK exception names of modelled STS errors → the STS error code operators know. */
const CODE_BY_EXCEPTION: Record<string, string> = {
  InvalidIdentityTokenException: 'InvalidIdentityToken',
  IDPCommunicationErrorException: 'IDPCommunicationError',
  IDPRejectedClaimException: 'IDPRejectedClaim',
  MalformedPolicyDocumentException: 'MalformedPolicyDocument',
  PackedPolicyTooLargeException: 'PackedPolicyTooLarge',
};

export interface ClassifiedStsError {
  /** The STS error code (e.g. InvalidIdentityToken, AccessDenied, Throttling), or a transport error name. */
  code: string;
  /** Throttling, 5xx and transport failures: worth another attempt. */
  retryable: boolean;
  /** What went wrong and what to check, for the caller and the operator. */
  message: string;
}

function trimmed(text: string | undefined): string {
  const t = (text ?? '').replace(/\s+/g, ' ').trim();
  return t.length > 300 ? `${t.slice(0, 300)}…` : t;
}

/** Turns what the STS client threw into a code, a retry decision and a message that says what to check. */
export function classifyStsError(e: unknown, ctx: { roleArn: string; issuer: string; audience: string }): ClassifiedStsError {
  if (e instanceof StsResponseError) return { code: 'IncompleteResponse', retryable: true, message: e.message };
  if (e instanceof STSServiceException) {
    const code = CODE_BY_EXCEPTION[e.name] ?? e.name;
    const said = trimmed(e.message);
    const status = e.$metadata?.httpStatusCode ?? 0;
    if (THROTTLING_CODES.has(code))
      return { code, retryable: true, message: `STS is throttling AssumeRoleWithWebIdentity (${code}: ${said}); try again shortly` };
    switch (code) {
      case 'InvalidIdentityToken':
        return {
          code,
          retryable: false,
          message: `STS rejected the broker's OIDC token (InvalidIdentityToken: ${said}); check that an IAM OIDC provider for ${ctx.issuer} exists with audience ${ctx.audience} (BROKER_STS_AUDIENCE) and can fetch its JWKS`,
        };
      case 'ExpiredTokenException':
        return { code, retryable: false, message: `STS says the broker's OIDC token has expired (ExpiredTokenException: ${said}); check the broker's clock` };
      case 'AccessDenied':
        return {
          code,
          retryable: false,
          message: `STS denied AssumeRoleWithWebIdentity on ${ctx.roleArn} (AccessDenied: ${said}); the role's trust policy must let the OIDC provider ${ctx.issuer} sts:AssumeRoleWithWebIdentity, sts:TagSession (every token carries session tags) and sts:SetSourceIdentity (an agent's token under a grant names the agent as source identity), under its aud and sub conditions`,
        };
      case 'IDPCommunicationError':
        return {
          code,
          retryable: false,
          message: `STS could not reach the broker's OIDC issuer ${ctx.issuer} to verify the token (IDPCommunicationError: ${said})`,
        };
      case 'IDPRejectedClaim':
        return { code, retryable: false, message: `STS rejected a claim of the broker's OIDC token (IDPRejectedClaim: ${said})` };
      default:
        if (status >= 500) return { code, retryable: true, message: `STS failed (${code}, HTTP ${status}: ${said})` };
        return { code, retryable: false, message: `STS refused AssumeRoleWithWebIdentity on ${ctx.roleArn} (${code}: ${said})` };
    }
  }
  const err = e as NodeJS.ErrnoException;
  const code = err?.code ?? err?.name ?? 'Error';
  return { code, retryable: true, message: `STS could not be reached (${code}: ${trimmed(err?.message)})` };
}

// ---- start-up check ---------------------------------------------------------------------------

export interface StsCallerIdentity {
  account: string;
  arn: string;
}

export class StsStartupError extends AgentKeysError {
  override readonly code: string = 'ERR_STS_STARTUP';
  override name = 'StsStartupError';
}

/**
 * Confirms the broker can reach STS with its AWS credentials (GetCallerIdentity) and that a data
 * role is configured. api/main.ts runs it at boot in production and refuses to start when it
 * throws, unless started with --skip-startup-check (BROKER_SKIP_STARTUP_CHECK) for offline work.
 */
export async function stsStartupCheck(
  config: Pick<Config, 'AWS_REGION' | 'BROKER_STS_ENDPOINT' | 'BROKER_DATA_ROLE_ARN'>,
  opts: { credentials?: StaticAwsCredentials } = {},
): Promise<StsCallerIdentity> {
  if (!config.BROKER_DATA_ROLE_ARN) {
    throw new StsStartupError('BROKER_DATA_ROLE_ARN is not set: mint-aws-creds has no role to assume (start with --skip-startup-check to run without it)');
  }
  const client = createStsClient(config, { credentials: opts.credentials });
  try {
    const out = await stsCall('GetCallerIdentity', () => client.send(new GetCallerIdentityCommand({})));
    return { account: out.Account ?? '', arn: out.Arn ?? '' };
  } catch (e) {
    const where = config.BROKER_STS_ENDPOINT ?? `STS in ${config.AWS_REGION}`;
    throw new StsStartupError(
      `cannot reach ${where} with the broker's AWS credentials (GetCallerIdentity failed: ${(e as Error).name}: ${trimmed((e as Error).message)}); ` +
        'fix the credentials or network, or start with --skip-startup-check for offline development',
    );
  } finally {
    client.destroy();
  }
}

/** One /readyz part (same shape as api/deps.ts ReadinessCheck). */
export type StsReadinessCheck = () => Promise<{ ok: boolean; detail?: string }>;

const READINESS_RECHECK_MS = 60_000;

/**
 * Runs the start-up check (unless skipped or outside production) and returns the `sts` entry of
 * /readyz: it reports how the check went and, in production, re-runs GetCallerIdentity at most
 * once a minute so expired broker credentials show up as not ready. Throws StsStartupError when
 * the broker must not start.
 */
export async function stsStartupGate(
  config: Pick<Config, 'AWS_REGION' | 'BROKER_STS_ENDPOINT' | 'BROKER_DATA_ROLE_ARN' | 'isProduction'>,
  opts: { skipCheck: boolean; credentials?: StaticAwsCredentials },
): Promise<StsReadinessCheck> {
  if (!config.isProduction) return () => Promise.resolve({ ok: true, detail: 'start-up check not run outside production' });
  if (opts.skipCheck) return () => Promise.resolve({ ok: true, detail: 'start-up check skipped (--skip-startup-check)' });
  let last = { at: Date.now(), identity: await stsStartupCheck(config, opts) };
  return async () => {
    if (Date.now() - last.at >= READINESS_RECHECK_MS) {
      try {
        last = { at: Date.now(), identity: await stsStartupCheck(config, opts) };
      } catch (e) {
        return { ok: false, detail: (e as Error).message };
      }
    }
    return { ok: true, detail: `reachable as ${last.identity.arn}` };
  };
}
