import { randomBytes } from 'node:crypto';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure, TimeoutFailure } from '@temporalio/common';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { hmacHex } from '../../lib/digest';
import { BrokerError } from '../../lib/errors';
import { AkFlow, AkOmniAccount, AkStage } from '../../lib/search-attributes';
import { MINT_ID_PREFIX, MintActivityFailure, type MintAwsRequest, type MintCaller, type MintRequest } from '../../workflows/mint.definitions';
import type { mintAwsCredsWorkflow, mintOidcJwtWorkflow } from '../../workflows/mint';
import { driveFlow } from '../flow-errors';
import { bearerToken } from '../plugins/auth';
import { commonErrors, errorBody, grantIdSchema } from '../schemas';

/** A mint that has not finished by then is abandoned (the caller gets `unavailable`). */
const MINT_TIMEOUT = '1 minute';
const MIN_STS_DURATION_SECONDS = 900;

/**
 * Credential minting (docs/contracts.md §4): POST /v1/mint-oidc-jwt and POST /v1/mint-aws-creds, each
 * one run of a mint workflow (mint/<request_id>) that authorises, audits, mints and audits again
 * before anything is returned. Bodies are optional; unknown fields (sent by older CLIs) are ignored.
 */
export default async function mintRoutes(appBase: FastifyInstance) {
  const app = appBase.withTypeProvider<ZodTypeProvider>();
  const { config, secrets, temporal } = app.deps;
  const maxDuration = config.BROKER_SESSION_DURATION_SECONDS;
  // One budget per account for both kinds of mint, counted once the bearer is known (before the body is read).
  const mintPerAccount = app.requestLimit({ name: 'mint:account', max: config.BROKER_RATE_LIMIT_MINT_PER_MINUTE, windowMs: 60_000 });
  const limitMints = (request: FastifyRequest) => mintPerAccount(request, request.auth?.omniAccount);

  // `curl -X POST -H 'content-type: application/json'` with no body is a valid mint request here.
  const jsonParser = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') {
      done(null, undefined);
      return;
    }
    void jsonParser(request, text, done);
  });

  function callerOf(request: FastifyRequest): MintCaller {
    const auth = request.auth;
    if (!auth) throw new BrokerError('unauthorized', 'not authenticated');
    return {
      omniAccount: auth.omniAccount,
      authKind: auth.kind,
      method: auth.method,
      wallet: auth.wallet?.toLowerCase(),
      bearerHash: hmacHex(secrets.hmacSecret, 'audit-bearer', bearerToken(request)).slice(0, 32),
    };
  }

  const startOptions = (input: MintRequest) => ({
    workflowId: MINT_ID_PREFIX + input.requestId,
    taskQueue: config.BROKER_TASK_QUEUE,
    workflowExecutionTimeout: MINT_TIMEOUT,
    // Only when a worker shares the client's connection (npm start); otherwise a normal start.
    requestEagerStart: app.deps.eagerWorkflowStart === true,
    typedSearchAttributes: [
      { key: AkFlow, value: 'mint' },
      { key: AkStage, value: 'started' },
      { key: AkOmniAccount, value: input.caller.omniAccount },
    ],
  });

  /** Runs the mint flow to its end and maps its failures to the wire errors. */
  async function runMint<T>(request: FastifyRequest, requestId: string, execute: () => Promise<T>): Promise<T> {
    try {
      return await driveFlow(execute);
    } catch (e) {
      if (e instanceof WorkflowFailedError && e.cause instanceof TimeoutFailure) {
        throw new BrokerError('unavailable', 'the mint did not complete in time; nothing was issued, try again');
      }
      // The OIDC keyset is unreadable or unusable (as /readyz and the JWKS then say): the operator's to fix, not a bug.
      if (e instanceof WorkflowFailedError && e.cause instanceof ApplicationFailure && e.cause.type === MintActivityFailure.signingFailed) {
        request.log.error({ flow: 'mint', request_id: requestId, err: e.cause }, 'mint could not sign');
        throw new BrokerError('unavailable', 'the broker cannot sign tokens right now (its OIDC signing key is not usable); nothing was issued, try again later');
      }
      if (e instanceof BrokerError) request.log.info({ flow: 'mint', request_id: requestId, error: e.kind }, 'mint refused');
      throw e;
    }
  }

  const mintErrors = { ...commonErrors, 403: errorBody, 502: errorBody };

  app.post(
    '/v1/mint-oidc-jwt',
    {
      onRequest: [app.requireAuth, limitMints],
      schema: {
        tags: ['mint'],
        summary: 'Mint a short-lived OIDC JWT for AWS STS AssumeRoleWithWebIdentity',
        description: 'Audited before it is returned. An agent wallet mints under an active grant of its main wallet (optionally the given grant_id).',
        security: [{ bearer: [] }],
        body: z.looseObject({ grant_id: grantIdSchema.optional() }).nullish(),
        response: { 200: z.object({ jwt: z.string(), wallet: z.string(), expiration: z.number().int().describe('unix seconds') }), ...mintErrors },
      },
    },
    async (request) => {
      const requestId = randomBytes(16).toString('hex');
      const input: MintRequest = { requestId, caller: callerOf(request), grantId: request.body?.grant_id, httpRequestId: request.id };
      const minted = await runMint(request, requestId, () =>
        temporal.workflow.execute<typeof mintOidcJwtWorkflow>('mintOidcJwtWorkflow', { ...startOptions(input), args: [input] }),
      );
      request.log.info({ flow: 'mint', kind: 'oidc', request_id: requestId, wallet: minted.wallet }, 'OIDC JWT minted');
      return minted;
    },
  );

  app.post(
    '/v1/mint-aws-creds',
    {
      onRequest: [app.requireAuth, limitMints],
      schema: {
        tags: ['mint'],
        summary: 'Mint short-lived AWS credentials for the data role',
        description: `STS AssumeRoleWithWebIdentity on the broker's data role with its own OIDC JWT. duration_seconds: ${MIN_STS_DURATION_SECONDS}–${maxDuration} (default ${maxDuration}).`,
        security: [{ bearer: [] }],
        body: z
          .looseObject({
            grant_id: grantIdSchema.optional(),
            duration_seconds: z
              .number()
              .int('duration_seconds must be a whole number of seconds')
              .min(MIN_STS_DURATION_SECONDS, `duration_seconds must be at least ${MIN_STS_DURATION_SECONDS}`)
              .max(maxDuration, `duration_seconds must be at most ${maxDuration} (BROKER_SESSION_DURATION_SECONDS)`)
              .optional(),
          })
          .nullish(),
        response: {
          200: z.object({
            access_key_id: z.string(),
            secret_access_key: z.string(),
            session_token: z.string(),
            expiration: z.number().int().describe('unix seconds'),
            wallet: z.string(),
          }),
          ...mintErrors,
        },
      },
    },
    async (request) => {
      if (!config.BROKER_DATA_ROLE_ARN) throw new BrokerError('unavailable', 'this broker has no data role configured (BROKER_DATA_ROLE_ARN); it cannot mint AWS credentials');
      const requestId = randomBytes(16).toString('hex');
      const input: MintAwsRequest = {
        requestId,
        caller: callerOf(request),
        grantId: request.body?.grant_id,
        httpRequestId: request.id,
        durationSeconds: request.body?.duration_seconds ?? maxDuration,
      };
      const minted = await runMint(request, requestId, () =>
        temporal.workflow.execute<typeof mintAwsCredsWorkflow>('mintAwsCredsWorkflow', { ...startOptions(input), args: [input] }),
      );
      request.log.info({ flow: 'mint', kind: 'aws', request_id: requestId, wallet: minted.wallet }, 'AWS credentials minted');
      return minted;
    },
  );
}
