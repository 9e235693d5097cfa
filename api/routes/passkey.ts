import { randomBytes } from 'node:crypto';
import { WithStartWorkflowOperation } from '@temporalio/client';
import { generateAuthenticationOptions, generateRegistrationOptions } from '@simplewebauthn/server';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { sha256Hex } from '../../lib/digest';
import { BrokerError } from '../../lib/errors';
import { LOGIN_METHODS } from '../../lib/login-methods';
import { omniAccountOf } from '../../lib/omni';
import { AkFlow, AkStage } from '../../lib/search-attributes';
import { accountForRegistration, listAccountPasskeys, MAX_PASSKEYS_PER_ACCOUNT, removePasskey } from '../../services/passkeys';
import { NEVER_A_RECENT_LOGIN, REAUTH_SECONDS, requireRecentLogin } from '../../services/sessions';
import type { AuthContext } from '../dependencies';
import type { passkeyCeremonyWorkflow } from '../../workflows/passkey-ceremony';
import {
  openPasskeyChallengeUpdate,
  PASSKEY_CEREMONY_ID_PREFIX,
  submitPasskeyResponseUpdate,
  type PasskeyCeremonyInput,
  type PasskeyCeremonyKind,
  type PasskeyCeremonyResult,
  type SubmitPasskeyResponseInput,
} from '../../workflows/passkey-ceremony.definitions';
import { refuseFromAnotherOrigin } from '../fetch-metadata';
import { issueSession } from '../session-issue';
import { commonErrors, errorBody, loginSessionSchema, refuseDeepNesting } from '../schemas';

/**
 * Passkey requests are small JSON: a credential response is a few hundred bytes to a few KiB, an
 * attestation with its certificates more. deploy/nginx lets these routes' bodies through at this size.
 */
export const PASSKEY_BODY_LIMIT_BYTES = 32 * 1024;
const BODY_LIMIT = PASSKEY_BODY_LIMIT_BYTES;
/**
 * A credential id in base64url, at most: 1366 characters, over the 1023 bytes the ceremony takes
 * (activities/passkey-ceremony.ts) and what migration 016 allows. The longest path parameter of any
 * route (`DELETE /v1/passkeys/:id`), so the router's own bound (api/app.ts) is this.
 */
export const PASSKEY_ID_MAX_CHARS = 1366;
const B64URL = /^[A-Za-z0-9_-]*$/;
const b64url = (max: number) => z.string().max(max).regex(B64URL, 'must be base64url');

/** The browser's PublicKeyCredential as JSON (what @simplewebauthn/browser or PublicKeyCredential.toJSON() gives). */
const credentialSchema = z
  .object({
    id: b64url(PASSKEY_ID_MAX_CHARS).min(16, 'id is too short'),
    rawId: b64url(PASSKEY_ID_MAX_CHARS),
    type: z.literal('public-key'),
    response: z
      .object({
        clientDataJSON: b64url(8192),
        attestationObject: b64url(16384).optional(),
        authenticatorData: b64url(8192).optional(),
        signature: b64url(1024).optional(),
        userHandle: b64url(128).nullish(),
        transports: z.array(z.string().max(32)).max(16).optional(),
      })
      .passthrough(),
    clientExtensionResults: z.record(z.string(), z.unknown()).default({}),
    authenticatorAttachment: z.string().max(32).optional(),
  })
  // It goes whole into the ceremony's Update: bounded nesting, or Temporal's payload converter overflows (a 500).
  .superRefine(refuseDeepNesting);
const nameSchema = z.string().trim().min(1).max(64).optional().describe('a name to tell this passkey apart, e.g. "Laptop"');
const passkeySchema = z.object({
  id: z.string(),
  name: z.string(),
  created_at: z.number().int(),
  last_used_at: z.number().int().nullable(),
  backup_eligible: z.boolean(),
  backed_up: z.boolean(),
  transports: z.array(z.string()),
  aaguid: z.string(),
});
const optionsAnswer = z.object({ request_id: z.string(), expires_at: z.number().int(), options: z.record(z.string(), z.unknown()) });

