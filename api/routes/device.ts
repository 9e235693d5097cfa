import { randomBytes } from 'node:crypto';
import { WithStartWorkflowOperation } from '@temporalio/client';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { canonicalClientAddress, requesterNetwork } from '../../lib/client-address';
import { DEVICE_CODE_GRANT_TYPE, formatUserCode, newUserCode, normaliseUserCode, type DeviceTokenError } from '../../lib/device-code';
import { hmacHex } from '../../lib/digest';
import { BrokerError } from '../../lib/errors';
import { LOGIN_METHODS } from '../../lib/login-methods';
import { AkFlow, AkStage } from '../../lib/search-attributes';
import type { deviceAuthorizationWorkflow } from '../../workflows/device-authorization';
import {
  DEVICE_AUTHORIZATION_ID_PREFIX,
  deviceDecisionUpdate,
  deviceRequestQuery,
  deviceTokenPollUpdate,
  registerDeviceCodeUpdate,
  type DeviceAuthorizationInput,
  type RegisterDeviceCodeResult,
} from '../../workflows/device-authorization.definitions';
import { NEVER_A_RECENT_LOGIN, REAUTH_SECONDS, requireRecentLogin } from '../../services/sessions';
import { refuseFromAnotherOrigin } from '../fetch-metadata';
import { toBrokerError } from '../flow-errors';
import { issueSession } from '../session-issue';
import { commonErrors, errorBody, loginSessionSchema } from '../schemas';

