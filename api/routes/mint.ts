import { randomBytes } from 'node:crypto';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure, TimeoutFailure } from '@temporalio/common';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { consumeProof } from '../../db/used-signatures';
import { hmacHex, sha256Hex } from '../../lib/digest';
import { personalMessageDigest, recoverSigner } from '../../adapters/evm-signature';
import { MintIntentError, mintIntentSigningInput, parseIssuedAt } from '../../lib/mint-intent';
import { EVM_ADDRESS_RE, parseEoaSignature, SignatureFormatError } from '../../lib/wallet-message';
import { BrokerError } from '../../lib/errors';
import { AkFlow, AkOmniAccount, AkStage } from '../../lib/search-attributes';
import { FLOW_METADATA } from '../../lib/flow-metadata';
import { createSealKeyPair, unsealJson, type SealKeyPair } from '../../lib/seal';
import {
  MINT_ID_PREFIX,
  MintActivityFailure,
  type AwsCredsMinted,
  type AwsSecretParts,
  type MintAwsRequest,
  type MintCaller,
  type MintRequest,
  type OidcJwtMinted,
  type SealedAwsCreds,
  type SealedOidcJwt,
  type SignedMintIntent,
} from '../../workflows/mint.definitions';
import type { mintAwsCredsWorkflow, mintOidcJwtWorkflow } from '../../workflows/mint';
import { bearerToken } from '../plugins/auth';
import { commonErrors, errorBody, grantIdSchema } from '../schemas';

/** A mint that has not finished by then is abandoned (the caller gets `unavailable`). */
const MINT_TIMEOUT = '1 minute';
const MIN_STS_DURATION_SECONDS = 900;
/** The v2 body's fields: any of them present makes the body a signed intent, which then needs all. */
const SIGNED_INTENT_FIELDS = ['request_id', 'issued_at', 'intent', 'auth'] as const;

function mintAwsBodySchema(maxDuration: number) {
  return z
    .looseObject({
      grant_id: grantIdSchema.optional(),
      duration_seconds: z
        .number()
        .int('duration_seconds must be a whole number of seconds')
        .min(MIN_STS_DURATION_SECONDS, `duration_seconds must be at least ${MIN_STS_DURATION_SECONDS}`)
        .max(maxDuration, `duration_seconds must be at most ${maxDuration} (BROKER_SESSION_DURATION_SECONDS)`)
        .optional(),
      request_id: z
        .string()
        .regex(/^[\x21-\x7e]{1,128}$/, 'request_id must be 1 to 128 printable ASCII characters')
        .optional(),
      issued_at: z.string().max(64, 'issued_at is too long').optional(),
      intent: z
        .looseObject({
          agent_id: z.string().max(128, 'intent.agent_id is too long'),
          service: z.string().min(1, 'intent.service is empty').max(64, 'intent.service is too long'),
          scope_path: z.string().max(256, 'intent.scope_path is too long').optional(),
        })
        .optional(),
      auth: z
        .looseObject({
          address: z.string().regex(EVM_ADDRESS_RE, 'auth.address must be 0x followed by 40 hex digits'),
          signature: z.string().max(200, 'auth.signature is too long'),
        })
        .optional(),
    })
    .nullish();
}
type MintAwsBody = NonNullable<z.infer<ReturnType<typeof mintAwsBodySchema>>>;

/**
 * Credential minting (docs/contracts.md §4): POST /v1/mint-oidc-jwt and POST /v1/mint-aws-creds, each
 * one run of a mint workflow (mint/<request_id>) that authorises, audits, mints and audits again
 * before anything is returned. Bodies are optional; unknown fields (sent by older CLIs) are ignored.
 */