const unknownChallenge = () => new BrokerError('expired', 'this challenge is unknown or has expired; ask for a new one');

/** The challenge a response answers, read from its clientDataJSON: it names the ceremony's workflow. */
function challengeOf(clientDataJSON: string): string {
  let challenge: unknown;
  try {
    challenge = (JSON.parse(Buffer.from(clientDataJSON, 'base64url').toString('utf8')) as { challenge?: unknown }).challenge;
  } catch {
    challenge = undefined;
  }
  if (typeof challenge !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(challenge))
    throw new BrokerError('bad_request', 'body.response.response.clientDataJSON carries no challenge this broker issues');
  return challenge;
}

const requestIdOf = (challenge: string) => sha256Hex(challenge).slice(0, 32);

/**
 * Passkeys (WebAuthn, docs/passkeys.md): each challenge is one passkeyCeremonyWorkflow, opened by
 * an options route and answered once at the matching route. The routes validate, draw the
 * challenge and shape the options (@simplewebauthn/server); the workflow's activities verify and
 * record.
 */
export default async function passkeyRoutes(appBase: FastifyInstance) {
  const app = appBase.withTypeProvider<ZodTypeProvider>();
  const { config, db, temporal } = app.deps;
  const ttlSeconds = config.BROKER_PASSKEY_CHALLENGE_TTL_SECONDS;
  const rpID = config.passkeyRpId;
  // Each challenge is a workflow that lives its window (5 min by default; a wallet challenge's lives 45, hence its lower budget).
  const challengePerIp = app.requestLimit({ name: 'passkey_challenge:ip', max: config.BROKER_RATE_LIMIT_IP_PER_MINUTE, windowMs: 60_000 });
  const answerPerIp = app.requestLimit({ name: 'passkey_answer:ip', max: config.BROKER_RATE_LIMIT_IP_PER_MINUTE, windowMs: 60_000 });

  /** Opens a ceremony for `challenge` (base64url, as the options carry it) and answers the options with its id and expiry. */
  async function open(kind: PasskeyCeremonyKind, challenge: string, options: object, extra: { omniAccount?: string; userHandle?: string } = {}) {
    const requestId = requestIdOf(challenge);
    const input: PasskeyCeremonyInput = { kind, challenge, rpId: rpID, origins: config.passkeyOrigins, settings: { ttlSeconds }, ...extra };
    const startWorkflowOperation = new WithStartWorkflowOperation<typeof passkeyCeremonyWorkflow>(LOGIN_METHODS.passkey.workflowType, {
      workflowId: PASSKEY_CEREMONY_ID_PREFIX + requestId,
      taskQueue: config.BROKER_TASK_QUEUE,
      args: [input],
      workflowIdConflictPolicy: 'USE_EXISTING',
      ...LOGIN_METHODS.passkey.metadata,
      typedSearchAttributes: [
        { key: AkFlow, value: LOGIN_METHODS.passkey.flow },
        { key: AkStage, value: 'started' },
      ],
    });
    const issued = await app.driveFlow(() => temporal.workflow.executeUpdateWithStart(openPasskeyChallengeUpdate, { startWorkflowOperation }));
    return { ...issued, options: options as Record<string, unknown> };
  }

  /** Sends a response to the ceremony its challenge names. */
  async function answer(body: z.infer<typeof credentialSchema>, submission: Omit<SubmitPasskeyResponseInput, 'response'>): Promise<PasskeyCeremonyResult> {
    const handle = temporal.workflow.getHandle(PASSKEY_CEREMONY_ID_PREFIX + requestIdOf(challengeOf(body.response.clientDataJSON)));
    return app.driveFlow(() => handle.executeUpdate(submitPasskeyResponseUpdate, { args: [{ ...submission, response: body }] }), unknownChallenge());
  }

  const bearer = (request: FastifyRequest): AuthContext => {
    if (!request.auth) throw new BrokerError('unauthorized', 'not authenticated');
    return request.auth;
  };
  const account = (request: FastifyRequest): string => bearer(request).omniAccount;
  const registrationOptions = (userHandle: string, userName: string, exclude: string[] = []) =>
    generateRegistrationOptions({
      rpName: config.BROKER_PASSKEY_RP_NAME,
      rpID,
      userID: Buffer.from(userHandle, 'base64url'),
      userName,
      challenge: randomBytes(32),
      timeout: ttlSeconds * 1000,
      attestationType: 'none',
      excludeCredentials: exclude.map((id) => ({ id })),
      authenticatorSelection: { residentKey: 'required', requireResidentKey: true, userVerification: 'required' },
    });

  app.post(
    '/v1/passkeys/registration/options',
    {
      preHandler: app.requireAuth,
      config: { loginStep: 'registration_options' },
      bodyLimit: BODY_LIMIT,
      schema: {
        tags: ['passkeys'],
        summary: 'Options to add a passkey to this account (navigator.credentials.create)',
        description:
          `A broker session whose login is at most ${REAUTH_SECONDS} s old (else 401 with reauthenticate: true); ${NEVER_A_RECENT_LOGIN} are 403. ` +
          `An account holds at most ${MAX_PASSKEYS_PER_ACCOUNT} passkeys: one that has them all is 409 (remove one first), no challenge opened. ` +
          `The challenge can be answered once, within ${ttlSeconds} s, at POST /v1/passkeys/registration.`,
        response: { 200: optionsAnswer, 403: errorBody, 409: errorBody, ...commonErrors },
      },
    },
    async (request) => {
      await challengePerIp(request);
      const omniAccount = account(request);
      // A passkey outlives every session: only a recent login may add one (services/sessions.ts).
      await requireRecentLogin({ db, now: app.deps.now }, bearer(request), { what: 'adding a passkey', then: 'add it' });
      const acct = await accountForRegistration({ db }, omniAccount);
      const userHandle = acct.userHandle ?? randomBytes(32).toString('base64url');
      const options = await registrationOptions(userHandle, acct.label, acct.credentialIds);
      return open('register', options.challenge, options, { omniAccount, userHandle });
    },
  );

  app.post(
    '/v1/passkeys/registration',
    {
      preHandler: app.requireAuth,
      config: { loginStep: 'registration' },
      bodyLimit: BODY_LIMIT,
      schema: {
        tags: ['passkeys'],
        summary: 'Add a passkey to this account (the answer to its registration options)',
        description:
          'Answers 201 with the passkey. 400 for a credential id under 16 or over 1023 bytes (the challenge used up); ' +
          '401 when the attestation does not verify (origin, rp id, user verification); 409 for a used challenge, ' +
          `a passkey already registered here or to another account, or an account that already holds ${MAX_PASSKEYS_PER_ACCOUNT} passkeys (nothing written); ` +
          '410 once the challenge expired.',
        body: z.object({ response: credentialSchema, name: nameSchema }),
        response: { 201: passkeySchema, 403: errorBody, 409: errorBody, 410: errorBody, ...commonErrors },
      },
    },
    async (request, reply) => {
      await answerPerIp(request);
      const r = await answer(request.body.response, {
        door: 'register',
        omniAccount: account(request),
        ...(request.body.name ? { name: request.body.name } : {}),
      });
      if (r.kind !== 'registered') throw new BrokerError('internal', 'the ceremony answered a session to a registration');
      request.log.info({ flow: 'passkey', omni_account: account(request) }, 'passkey registered');
      return reply.code(201).send(r.passkey);
    },
  );

  app.post(
    '/v1/session/passkey/options',
    {
      config: { loginStep: 'options' },
      bodyLimit: BODY_LIMIT,
      schema: {
        tags: ['session'],
        summary: 'Options to sign in with a passkey (navigator.credentials.get), or to sign up with one (mode "signup": navigator.credentials.create)',
        description:
          `Discoverable credentials, user verification required. The challenge can be answered once, within ${ttlSeconds} s, at POST /v1/session/passkey. ` +
          'A browser request that a page of another origin made (Sec-Fetch-Site cross-site or same-site) is 403: the API answers no other origin (no CORS), so only a page it serves can use the options.',
        body: z
          .object({ mode: z.enum(['login', 'signup']).default('login') })
          .strict()
          .nullish(),
        response: { 200: optionsAnswer, 403: errorBody, ...commonErrors },
      },
    },
    async (request) => {
      // Bodiless, so a page of another site can make each visitor's browser send it (no preflight),
      // opening a ceremony that lives its TTL; it could never read the options (no CORS).
      refuseFromAnotherOrigin(request, 'passkey options', "sign in from the broker's own pages");
      await challengePerIp(request);
      if ((request.body?.mode ?? 'login') === 'login') {
        const options = await generateAuthenticationOptions({
          rpID,
          challenge: randomBytes(32),
          timeout: ttlSeconds * 1000,
          userVerification: 'required',
          allowCredentials: [],
        });
        return open('login', options.challenge, options);
      }
      // A new account: its identity is the passkey's user handle, as the Heima TEE derives a passkey identity.
      const userHandle = randomBytes(32).toString('base64url');
      const omniAccount = omniAccountOf(config.BROKER_CLIENT_ID, { type: 'passkey', value: userHandle });
      const options = await registrationOptions(userHandle, `AgentKeys ${omniAccount.slice(0, 10)}`);
      return open('signup', options.challenge, options, { omniAccount, userHandle });
    },
  );

  app.post(
    '/v1/session/passkey',
    {
      config: { loginStep: 'login' },
      bodyLimit: BODY_LIMIT,
      schema: {
        tags: ['session'],
        summary: 'Sign in (or sign up) with a passkey: the answer to POST /v1/session/passkey/options',
        description:
          'The session body of every login, method passkey. 400 for a sign-up whose credential id is under 16 or over 1023 bytes; ' +
          '401 when the response does not verify (unknown passkey, origin, rp id, ' +
          'user verification, a counter that went backwards); 409 for a used challenge or a passkey already registered; 410 once the challenge expired.',
        body: z.object({ response: credentialSchema, name: nameSchema }),
        response: { 200: loginSessionSchema, 403: errorBody, 409: errorBody, 410: errorBody, ...commonErrors },
      },
    },
    async (request) => {
      await answerPerIp(request);
      const r = await answer(request.body.response, { door: 'session', ...(request.body.name ? { name: request.body.name } : {}) });
      if (r.kind !== 'session') throw new BrokerError('internal', 'the ceremony answered a registration to a sign-in');
      request.log.info({ flow: 'passkey', omni_account: r.session.omni_account }, 'passkey login succeeded');
      return issueSession(app.deps, r.session);
    },
  );

  app.get(
    '/v1/passkeys',
    {
      preHandler: app.requireAuth,
      config: { loginStep: 'list' },
      schema: {
        tags: ['passkeys'],
        summary: "This account's passkeys",
        description: `All of them, oldest first: an account holds at most ${MAX_PASSKEYS_PER_ACCOUNT}.`,
        response: { 200: z.object({ passkeys: z.array(passkeySchema) }), ...commonErrors },
      },
    },
    async (request) => ({ passkeys: await listAccountPasskeys({ db }, account(request)) }),
  );

  app.delete(
    '/v1/passkeys/:id',
    {
      preHandler: app.requireAuth,
      config: { loginStep: 'remove' },
      schema: {
        tags: ['passkeys'],
        summary: 'Remove one of this account’s passkeys',
        description:
          `A broker session whose login is at most ${REAUTH_SECONDS} s old (else 401 with reauthenticate: true, before the passkey is looked up); ` +
          `${NEVER_A_RECENT_LOGIN} are 403. ` +
          '204 when removed; 404 when this account has no passkey with this id (another account’s passkey answers the same); ' +
          '409 for the last passkey of an account whose identity is a passkey (it could never sign in again), nothing removed.',
        params: z.object({ id: b64url(PASSKEY_ID_MAX_CHARS) }),
        response: { 204: z.null(), 403: errorBody, 404: errorBody, 409: errorBody, ...commonErrors },
      },
    },
    async (request, reply) => {
      if (!(await removePasskey({ db, now: app.deps.now }, bearer(request), request.params.id, request.id)))
        throw new BrokerError('not_found', 'this account has no passkey with this id');
      return reply.code(204).send(null);
    },
  );
}
