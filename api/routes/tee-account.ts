import { randomUUID } from 'node:crypto';
import { WithStartWorkflowOperation, type UpdateDefinition } from '@temporalio/client';
import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { isAgentBound } from '../../db/grants';
import { countWalletSlots, findWalletRequest, MAX_WALLET_INDEX, requestedSlot, walletRequestText } from '../../db/tee';
import { isTeeTokenRevoked } from '../../db/sessions';
import { findUserByOmni } from '../../db/users';
import { parseSourceAllowList } from '../../lib/cidr-allow';
import { ClientAuthError, sanitizeClientAuth } from '../../lib/client-auth';
import { normalizeEvmAddress } from '../../lib/wallet-message';
import { accountTag, hmacHex, safeEqual } from '../../lib/digest';
import { BrokerError, callbackCode } from '../../lib/errors';
import { deriveOmniAccount, fitsIdentityString, IDENTITY_TYPES, IdentityError, omniAccountOf } from '../../lib/omni';
import { AkAccount, AkFlow, AkStage } from '../../lib/search-attributes';
import { LOGIN_METHODS } from '../../lib/login-methods';
import type { teeAccountWorkflow } from '../../workflows/tee-account';
import {
  addWalletSlotUpdate,
  recordHeimaLoginUpdate,
  TEE_ACCOUNT_ID_PREFIX,
  type JsonValue,
  type TeeAccountInput,
} from '../../workflows/tee-account.definitions';
import type { TeeTokenClaims } from '../dependencies';
import { bearerToken, teeTokenDigest } from '../plugins/auth';
import { idempotencyKeyOf } from '../schemas';

/**
 * The TEE → broker callbacks (docs/contracts.md §3): the `pumpx_api` surface the Heima TEE worker calls
 * for `client_id = agentkeys`. Every answer is the envelope {"code","message","data"}: code 10000
 * only on success, otherwise the HTTP status × 100 (40000 bad request, 40100 unauthorized, 40300
 * forbidden, 40400 not found, 41300 body too large, 50000 internal, 50300 unavailable).
 */

export const CALLBACK_OK_CODE = 10000;

const envelope = <T extends z.ZodType>(data: T) => z.object({ code: z.number().int(), message: z.string(), data });
const failureEnvelope = envelope(z.null()).describe('failure: code = HTTP status × 100');
const failures = {
  400: failureEnvelope,
  401: failureEnvelope,
  403: failureEnvelope,
  404: failureEnvelope,
  409: failureEnvelope,
  413: failureEnvelope,
  429: failureEnvelope,
  500: failureEnvelope,
  503: failureEnvelope,
};
const ok = <T>(data: T) => ({ code: CALLBACK_OK_CODE, message: 'OK', data });

/**
 * The TEE's `UserId` enum: {"type": <snake_case variant>, "value": ...}, every variant of the upstream
 * versions (github in the executor's `UserId`, apple in the newest parachain `Identity`).
 */
const userIdSchema = z.object({
  type: z.enum(IDENTITY_TYPES, { error: () => `userId.type must be one of ${IDENTITY_TYPES.join(', ')}` }),
  value: z.string().min(1, 'userId.value is empty').max(1024, 'userId.value is too long'),
});

/** PostHeimaLoginBody, camelCase as upstream serialises it. Unknown fields are ignored. */
const postHeimaLoginBody = z.object({
  userId: userIdSchema,
  clientId: z.string().min(1).max(64),
  clientAuth: z
    .object({ type: z.string().min(1).max(64) })
    .catchall(z.unknown())
    .nullable()
    .optional(),
  heimaLoginSuccess: z.boolean(),
});

const addWalletBody = z
  .object({
    wallet_index: z
      .number()
      .int()
      .min(0, 'wallet_index must be 0 or more')
      .max(MAX_WALLET_INDEX, `wallet_index must be at most ${MAX_WALLET_INDEX}`)
      .optional(),
  })
  .nullish();

