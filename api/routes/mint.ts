import { randomBytes } from 'node:crypto';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure, TimeoutFailure } from '@temporalio/common';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { findActiveGrantForAgent } from '../../db/grants';
import { consumeProof } from '../../db/used-signatures';
import { accountTag, sha256Hex } from '../../lib/digest';
import { personalMessageDigest, recoverSigner } from '../../adapters/evm-signature';
import { MintIntentError, mintIntentSigningInput, parseIssuedAt } from '../../lib/mint-intent';
import { EVM_ADDRESS_RE, parseEoaSignature, SignatureFormatError } from '../../lib/wallet-message';
import { BrokerError } from '../../lib/errors';
import { AkAccount, AkFlow, AkStage } from '../../lib/search-attributes';
import { createSealKeyPair, unsealJson } from '../../lib/seal';
import { MINT_ID_PREFIX, MintActivityFailure, type MintCaller, type MintRequest, type SignedMintIntent } from '../../workflows/mint.definitions';
import type { mintWorkflow } from '../../workflows/mint';
import { MINT_TARGETS, type MintTarget } from '../../activities/mint-targets';
import { bodyRequired } from '../../activities/mint-targets/target';
import { commonErrors, errorBody, grantIdSchema, oneLineText } from '../schemas';
import { APPROVAL_REASON_MAX_LENGTH } from '../../lib/approvals';
import { approvalPendingBody, auditBearerHash, pendingAnswer } from './approvals';

/** The agent's stated reason for the holder (docs/approvals.md): one line, shown in the holder's terminal and console. */
const reasonSchema = z
  .string()
  .max(APPROVAL_REASON_MAX_LENGTH, `reason must be at most ${APPROVAL_REASON_MAX_LENGTH} characters`)
  .superRefine(oneLineText('reason'))
  .optional();

/** A mint that has not finished by then is abandoned (the caller gets `unavailable`). */
const MINT_TIMEOUT = '1 minute';
/** The v2 body's fields: any of them present makes the body a signed intent, which then needs all. */
const SIGNED_INTENT_FIELDS = ['request_id', 'issued_at', 'intent', 'auth'] as const;

/** The signed intent's fields (lib/mint-intent.ts), taken by a target that accepts one. */
const signedIntentShape = {
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
};
type SignedIntentBody = { [K in keyof typeof signedIntentShape]?: z.infer<(typeof signedIntentShape)[K]> };

/**
 * Credential minting (docs/contracts.md §4): one route per mint target (activities/mint-targets:
 * POST /v1/mint-oidc-jwt, /v1/mint-aws-creds, /v1/mint-gcp-token), each one run of the mint
 * workflow (mint/<request_id>) that authorises, audits, mints and audits again before anything is
 * returned. The route validates the body and the signed intent, and opens the sealed answer.
 * Bodies are optional where a target needs no field (bodyRequired); unknown fields (sent by older CLIs) are ignored.
 */