export default async function mintRoutes(appBase: FastifyInstance) {
  const app = appBase.withTypeProvider<ZodTypeProvider>();
  const { config, secrets, temporal, db } = app.deps;
  const now = app.deps.now ?? Date.now;
  const intentWindowMs = config.BROKER_MINT_INTENT_WINDOW_SECONDS * 1000;
  const maxDuration = config.BROKER_SESSION_DURATION_SECONDS;
  // One budget per account for both kinds of mint, counted once the bearer is known (before the body is read).
  const mintPerAccount = app.requestLimit({ name: 'mint:account', max: config.BROKER_RATE_LIMIT_MINT_PER_MINUTE, windowMs: 60_000 });
  const limitMints = (request: FastifyRequest) => mintPerAccount(request, request.auth?.omniAccount);

  // `curl -X POST -H 'content-type: application/json'` with no body is a valid mint request here.
  const jsonParser = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  // The text as sent, kept for a signed intent: its signature covers the text's numbers as spelled.
  const rawBodies = new WeakMap<FastifyRequest, string>();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') {
      done(null, undefined);
      return;
    }
    rawBodies.set(request, text);
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

  const startOptions = (input: MintRequest, kind: 'mint_oidc_jwt' | 'mint_aws_creds') => ({
    workflowId: MINT_ID_PREFIX + input.requestId,
    ...FLOW_METADATA[kind],
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
      return await app.driveFlow(execute);
    } catch (e) {
      if (e instanceof WorkflowFailedError && e.cause instanceof TimeoutFailure) {
        throw new BrokerError('unavailable', 'the mint did not complete in time; nothing was issued, try again');
      }
      // The OIDC keyset is unreadable or unusable (as /readyz and the JWKS then say): the operator's to fix, not a bug.
      if (e instanceof WorkflowFailedError && e.cause instanceof ApplicationFailure && e.cause.type === MintActivityFailure.signingFailed) {
        request.log.error({ flow: 'mint', request_id: requestId, err: e.cause }, 'mint could not sign');
        throw new BrokerError(
          'unavailable',
          'the broker cannot sign tokens right now (its OIDC signing key is not usable); nothing was issued, try again later',
        );
      }
      if (e instanceof BrokerError) request.log.info({ flow: 'mint', request_id: requestId, error: e.kind }, 'mint refused');
      throw e;
    }
  }

  /**
   * The v2 body (lib/mint-intent.ts): checks the wallet's per-mint signature and consumes its
   * replay guard, in that order, so every refusal changes nothing. The signing wallet must be the
   * wallet the session signed in with; issued_at must be within BROKER_MINT_INTENT_WINDOW_SECONDS
   * of the broker clock; each (address, request_id) is accepted once.
   */
  async function verifySignedIntent(request: FastifyRequest, body: MintAwsBody): Promise<SignedMintIntent> {
    const { request_id, issued_at, intent, auth } = body;
    if (request_id === undefined || issued_at === undefined || intent === undefined || auth === undefined) {
      throw new BrokerError('bad_request', 'a signed mint intent needs all of request_id, issued_at, intent and auth (or none of them)');
    }
    const sessionWallet = request.auth?.kind === 'session' ? request.auth.wallet?.toLowerCase() : undefined;
    if (!sessionWallet) throw new BrokerError('forbidden', 'a signed mint intent needs a wallet-login session: log in with the wallet that signs the intents');
    const address = auth.address.toLowerCase();
    if (address !== sessionWallet) throw new BrokerError('unauthorized', `auth.address is not the wallet this session signed in with (${sessionWallet})`);
    let signedMs: number;
    let signingInput: string;
    let signature;
    try {
      signedMs = parseIssuedAt(issued_at);
      signingInput = mintIntentSigningInput(rawBodies.get(request) ?? '');
      signature = parseEoaSignature(auth.signature);
    } catch (e) {
      if (e instanceof MintIntentError || e instanceof SignatureFormatError) throw new BrokerError('bad_request', e.message);
      throw e;
    }
    if (now() - signedMs > intentWindowMs)
      throw new BrokerError('expired', `issued_at is more than ${config.BROKER_MINT_INTENT_WINDOW_SECONDS} s old; sign a new intent`);
    if (signedMs - now() > intentWindowMs)
      throw new BrokerError('unauthorized', `issued_at is more than ${config.BROKER_MINT_INTENT_WINDOW_SECONDS} s ahead of the broker's clock`);
    const signer = await recoverSigner(personalMessageDigest(signingInput), signature).catch(() => undefined);
    if (signer !== address)
      throw new BrokerError(
        'unauthorized',
        'auth.signature was not made by auth.address over this intent (EIP-191 over the canonical body without auth.signature)',
      );
    const fresh = await consumeProof(db, {
      hash: sha256Hex(`mint-intent\n${address}\n${request_id}`),
      purpose: 'mint-intent',
      expiresAt: new Date(Math.ceil((signedMs + intentWindowMs) / 1000) * 1000),
    });
    if (!fresh) throw new BrokerError('conflict', 'this mint intent (its request_id) was already used; sign a new one');
    return {
      requestId: request_id,
      intentHash: sha256Hex(signingInput),
      agentId: intent.agent_id,
      service: intent.service,
      scopePath: intent.scope_path ?? '',
      issuedAt: issued_at,
    };
  }

  /** Opens a sealed OIDC mint result; a result of a worker that does not seal yet (rolling deploy) passes as is. */
  async function openOidc(privateKey: SealKeyPair['privateKey'], minted: OidcJwtMinted | SealedOidcJwt): Promise<OidcJwtMinted> {
    if (!('sealed' in minted)) return minted;
    const { jwt } = await unsealJson<{ jwt: string }>(privateKey, minted.sealed);
    return { jwt, wallet: minted.wallet, expiration: minted.expiration };
  }

  async function openAws(privateKey: SealKeyPair['privateKey'], minted: AwsCredsMinted | SealedAwsCreds): Promise<AwsCredsMinted> {
    if (!('sealed' in minted)) return minted;
    const secret = await unsealJson<AwsSecretParts>(privateKey, minted.sealed);
    return {
      access_key_id: minted.access_key_id,
      secret_access_key: secret.secret_access_key,
      session_token: secret.session_token,
      expiration: minted.expiration,
      wallet: minted.wallet,
    };
  }

  const mintAwsBody = mintAwsBodySchema(maxDuration);
  const mintErrors = { ...commonErrors, 403: errorBody, 409: errorBody, 410: errorBody, 502: errorBody };

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
      // One key pair per request: the JWT comes back sealed to it, so the flow's history never holds it readable.
      const seal = await createSealKeyPair();
      const input: MintRequest = { requestId, caller: callerOf(request), grantId: request.body?.grant_id, httpRequestId: request.id, sealTo: seal.publicJwk };
      const minted = await openOidc(
        seal.privateKey,
        await runMint(request, requestId, () =>
          temporal.workflow.execute<typeof mintOidcJwtWorkflow>('mintOidcJwtWorkflow', { ...startOptions(input, 'mint_oidc_jwt'), args: [input] }),
        ),
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
        description:
          `STS AssumeRoleWithWebIdentity on the broker's data role with its own OIDC JWT. duration_seconds: ${MIN_STS_DURATION_SECONDS}–${maxDuration} (default ${maxDuration}). ` +
          'Optionally a signed intent (v2 body): {request_id, issued_at, intent{agent_id, service, scope_path}, auth{address, signature}}, the signature an EIP-191 personal_sign by the session wallet over the canonical JSON of the body without auth.signature (docs/mint.md).',
        security: [{ bearer: [] }],
        body: mintAwsBody,
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
      if (!config.BROKER_DATA_ROLE_ARN)
        throw new BrokerError('unavailable', 'this broker has no data role configured (BROKER_DATA_ROLE_ARN); it cannot mint AWS credentials');
      const body = request.body ?? undefined;
      const signedIntent = body && SIGNED_INTENT_FIELDS.some((f) => body[f] !== undefined) ? await verifySignedIntent(request, body) : undefined;
      const requestId = randomBytes(16).toString('hex');
      const seal = await createSealKeyPair();
      const input: MintAwsRequest = {
        requestId,
        caller: callerOf(request),
        grantId: request.body?.grant_id,
        httpRequestId: request.id,
        durationSeconds: request.body?.duration_seconds ?? maxDuration,
        sealTo: seal.publicJwk,
        ...(signedIntent ? { signedIntent } : {}),
      };
      const minted = await openAws(
        seal.privateKey,
        await runMint(request, requestId, () =>
          temporal.workflow.execute<typeof mintAwsCredsWorkflow>('mintAwsCredsWorkflow', { ...startOptions(input, 'mint_aws_creds'), args: [input] }),
        ),
      );
      request.log.info({ flow: 'mint', kind: 'aws', request_id: requestId, wallet: minted.wallet }, 'AWS credentials minted');
      return minted;
    },
  );
}