/** A device_code: the request id (a keyed digest of the user code), a dot, 43 base64url characters of secret. */
const DEVICE_CODE_RE = /^([0-9a-f]{32})\.([\w-]{43})$/;
/** RFC 6749 §3.3 scope: space-separated tokens of printable ASCII other than `"` and `\`. */
const SCOPE_RE = /^[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*$/;
const CLIENT_ID_RE = /^[\w.:-]{1,64}$/;
/** Draws of a user code before giving up: a collision with an open request is ~1 in 2^34 per open request. */
const MAX_CODE_DRAWS = 4;
/**
 * Wrong or expired user codes one account, and one network, may try per minute (RFC 8628 §5.1:
 * the user code's entropy holds only with a limit on guesses). At 10 a minute an account needs
 * ~2^31 minutes to cover half of the 20^8 codes.
 */
const VERIFY_FAILURES_PER_ACCOUNT = 10;
const VERIFY_FAILURES_PER_NETWORK = 30;
/** The grace after expiry during which the device still hears expired_token (then invalid_grant). */
const GRACE_SECONDS = 600;
/** …and at least this many intervals (10 s at the default 5), so a device polling at its interval hears expired_token before the request is gone. */
const MIN_GRACE_INTERVALS = 2;

const noSuchCode = () => new BrokerError('not_found', 'no request is waiting for this code: check it, or ask for a new one on the device');
const tokenErrorBody = z.object({ error: z.string(), error_description: z.string().optional(), interval: z.number().int().optional() });

/**
 * The device authorization grant (RFC 8628, docs/device-flow.md): one deviceAuthorizationWorkflow
 * per request, found by the keyed digest of its user code. POST /v1/device/code opens it (§3.1,
 * §3.2); a signed-in person looks at it and approves or denies it at /v1/device/verify (§3.3, the
 * console's page); the device polls POST /v1/device/token (§3.4, §3.5).
 */
export default async function deviceRoutes(appBase: FastifyInstance) {
  const app = appBase.withTypeProvider<ZodTypeProvider>();
  const { config, secrets, temporal } = app.deps;
  const now = () => app.deps.now?.() ?? Date.now();
  const settings: DeviceAuthorizationInput['settings'] = {
    ttlSeconds: config.BROKER_DEVICE_CODE_TTL_SECONDS,
    intervalSeconds: config.BROKER_DEVICE_POLL_INTERVAL_SECONDS,
    graceSeconds: Math.min(GRACE_SECONDS, Math.max(MIN_GRACE_INTERVALS * config.BROKER_DEVICE_POLL_INTERVAL_SECONDS, config.BROKER_DEVICE_CODE_TTL_SECONDS)),
  };
  const verificationUri = `${config.publicUrl}/console/device`;

  const codePerIp = app.requestLimit({ name: 'device_code:ip', max: config.BROKER_RATE_LIMIT_IP_PER_MINUTE, windowMs: 60_000 });
  // A device polls every `interval` seconds; several devices may share an address.
  const tokenPerIp = app.requestLimit({ name: 'device_token:ip', max: config.BROKER_RATE_LIMIT_IP_PER_MINUTE * 5, windowMs: 60_000 });
  const verifyPerIp = app.requestLimit({ name: 'device_verify:ip', max: config.BROKER_RATE_LIMIT_IP_PER_MINUTE, windowMs: 60_000 });
  const failuresPerAccount = app.requestLimit({ name: 'device_verify_failures:account', max: VERIFY_FAILURES_PER_ACCOUNT, windowMs: 60_000 });
  const failuresPerNetwork = app.requestLimit({ name: 'device_verify_failures:network', max: VERIFY_FAILURES_PER_NETWORK, windowMs: 60_000 });

  const requestIdOf = (userCode: string): string => hmacHex(secrets.hmacSecret, 'device-user-code', userCode).slice(0, 32);
  const workflowIdOf = (requestId: string): string => DEVICE_AUTHORIZATION_ID_PREFIX + requestId;
  const deviceCodeDigest = (requestId: string, secret: string): string => hmacHex(secrets.hmacSecret, 'device-code', workflowIdOf(requestId), secret);

  /** The client's network (IPv4 /24, IPv6 /48, lib/client-address.ts): what the guess limits count by and the verify page shows. */
  const networkOf = (request: FastifyRequest): string => requesterNetwork(canonicalClientAddress(request));
  /** The keys a verify attempt counts against: the bearer's account and the client's network. */
  const guessKeys = (request: FastifyRequest) => {
    const auth = request.auth;
    if (!auth) throw new BrokerError('unauthorized', 'not authenticated');
    return { account: `account:${auth.omniAccount}`, network: `network:${networkOf(request)}` };
  };
  /**
   * Holds a guess's place in both limits before anything is looked up (refused, 429, when the
   * account's or the network's wrong guesses and guesses in flight already reach its limit); the
   * returned settle counts it as wrong, or frees the place.
   */
  async function reserveGuess(request: FastifyRequest): Promise<(wrong: boolean) => Promise<void>> {
    const keys = guessKeys(request);
    const account = await failuresPerAccount.reserve(request, keys.account);
    let network: (wrong: boolean) => Promise<void>;
    try {
      network = await failuresPerNetwork.reserve(request, keys.network);
    } catch (e) {
      await account(false);
      throw e;
    }
    return async (wrong) => {
      try {
        await account(wrong);
      } finally {
        await network(wrong);
      }
    };
  }

  /**
   * Runs a verify step for what the person typed: a code that is no code, unknown or expired all
   * answer the same 404 (a stranger learns nothing about which) and count as a guess.
   */
  async function onRequest<T>(request: FastifyRequest, typed: string, call: (workflowId: string, userCode: string) => Promise<T>): Promise<T> {
    await verifyPerIp(request);
    const settle = await reserveGuess(request);
    let wrong = false;
    try {
      const userCode = normaliseUserCode(typed);
      if (userCode === undefined) {
        wrong = true;
        throw noSuchCode();
      }
      try {
        return await call(workflowIdOf(requestIdOf(userCode)), userCode);
      } catch (e) {
        const err = toBrokerError(e, noSuchCode());
        if (err instanceof BrokerError && (err.kind === 'not_found' || err.kind === 'expired')) {
          wrong = true;
          throw noSuchCode();
        }
        throw err;
      }
    } finally {
      await settle(wrong);
    }
  }

  app.post(
    '/v1/device/code',
    {
      schema: {
        tags: ['device'],
        summary: 'Device authorization request (RFC 8628 §3.1): a device_code to poll with and a user_code for the person',
        description:
          'No authentication. The device shows user_code and verification_uri (or a QR code of verification_uri_complete) and polls ' +
          'POST /v1/device/token every `interval` seconds until the person approves at the console or the code expires (expires_in seconds). ' +
          "The requester's network (IPv4 /24, IPv6 /48) is kept with the request and shown to the person who looks it up. " +
          'A browser request that a page of another origin made (Sec-Fetch-Site cross-site or same-site) is 403: a device asks for its code itself.',
        body: z
          .object({
            client_id: z.string().regex(CLIENT_ID_RE, 'client_id must be 1–64 characters of letters, digits, _ . : -').optional(),
            scope: z
              .string()
              .max(256, 'scope is longer than 256 characters')
              .regex(SCOPE_RE, 'scope must be space-separated tokens (RFC 6749 §3.3)')
              .optional(),
          })
          .strict()
          .nullish(),
        response: {
          200: z.object({
            device_code: z.string(),
            user_code: z.string(),
            verification_uri: z.string(),
            verification_uri_complete: z.string(),
            expires_in: z.number().int(),
            interval: z.number().int(),
          }),
          403: errorBody,
          ...commonErrors,
        },
      },
    },
    async (request) => {
      // A page of another site can make each visitor's browser send this bodiless POST (no preflight),
      // opening a request that lives its TTL; it could never read the answer (no CORS). The CLI sends no
      // Sec-Fetch-* headers, the console's own fetch sends same-origin.
      refuseFromAnotherOrigin(request, 'a device code', 'a device asks for its code itself (agentkeys init device)');
      await codePerIp(request);
      const { client_id, scope } = request.body ?? {};
      const requestedAt = Math.floor(now() / 1000);
      // Kept in the flow's input only, which the payload codec encrypts: never in its id, search attributes or logs.
      const network = networkOf(request);
      for (let draw = 1; ; draw++) {
        const userCode = newUserCode();
        const requestId = requestIdOf(userCode);
        const secret = randomBytes(32).toString('base64url');
        const digest = deviceCodeDigest(requestId, secret);
        const input: DeviceAuthorizationInput = {
          device_code_digest: digest,
          ...(client_id !== undefined ? { client_id } : {}),
          ...(scope !== undefined ? { scope } : {}),
          ...(network !== 'unknown' ? { requester_network: network } : {}),
          requested_at: requestedAt,
          expires_at: requestedAt + settings.ttlSeconds,
          settings,
        };
        const startWorkflowOperation = new WithStartWorkflowOperation<typeof deviceAuthorizationWorkflow>('deviceAuthorizationWorkflow', {
          workflowId: workflowIdOf(requestId),
          taskQueue: config.BROKER_TASK_QUEUE,
          args: [input],
          // An open request holding this code answers the Update with a conflict (another digest): draw again.
          workflowIdConflictPolicy: 'USE_EXISTING',
          ...LOGIN_METHODS.device.metadata,
          typedSearchAttributes: [
            { key: AkFlow, value: LOGIN_METHODS.device.flow },
            { key: AkStage, value: 'waiting_decision' },
          ],
        });
        let opened: RegisterDeviceCodeResult;
        try {
          opened = await app.driveFlow(() =>
            temporal.workflow.executeUpdateWithStart(registerDeviceCodeUpdate, { args: [{ device_code_digest: digest }], startWorkflowOperation }),
          );
        } catch (e) {
          if (e instanceof BrokerError && e.kind === 'conflict' && draw < MAX_CODE_DRAWS) continue;
          throw e;
        }
        request.log.info({ flow: 'device_authorization', request_id: requestId }, 'device code issued');
        const shown = formatUserCode(userCode);
        return {
          device_code: `${requestId}.${secret}`,
          user_code: shown,
          verification_uri: verificationUri,
          verification_uri_complete: `${verificationUri}?user_code=${encodeURIComponent(shown)}`,
          expires_in: Math.max(0, opened.expires_at - Math.floor(now() / 1000)),
          interval: opened.interval,
        };
      }
    },
  );

  /** The token endpoint's refusals, in the RFC 6749 §5.2 / RFC 8628 §3.5 shape. */
  const tokenError = (reply: FastifyReply, error: DeviceTokenError, description: string, interval?: number) =>
    reply.code(400).send({ error, error_description: description, ...(interval !== undefined ? { interval } : {}) });

  app.post(
    '/v1/device/token',
    {
      attachValidation: true,
      schema: {
        tags: ['device'],
        summary: 'Device access token request (RFC 8628 §3.4): the session once the person approved',
        description:
          'Answers 400 {"error": authorization_pending | slow_down | access_denied | expired_token | invalid_grant} (§3.5) until the ' +
          'session is ready, then 200 with the session (the same body as every login), once; a later poll is invalid_grant. ' +
          "Polling faster than `interval` answers slow_down and adds 5 s to this device's interval.",
        body: z.object({ device_code: z.string().max(256), grant_type: z.string().max(128) }),
        response: { 200: loginSessionSchema, 400: tokenErrorBody, 429: errorBody, 500: errorBody, 503: errorBody },
      },
    },
    async (request, reply) => {
      await tokenPerIp(request);
      if (request.validationError)
        return tokenError(reply, 'invalid_request', 'the body must be {"device_code": "...", "grant_type": "' + DEVICE_CODE_GRANT_TYPE + '"}');
      const { device_code, grant_type } = request.body;
      if (grant_type !== DEVICE_CODE_GRANT_TYPE) return tokenError(reply, 'unsupported_grant_type', `grant_type must be ${DEVICE_CODE_GRANT_TYPE}`);
      const m = DEVICE_CODE_RE.exec(device_code);
      const unknown = () => tokenError(reply, 'invalid_grant', 'this device_code is not valid (unknown, already used, or ended)');
      if (!m) return unknown();
      const [, requestId = '', secret = ''] = m;
      let r;
      try {
        r = await app.driveFlow(() =>
          temporal.workflow
            .getHandle(workflowIdOf(requestId))
            .executeUpdate(deviceTokenPollUpdate, { args: [{ device_code_digest: deviceCodeDigest(requestId, secret) }] }),
        );
      } catch (e) {
        const err = toBrokerError(e);
        if (err instanceof BrokerError && (err.kind === 'expired' || err.kind === 'forbidden' || err.kind === 'not_found')) return unknown();
        // Past its run's poll budget (workflows/poll-pacing.ts), refused unrecorded while nobody has
        // answered: that is what the device hears, at its interval (slow_down would make it add 5 s each time).
        if (err instanceof BrokerError && err.kind === 'rate_limited') {
          const wait = typeof err.extra.body?.retry_after === 'number' ? err.extra.body.retry_after : undefined;
          return tokenError(reply, 'authorization_pending', err.message, wait);
        }
        throw err;
      }
      switch (r.status) {
        case 'ready':
          request.log.info({ flow: 'device_authorization', request_id: requestId, omni_account: r.session.omni_account }, 'device session handed out');
          return reply.code(200).send(await issueSession(app.deps, r.session));
        case 'authorization_pending':
          return tokenError(reply, 'authorization_pending', 'the person has not answered yet', r.interval);
        case 'slow_down':
          return tokenError(reply, 'slow_down', `polling too fast: wait ${r.interval} s between polls`, r.interval);
        case 'access_denied':
          return tokenError(reply, 'access_denied', 'the request was denied');
        case 'expired_token':
          return tokenError(reply, 'expired_token', 'the device_code has expired; ask for a new one');
        default:
          return unknown();
      }
    },
  );

  const viewSchema = z.object({
    user_code: z.string(),
    status: z.literal('pending'),
    requested_at: z.number().int().describe('unix seconds'),
    expires_at: z.number().int().describe('unix seconds'),
    client_id: z.string().optional().describe('what the device said it is: not verified'),
    scope: z.string().optional().describe('what the device said it asks for: not verified'),
    requester_network: z
      .string()
      .optional()
      .describe('the network POST /v1/device/code came from (IPv4 /24, IPv6 /48); absent for a request made before the broker recorded it'),
    approver_network: z.string().describe("the network of this request (the person's own)"),
    same_network: z.boolean().describe('requester_network is approver_network; false when requester_network is absent'),
  });

  app.get(
    '/v1/device/verify',
    {
      preHandler: app.requireAuth,
      schema: {
        tags: ['device'],
        summary: 'What a user code asks for, before the person approves it (RFC 8628 §3.3)',
        description:
          'Any session. 404 for a code that is unknown, expired or malformed (all alike), 409 once answered. Wrong codes count against per-account and per-network limits (§5.1). ' +
          'client_id and scope are what the device claimed, unverified; requester_network is where the code was asked for from, ' +
          "same_network whether that is the caller's own network (RFC 8628 §5.4: a code from another network may be a phisher's).",
        querystring: z.object({ user_code: z.string().max(64) }),
        response: { 200: viewSchema, 404: errorBody, 409: errorBody, ...commonErrors },
      },
    },
    async (request) =>
      onRequest(request, request.query.user_code, async (workflowId, userCode) => {
        const view = await app.driveFlow(() => temporal.workflow.getHandle(workflowId).query(deviceRequestQuery), noSuchCode());
        if (view.status === 'expired') throw noSuchCode();
        if (view.status !== 'pending') throw new BrokerError('conflict', 'this code has already been answered');
        const approverNetwork = networkOf(request);
        return {
          user_code: formatUserCode(userCode),
          status: 'pending' as const,
          requested_at: view.requested_at,
          expires_at: view.expires_at,
          ...(view.client_id !== undefined ? { client_id: view.client_id } : {}),
          ...(view.scope !== undefined ? { scope: view.scope } : {}),
          // Absent for a request opened before the broker recorded the network: never "the same".
          ...(view.requester_network !== undefined ? { requester_network: view.requester_network } : {}),
          approver_network: approverNetwork,
          same_network: view.requester_network !== undefined && approverNetwork !== 'unknown' && view.requester_network === approverNetwork,
        };
      }),
  );

  app.post(
    '/v1/device/verify',
    {
      preHandler: app.requireAuth,
      schema: {
        tags: ['device'],
        summary: 'Approve or deny a device (RFC 8628 §3.3): the device gets a session of this account',
        description:
          `Approving needs a broker session whose login is at most ${REAUTH_SECONDS} s old (else 401 with reauthenticate: true, before the code is looked up; ` +
          `${NEVER_A_RECENT_LOGIN} 403); denying, any session.` +
          ' The first decision wins: a second (by anyone) is 409. 404 for a code that is unknown, expired or malformed. ' +
          'An approval records a login of this account (method device, its own session and audit row) that the device collects once.',
        body: z.object({ user_code: z.string().max(64), action: z.enum(['approve', 'deny'], 'action must be "approve" or "deny"') }),
        response: { 200: z.object({ status: z.enum(['approved', 'denied']) }), 403: errorBody, 404: errorBody, 409: errorBody, ...commonErrors },
      },
    },
    async (request) => {
      const auth = request.auth;
      if (!auth) throw new BrokerError('unauthorized', 'not authenticated');
      const { action } = request.body;
      // An approval signs a device in for the session's lifetime, out of reach of this bearer's logout:
      // only a recent login may approve (services/sessions.ts). Denying binds nothing and needs none.
      if (action === 'approve') await requireRecentLogin({ db: app.deps.db, now: app.deps.now }, auth, { what: 'approving a device', then: 'approve it' });
      return onRequest(request, request.body.user_code, async (workflowId) => {
        const r = await app.driveFlow(
          () => temporal.workflow.getHandle(workflowId).executeUpdate(deviceDecisionUpdate, { args: [{ action, omni_account: auth.omniAccount }] }),
          noSuchCode(),
        );
        request.log.info(
          { flow: 'device_authorization', request_id: workflowId.slice(DEVICE_AUTHORIZATION_ID_PREFIX.length), decision: r.status },
          'device request answered',
        );
        return r;
      });
    },
  );
}
