import type { STSClient } from '@aws-sdk/client-sts';
import { z } from 'zod';
import { MAX_SCOPE_TAG_LENGTH, scopeSessionPolicy } from '../../lib/grant-scope';
import { stsSessionName } from '../../lib/oidc-claims';
import type { Config } from '../../lib/config';
import { FailureType } from '../../workflows/definitions';
import { MintActivityFailure } from '../../workflows/mint.definitions';
import { assumeRoleWithWebIdentity, classifyStsError, createStsClient } from '../../adapters/sts-client';
import type { ActivityDeps } from '../deps';
import { MintSigningError, type MintTarget } from './target';

/**
 * Short-lived AWS credentials for the data role (`POST /v1/mint-aws-creds`): the broker signs an
 * OIDC token for BROKER_STS_AUDIENCE (sts.amazonaws.com) and exchanges it itself (AssumeRoleWithWebIdentity on
 * BROKER_DATA_ROLE_ARN); the token never leaves the activity, only its digest does. Throttling,
 * 5xx and transport errors are tried again (0.5 s, then 1 s); every other STS error is final.
 *
 * Scope (`services`, `roles`): a grant's services become the inline session policy, so the
 * session can do at most that; its roles must name the data role.
 */

const MIN_DURATION_SECONDS = 900;
const MAX_SCOPE_SERVICES = 16;
const MAX_SCOPE_ROLES = 16;
const SERVICE_RE = /^[a-z0-9][a-z0-9-]{0,31}$/;
const ROLE_ARN_RE = /^arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@/-]{1,512}$/;
const unique = (items: string[]) => new Set(items).size === items.length;

const stsClients = new WeakMap<ActivityDeps, STSClient>();
function stsOf(deps: ActivityDeps): STSClient {
  let client = deps.stsClient ?? stsClients.get(deps);
  if (!client) stsClients.set(deps, (client = createStsClient(deps.config)));
  return client;
}

type AwsParams = { duration_seconds: number };

export const awsTarget: MintTarget<AwsParams> = {
  name: 'aws',
  path: '/v1/mint-aws-creds',
  summary: 'Mint: AWS credentials',
  description:
    'Authorises the caller, audits the intent, assumes the data role through STS with its own OIDC JWT and audits the outcome, in one step. Stages: started → done.',
  body: (config) => ({
    duration_seconds: z
      .number()
      .int('duration_seconds must be a whole number of seconds')
      .min(MIN_DURATION_SECONDS, `duration_seconds must be at least ${MIN_DURATION_SECONDS}`)
      .max(
        config.BROKER_STS_SESSION_DURATION_SECONDS,
        `duration_seconds must be at most ${config.BROKER_STS_SESSION_DURATION_SECONDS} (BROKER_STS_SESSION_DURATION_SECONDS)`,
      )
      .optional(),
  }),
  signedIntent: true,
  response: z.object({
    access_key_id: z.string(),
    secret_access_key: z.string(),
    session_token: z.string(),
    expiration: z.number().int().describe('unix seconds'),
    wallet: z.string(),
  }),
  unavailable: (config) =>
    config.BROKER_DATA_ROLE_ARN ? undefined : 'this broker has no data role configured (BROKER_DATA_ROLE_ARN); it cannot mint AWS credentials',
  params: (body, config: Config) => ({ duration_seconds: (body.duration_seconds as number | undefined) ?? config.BROKER_STS_SESSION_DURATION_SECONDS }),
  scope: {
    services: z
      .array(z.string().regex(SERVICE_RE, 'scope.services entries are IAM service prefixes: 1-32 lower-case letters, digits and hyphens (e.g. s3, dynamodb)'))
      .min(1, 'scope.services must name at least one service (omit it for all services)')
      .max(MAX_SCOPE_SERVICES, `scope.services: at most ${MAX_SCOPE_SERVICES} services`)
      .refine(unique, 'scope.services has a duplicate entry')
      .refine(
        (s) => s.join(' ').length <= MAX_SCOPE_TAG_LENGTH,
        `scope.services joined by spaces must fit ${MAX_SCOPE_TAG_LENGTH} characters (an AWS session tag)`,
      )
      .optional(),
    roles: z
      .array(z.string().regex(ROLE_ARN_RE, 'scope.roles entries are IAM role ARNs (arn:aws:iam::<12-digit account>:role/<name>)'))
      .min(1, 'scope.roles must name at least one role (omit it for any role)')
      .max(MAX_SCOPE_ROLES, `scope.roles: at most ${MAX_SCOPE_ROLES} roles`)
      .refine(unique, 'scope.roles has a duplicate entry')
      .optional(),
  },
  authorise(scope, _params, config) {
    const roleArn = config.BROKER_DATA_ROLE_ARN ?? '';
    if (scope.roles?.length && !scope.roles.includes(roleArn)) return 'does not allow the data role (its scope.roles does not name it)';
    return undefined;
  },
  intentDetails: (params) => ({ duration_seconds: params.duration_seconds }),
  reachesOutside: true,
  async exchange(ctx, params) {
    const { config } = ctx.deps;
    const roleArn = config.BROKER_DATA_ROLE_ARN;
    if (!roleArn) throw new Error('BROKER_DATA_ROLE_ARN is not configured; the broker cannot mint AWS credentials');
    const signed = await ctx.sign(ctx.deps.config.BROKER_STS_AUDIENCE);
    const sessionName = stsSessionName(ctx.wallet, signed.nowSeconds);
    const creds = await assumeRoleWithWebIdentity(stsOf(ctx.deps), {
      roleArn,
      sessionName,
      webIdentityToken: signed.jwt,
      durationSeconds: params.duration_seconds,
      policy: scopeSessionPolicy(ctx.grant?.scope),
    });
    return {
      secret: { secret_access_key: creds.secretAccessKey, session_token: creds.sessionToken },
      public: { access_key_id: creds.accessKeyId },
      expiration: creds.expiration,
      audit: {
        access_key_id: creds.accessKeyId,
        session_name: sessionName,
        role_arn: roleArn,
        kid: signed.kid,
        jwt_hash: signed.jwtHash,
        expiration: creds.expiration,
        sts_attempt: ctx.attempt,
      },
    };
  },
  classify(e, config) {
    if (e instanceof MintSigningError)
      return { type: MintActivityFailure.signingFailed, outcome: 'failed', details: { sts_code: null }, retryable: false, message: e.message };
    const c = classifyStsError(e, { roleArn: config.BROKER_DATA_ROLE_ARN ?? '', issuer: config.publicUrl, audience: config.BROKER_STS_AUDIENCE });
    return { type: FailureType.stsError, outcome: 'sts_error', details: { sts_code: c.code }, retryable: c.retryable, message: c.message };
  },
  attempts: 3,
  backoffMs: [500, 1000],
};