interface TeeAccess {
  claims: TeeTokenClaims;
  /** Keyed digest of the bearer: the callback's idempotency key. */
  tokenDigest: string;
}

function validationMessage(err: FastifyError): string {
  if (!hasZodFastifySchemaValidationErrors(err)) return err.message;
  const first = err.validation[0];
  const where = `${err.validationContext ?? 'request'}${first?.instancePath ? first.instancePath.replace(/\//g, '.') : ''}`;
  return `${where}: ${first?.message ?? 'invalid'}`;
}

export default async function teeCallbackRoutes(appBase: FastifyInstance) {
  const app = appBase.withTypeProvider<ZodTypeProvider>();
  const { config, secrets, db, temporal } = app.deps;
  const allowList = parseSourceAllowList(config.BROKER_TEE_CALLBACK_ALLOW);
  const settings: TeeAccountInput['settings'] = {
    idleSeconds: config.BROKER_TEE_ACCOUNT_IDLE_SECONDS,
    maxUpdatesPerRun: config.BROKER_TEE_ACCOUNT_MAX_UPDATES,
  };
  const access = new WeakMap<FastifyRequest, TeeAccess>();
  // Identical callbacks in flight in this process share one workflow call.
  const inFlight = new Map<string, Promise<unknown>>();

  // This surface answers in its own envelope, never {"error","message"}.
  app.setErrorHandler((err: FastifyError | BrokerError | Error, request, reply) => {
    let status = 500;
    let message = 'internal error; the broker logged the details';
    if (err instanceof BrokerError) {
      status = err.status;
      message = err.message;
      for (const [k, v] of Object.entries(err.extra.headers ?? {})) void reply.header(k, v);
    } else {
      const fe = err as FastifyError;
      if (hasZodFastifySchemaValidationErrors(fe)) {
        status = 400;
        message = validationMessage(fe);
      } else if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
        status = 413;
        message = 'request body is too large';
      } else if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
        status = fe.statusCode;
        message = fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' ? 'send a JSON body (Content-Type: application/json) or none' : fe.message;
      }
    }
    if (status >= 500 && !(err instanceof BrokerError)) request.log.error({ err }, 'unhandled error in a TEE callback');
    return reply.code(status).send({ code: callbackCode(status), message, data: null });
  });

  // add_wallet arrives with no body and no Content-Type; a JSON Content-Type with an empty body is accepted too.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') {
      done(null, undefined);
      return;
    }
    try {
      done(null, JSON.parse(text));
    } catch {
      done(new BrokerError('bad_request', 'body is not valid JSON'), undefined);
    }
  });

  /** preValidation of the authenticated callbacks: a TEE access JWT, verified with the configured key. */
  async function requireTeeAccess(request: FastifyRequest): Promise<void> {
    const verifier = app.deps.teeVerifier;
    if (!verifier) throw new BrokerError('unavailable', 'TEE callbacks are off: no TEE key is configured (BROKER_TEE_JWT_PUBLIC_KEY or BROKER_TEE_JWKS_URL)');
    const token = bearerToken(request);
    let claims: TeeTokenClaims;
    try {
      claims = await verifier.verify(token);
    } catch (e) {
      throw new BrokerError('unauthorized', `TEE token refused: ${(e as Error).message}`);
    }
    if (claims.typ !== 'access') throw new BrokerError('unauthorized', `TEE token of typ "${claims.typ}" cannot be used here; send the access token`);
    if (await isTeeTokenRevoked(db, teeTokenDigest(secrets.hmacSecret, 'revoked-tee-token', token)))
      throw new BrokerError('unauthorized', 'this TEE token has been logged out');
    access.set(request, { claims, tokenDigest: teeTokenDigest(secrets.hmacSecret, 'tee-token', token) });
  }

  /** ClientAuth as stored (lib/client-auth.ts): known fields, secrets and unknown fields digested; too deep is a 400. */
  function storedClientAuth(clientAuth: { type: string; [key: string]: unknown } | null | undefined): JsonValue {
    try {
      return sanitizeClientAuth(secrets.hmacSecret, clientAuth);
    } catch (e) {
      if (e instanceof ClientAuthError) throw new BrokerError('bad_request', e.message);
      throw e;
    }
  }

  function teeAccessOf(request: FastifyRequest): TeeAccess {
    const a = access.get(request);
    if (!a) throw new BrokerError('unauthorized', 'not authenticated');
    return a;
  }

  /** onRequest of the unauthenticated callbacks: only sources on BROKER_TEE_CALLBACK_ALLOW. */
  async function requireAllowedSource(request: FastifyRequest): Promise<void> {
    if (!allowList.allows(request.ip))
      throw new BrokerError('forbidden', 'this callback is served only to the TEE worker (source not on BROKER_TEE_CALLBACK_ALLOW)');
  }

  /** Update-with-Start on the account's bookkeeping workflow; retried when it meets a run that is just completing. */
  async function driveAccount<Ret, Arg>(omniAccount: string, update: UpdateDefinition<Ret, [Arg]>, arg: Arg): Promise<Ret> {
    const runClosed = new BrokerError('unavailable', 'the account workflow was closing; retry');
    const tag = accountTag(secrets.hmacSecret, omniAccount);
    for (let attempt = 1; ; attempt += 1) {
      const startWorkflowOperation = new WithStartWorkflowOperation<typeof teeAccountWorkflow>('teeAccountWorkflow', {
        workflowId: TEE_ACCOUNT_ID_PREFIX + tag,
        taskQueue: config.BROKER_TASK_QUEUE,
        args: [{ omniAccount, settings }],
        workflowIdConflictPolicy: 'USE_EXISTING',
        ...LOGIN_METHODS.tee.metadata,
        typedSearchAttributes: [
          { key: AkFlow, value: LOGIN_METHODS.tee.flow },
          { key: AkAccount, value: tag },
          { key: AkStage, value: 'started' },
        ],
      });
      try {
        return await app.driveFlow(() => temporal.workflow.executeUpdateWithStart(update, { args: [arg], startWorkflowOperation }), runClosed);
      } catch (e) {
        if (e !== runClosed || attempt >= 3) throw e;
      }
    }
  }

  function shared<T>(key: string, call: () => Promise<T>): Promise<T> {
    const existing = inFlight.get(key);
    if (existing) return existing as Promise<T>;
    const p = call().finally(() => inFlight.delete(key));
    inFlight.set(key, p);
    return p;
  }

  app.post(
    '/v3/account/post_heima_login',
    {
      config: { loginStep: 'login' },
      preValidation: requireTeeAccess,
      schema: {
        tags: ['tee'],
        summary: 'TEE callback after a successful Heima login (first-time user bookkeeping)',
        description: 'Bearer: the TEE access JWT of the account. `sub` must be the OmniAccount of `userId` under `clientId`. Idempotent per token.',
        security: [{ bearer: [] }],
        body: postHeimaLoginBody,
        response: { 200: envelope(z.object({ user_id: z.string() })), ...failures },
      },
    },
    async (request) => {
      const { claims, tokenDigest } = teeAccessOf(request);
      const body = request.body;
      if (body.clientId !== config.BROKER_CLIENT_ID) throw new BrokerError('bad_request', `clientId must be "${config.BROKER_CLIENT_ID}"`);
      if (!body.heimaLoginSuccess) throw new BrokerError('bad_request', 'heimaLoginSuccess is false; nothing was recorded');
      let omniAccount: string;
      try {
        // A value over 64 bytes is refused: the TEE derived the account of its first 64 bytes,
        // which may have been created for another value (lib/omni.ts, assertIdentityFits). The
        // 400 is what the TEE reads as a failed login: it answers -32161 (older builds -32041) and hands out no token.
        omniAccount = omniAccountOf(body.clientId, body.userId);
      } catch (e) {
        if (e instanceof IdentityError) throw new BrokerError('bad_request', `userId.value: ${e.message}`);
        throw e;
      }
      if (!safeEqual(omniAccount, claims.sub)) throw new BrokerError('forbidden', "the bearer's sub is not the OmniAccount of userId under clientId");
      const record = {
        clientId: body.clientId,
        identity: body.userId,
        clientAuth: storedClientAuth(body.clientAuth),
        tokenDigest,
        requestId: request.id,
      };
      const recorded = await shared(`login:${tokenDigest}`, () => driveAccount(omniAccount, recordHeimaLoginUpdate, record));
      request.log.info({ flow: 'tee_account', omni_account: omniAccount, first_login: recorded.first_login }, 'TEE login recorded');
      return ok({ user_id: recorded.user_id });
    },
  );

  // One budget per account across the route and its alias.
  const addWalletPerAccount = app.requestLimit({ name: 'add_wallet:account', max: config.BROKER_ADD_WALLET_PER_MINUTE, windowMs: 60_000 });
  for (const path of ['/v3/account/add_wallet', '/add_wallet']) {
    app.post(
      path,
      {
        preValidation: requireTeeAccess,
        schema: {
          tags: ['tee'],
          summary: 'TEE callback: record a wallet slot for the bearer’s account',
          description:
            'Empty body (no Content-Type) = the lowest free slot; `{"wallet_index":N}` = that slot, 0 to ' +
            `${MAX_WALLET_INDEX} (the same index twice is one slot). At most ${config.BROKER_WALLET_SLOTS_MAX} slots per account ` +
            `(BROKER_WALLET_SLOTS_MAX; a new one beyond is a 409) and ${config.BROKER_ADD_WALLET_PER_MINUTE} calls per account per minute (429). ` +
            'The TEE sends no address: the slot’s address stays empty. An `Idempotency-Key` header makes an empty-body call retry-safe; ' +
            'the same key with another request (another wallet_index, or none) is a 409.',
          security: [{ bearer: [] }],
          body: addWalletBody,
          response: { 200: envelope(z.object({})), ...failures },
          hide: path !== '/v3/account/add_wallet',
        },
      },
      async (request) => {
        const { claims } = teeAccessOf(request);
        const omniAccount = claims.sub;
        await addWalletPerAccount(request, omniAccount);
        const walletIndex = request.body?.wallet_index;
        const idempotencyKey = idempotencyKeyOf(request);
        let requestKey: string = randomUUID();
        let retry = false;
        if (idempotencyKey !== undefined) {
          requestKey = hmacHex(secrets.hmacSecret, 'tee-add-wallet', omniAccount, idempotencyKey);
          // Refused here without touching the workflow; the activity checks again under the account's lock.
          const earlier = await findWalletRequest(db, requestKey);
          if (earlier?.requested != null && earlier.requested !== requestedSlot(walletIndex)) {
            throw new BrokerError(
              'conflict',
              `this Idempotency-Key was already used for another add_wallet request (${walletRequestText(earlier.requested)}); use a new key`,
            );
          }
          retry = earlier !== undefined;
        }
        if (!(await findUserByOmni(db, omniAccount)))
          throw new BrokerError('not_found', 'unknown account: the TEE login callback (post_heima_login) must come first');
        const { slots, hasIndex } = await countWalletSlots(db, omniAccount, walletIndex);
        if (!retry && !hasIndex && slots >= config.BROKER_WALLET_SLOTS_MAX) {
          throw new BrokerError(
            'conflict',
            `this account already holds ${slots} wallet slots, the most allowed (BROKER_WALLET_SLOTS_MAX = ${config.BROKER_WALLET_SLOTS_MAX})`,
          );
        }
        // Only identical requests share a call: one key with two bodies must meet the activity's key check.
        const recorded = await shared(`wallet:${requestKey}:${requestedSlot(walletIndex)}`, () =>
          driveAccount(omniAccount, addWalletSlotUpdate, { requestKey, walletIndex, requestId: request.id }),
        );
        request.log.info(
          { flow: 'tee_account', omni_account: omniAccount, wallet_index: recorded.wallet_index, created: recorded.created },
          'TEE wallet slot recorded',
        );
        return ok({});
      },
    );
  }

  for (const path of ['/v3/account/get_account_user_id', '/get_account_user_id']) {
    app.get(
      path,
      {
        onRequest: requireAllowedSource,
        schema: {
          tags: ['tee'],
          summary: 'TEE callback: the user id of an email address (allow-listed sources only)',
          querystring: z.object({
            email: z
              .string()
              .trim()
              .max(254, 'email is too long')
              .pipe(z.email('email is not a valid address'))
              // Over 64 bytes the TEE's cut would name the account of another address.
              .refine(fitsIdentityString, 'email is longer than 64 bytes, which an OmniAccount cannot tell apart'),
          }),
          response: { 200: envelope(z.object({ userId: z.string().nullable() })), ...failures },
          hide: path !== '/v3/account/get_account_user_id',
        },
      },
      // Upstream reads `data.userId` and checks neither the HTTP status nor `code`
      // (pumpx client `get_account_user_id`): every failure therefore carries `data: null`, never a userId.
      async (request) => {
        const omniAccount = deriveOmniAccount(config.BROKER_CLIENT_ID, { type: 'email', value: request.query.email });
        const user = await findUserByOmni(db, omniAccount);
        return ok({ userId: user?.user_id ?? null });
      },
    );
  }

  // The patched TEE joins `v1/account/check_hyper_agent_address` to OE_AGENTKEYS_API_BASE_URL with
  // URL join rules, as its other AgentKeys calls (tee-patch/agentkeys-phase0.patch, the AgentKeys
  // client; a base with a path prefix ends in `/`), and sends X-Language: en; upstream's own wildmeta
  // client joins it with a leading `/` (`verify_hyperliquid_link.rs`). Either checks the HTTP
  // status only (`error_for_status`).
  //
  // "Bound" means the TEE may run any user operation the agent asks from the main wallet: only an
  // active grant that is unscoped and asks for no approval binds (db/grants.ts, isAgentBound).
  //
  // The addresses are the client's `ClientAuth::WildmetaHl` strings as the TEE got them
  // (`submit_user_op_with_auth.rs` @ 05ff5857: `agent_address` has passed the TEE's own hex parse
  // for the signature check, `main_address` is forwarded unread). Any spelling of an address is
  // answered; a string that is no address cannot be linked, and is answered so: 200 with
  // `isBound: false` (the TEE's "not linked", AUTH_VERIFICATION_FAILED) and the bad-request code
  // and a message in the envelope for anyone who reads them. A non-2xx would make the TEE report
  // a failed service call (EXTERNAL_API_ERROR) for what is a client's wrong address.
  app.post(
    '/v1/account/check_hyper_agent_address',
    {
      onRequest: requireAllowedSource,
      schema: {
        tags: ['tee'],
        summary:
          'TEE callback: is this agent wallet bound to this main wallet by an unscoped grant without approval policy that its agent accepted, live now? (allow-listed sources only)',
        body: z.object({
          main_address: z.string(),
          agent_address: z.string(),
          // Upstream passes `login_type as i32` (wildmeta client, verify_hyperliquid_link): any i32.
          login_type: z.number().int().min(-2_147_483_648).max(2_147_483_647).optional(),
        }),
        response: { 200: envelope(z.object({ isBound: z.boolean() })), ...failures },
      },
    },
    async (request) => {
      const main = normalizeEvmAddress(request.body.main_address);
      const agent = normalizeEvmAddress(request.body.agent_address);
      if (main === undefined || agent === undefined) {
        const which = main === undefined ? 'main_address' : 'agent_address';
        return {
          code: callbackCode(400),
          message: `${which} is not an EVM address (40 hex digits, 0x optional): it is linked to nothing`,
          data: { isBound: false },
        };
      }
      const at = new Date(app.deps.now?.() ?? Date.now());
      return ok({ isBound: await isAgentBound(db, main, agent, at) });
    },
  );
}