export default async function mintRoutes(appBase: FastifyInstance) {
  const app = appBase.withTypeProvider<ZodTypeProvider>();
  const { config, secrets, temporal, db } = app.deps;
  const now = app.deps.now ?? Date.now;
  const intentWindowMs = config.BROKER_MINT_INTENT_WINDOW_SECONDS * 1000;
  // One budget per account for every mint target, counted once the bearer is known (before the body is read),
  // and one per client address: accounts cost nothing to make, the token services' quota (STS, Google) is shared.
  const mintPerAccount = app.requestLimit({ name: 'mint:account', max: config.BROKER_RATE_LIMIT_MINT_PER_MINUTE, windowMs: 60_000 });
  const mintPerIp = app.requestLimit({ name: 'mint:ip', max: config.BROKER_RATE_LIMIT_MINT_PER_IP_PER_MINUTE, windowMs: 60_000 });
  // Approval requests opened from one client address: each is a flow that waits up to an hour for
  // the holder. Spent by every mint that may open one — a wallet's mint under an active grant with
  // an approval policy — before anything starts, so a refused mint opens nothing, a burst cannot
  // pass it together, and mints under grants without a policy (and every other caller) never meet it.
  const approvalOpensPerIp = app.requestLimit({
    name: 'approval_open:ip',
    max: config.BROKER_RATE_LIMIT_APPROVAL_OPEN_PER_IP_PER_MINUTE,
    windowMs: 60_000,
  });
  const limitMints = async (request: FastifyRequest) => {
    await mintPerAccount(request, request.auth?.omniAccount);
    await mintPerIp(request);
  };
  // Whether this mint spent the budget, told to the flow (MintRequest.approvalOpenCounted): the grant
  // read here may not be the one the mint activity finds tens of ms later (a newer grant revoked, or
  // one with a policy accepted, in between), and the activity opens a request only when this is true.
  const limitApprovalOpens = async (request: FastifyRequest, grantId: string | undefined): Promise<boolean> => {
    const wallet = request.auth?.wallet;
    if (!wallet || !(await findActiveGrantForAgent(db, wallet, grantId, new Date(now())))?.approval) return false;
    await approvalOpensPerIp(request);
    return true;
  };

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
      bearerHash: auditBearerHash(secrets.hmacSecret, request),
      accountTag: accountTag(secrets.hmacSecret, auth.omniAccount),
    };
  }

  const startOptions = (input: MintRequest, target: MintTarget) => ({
    workflowId: MINT_ID_PREFIX + input.requestId,
    staticSummary: target.summary,
    staticDetails: target.description,
    taskQueue: config.BROKER_TASK_QUEUE,
    workflowExecutionTimeout: MINT_TIMEOUT,
    // Only when a worker shares the client's connection (npm start); otherwise a normal start.
    requestEagerStart: app.deps.eagerWorkflowStart === true,
    typedSearchAttributes: [
      { key: AkFlow, value: 'mint' },
      { key: AkStage, value: 'started' },
      // callerOf has computed it; the fallback only satisfies the type (a workflow input may lack it).
      { key: AkAccount, value: input.caller.accountTag ?? accountTag(secrets.hmacSecret, input.caller.omniAccount) },
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
  async function verifySignedIntent(request: FastifyRequest, body: SignedIntentBody): Promise<SignedMintIntent> {
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

  const mintErrors = { ...commonErrors, 403: errorBody, 409: errorBody, 410: errorBody, 502: errorBody };

  // One route per target (activities/mint-targets): validate, run the one mint workflow, open its sealed answer.
  for (const target of MINT_TARGETS as readonly MintTarget[]) {
    const fieldsSchema = z.looseObject({
      grant_id: grantIdSchema.optional(),
      reason: reasonSchema,
      ...target.body(config),
      ...(target.signedIntent ? signedIntentShape : {}),
    });
    // A target with a required field (gcp's audience) needs its body: a missing or null one is a 400 as {} is.
    const body = bodyRequired(target, config) ? fieldsSchema : fieldsSchema.nullish();
    app.post(
      target.path,
      {
        onRequest: [app.requireAuth, limitMints],
        schema: {
          tags: ['mint'],
          summary: target.summary,
          description: `${target.description} Audited before it is returned. An agent wallet mints under an active grant of its main wallet (optionally the given grant_id).`,
          security: [{ bearer: [] }],
          body,
          response: { 200: target.response, 202: approvalPendingBody, ...mintErrors },
        },
      },
      async (request, reply) => {
        const why = target.unavailable?.(config);
        if (why) throw new BrokerError('unavailable', why);
        const fields = (request.body ?? {}) as Record<string, unknown> & SignedIntentBody;
        const params = target.params(fields, config);
        const approvalOpenCounted = await limitApprovalOpens(request, typeof fields.grant_id === 'string' ? fields.grant_id : undefined);
        const signedIntent =
          target.signedIntent && SIGNED_INTENT_FIELDS.some((f) => fields[f] !== undefined) ? await verifySignedIntent(request, fields) : undefined;
        const requestId = randomBytes(16).toString('hex');
        // One key pair per request: the secret comes back sealed to it, so the flow's history never holds it readable.
        const seal = await createSealKeyPair();
        const input: MintRequest = {
          requestId,
          target: target.name,
          params,
          caller: callerOf(request),
          grantId: typeof fields.grant_id === 'string' ? fields.grant_id : undefined,
          httpRequestId: request.id,
          sealTo: seal.publicJwk,
          approvalOpenCounted,
          ...(signedIntent ? { signedIntent } : {}),
          ...(typeof fields.reason === 'string' ? { reason: fields.reason } : {}),
        };
        const minted = await runMint(request, requestId, () =>
          temporal.workflow.execute<typeof mintWorkflow>('mintWorkflow', { ...startOptions(input, target), args: [input] }),
        );
        if ('pending' in minted) {
          request.log.info({ flow: 'mint', kind: target.name, request_id: requestId, approval_id: minted.pending.approval_id }, 'mint awaits approval');
          return reply.code(202).send(pendingAnswer(minted.pending));
        }
        const secret = await unsealJson<Record<string, string>>(seal.privateKey, minted.sealed);
        request.log.info({ flow: 'mint', kind: target.name, request_id: requestId, wallet: minted.wallet }, 'credential minted');
        return { ...secret, ...minted.public, expiration: minted.expiration, wallet: minted.wallet };
      },
    );
  }
}
