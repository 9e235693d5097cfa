/**
 * Grant routes. Checks here: the request's form (addresses, scope, expiry bounds, signature
 * length, Idempotency-Key) and a bearer; every rule of grants is services/grants.ts's.
 */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { createEvmSignatureVerifier } from '../../adapters/evm-signature';
import { GRANT_STATUSES, grantStatus, type GrantRow } from '../../db/grants';
import { BrokerError } from '../../lib/errors';
import { grantScopeSchema, MINT_TARGETS } from '../../activities/mint-targets';
import { APPROVAL_TIMEOUT_DEFAULT_SECONDS, APPROVAL_TIMEOUT_MAX_SECONDS } from '../../lib/approvals';
import { MAX_CONTRACT_SIGNATURE_BYTES, ZERO_ADDRESS } from '../../lib/wallet-message';
import { createGrantService, storedScope } from '../../services/grants';
import type { AuthContext } from '../dependencies';
import { wakeKillSwitch } from '../kill-switch';
import { commonErrors, errorBody, evmAddressSchema, grantIdSchema, idempotencyKeyOf } from '../schemas';

/**
 * Grants (docs/contracts.md §6, docs/mint.md): the main account offers an agent wallet a grant with a
 * scope and an expiry; the grant binds only once the agent wallet has signed its acceptance
 * (EIP-191, the text of lib/grant-acceptance.ts). Until then it is pending and inert. The agent
 * lists the grants that name it, declines a pending one, or leaves an accepted one; the main
 * account revokes. Each route checks the request's form and calls one function of
 * services/grants.ts, where every rule of grants is checked and each change is written with its
 * audit row; the route shapes the answer.
 */

const evmAddress = evmAddressSchema('agent_address').refine((a) => a !== ZERO_ADDRESS, 'must not be the zero address (nobody holds its key)');

/** The longest notify_email_proof taken: the longest bearer the API takes (api/plugins/auth.ts). */
const NOTIFY_EMAIL_PROOF_MAX_LENGTH = 8192;

/**
 * The approval policy of an offer (lib/approvals.ts): bounds checked here, its meaning in the mint
 * activity; whether notify_email is proven is services/grants.ts's.
 */
const approvalPolicyBody = (minTimeoutSeconds: number) =>
  z
    .object({
      mode: z.enum(['always', 'beyond'], 'approval.mode must be always or beyond'),
      max_duration_seconds: z.number().int().min(1, 'approval.max_duration_seconds must be at least 1').max(86_400).optional(),
      targets: z
        .array(z.enum(MINT_TARGETS.map((t) => t.name) as [string, ...string[]], 'approval.targets names mint targets (aws, oidc, gcp)'))
        .max(MINT_TARGETS.length)
        .optional(),
      timeout_seconds: z
        .number()
        .int()
        .min(minTimeoutSeconds, `approval.timeout_seconds must be at least ${minTimeoutSeconds}`)
        .max(APPROVAL_TIMEOUT_MAX_SECONDS, `approval.timeout_seconds must be at most ${APPROVAL_TIMEOUT_MAX_SECONDS}`)
        .default(APPROVAL_TIMEOUT_DEFAULT_SECONDS),
      notify_email: z.email('approval.notify_email must be an email address').max(254).optional(),
      // A broker session's access token (services/grants.ts checks it); never stored or logged.
      notify_email_proof: z.string().min(1).max(NOTIFY_EMAIL_PROOF_MAX_LENGTH, 'approval.notify_email_proof is too long').optional(),
    })
    .strict()
    .refine((p) => p.mode === 'always' || p.max_duration_seconds !== undefined || p.targets !== undefined, {
      message: 'approval.mode beyond needs a standing limit: max_duration_seconds or targets',
    })
    .refine((p) => p.notify_email_proof === undefined || p.notify_email !== undefined, {
      message: 'approval.notify_email_proof proves approval.notify_email: give the address too',
    });
const approvalPolicyView = z.object({
  mode: z.enum(['always', 'beyond']),
  max_duration_seconds: z.number().int().optional(),
  targets: z.array(z.string()).optional(),
  timeout_seconds: z.number().int(),
  notify_email: z.string().optional(),
  notify_email_proven_at: z.number().int().optional().describe('unix seconds: when notify_email was proven; without it the address is never mailed'),
});

const grantView = z.object({
  grant_id: z.string(),
  main_address: z.string(),
  agent_address: z.string(),
  scope: z.looseObject({ services: z.array(z.string()).optional(), roles: z.array(z.string()).optional() }),
  expires_at: z.number().int().describe('unix seconds'),
  status: z.enum(GRANT_STATUSES).describe('pending until the agent wallet accepts; only an active grant binds'),
  active: z.boolean(),
  created_at: z.number().int(),
  accepted_at: z.number().int().nullable(),
  revoked_at: z.number().int().nullable(),
  acceptance_message: z.string().optional().describe('while pending: the exact text the agent wallet signs (personal_sign) to accept'),
  approval: approvalPolicyView.optional().describe("when the grant's mints wait for the holder's decision (docs/approvals.md); absent: never"),
});
type GrantView = z.infer<typeof grantView>;

const LIST_MAX = 200;

/**
 * GET /v1/grants?status=: one or more states, comma-separated (`status=pending,active`) or the
 * parameter repeated (`status=pending&status=active`); an unknown state is a 400.
 */
const statusFilter = z
  .union([z.string(), z.array(z.string())])
  .transform((v) => [...new Set((Array.isArray(v) ? v : [v]).flatMap((s) => s.split(',')).map((s) => s.trim()))])
  .pipe(z.array(z.enum(GRANT_STATUSES, { error: (i) => `status ${JSON.stringify(i.input)} is unknown: one or more of ${GRANT_STATUSES.join(', ')}` })).min(1));

const unix = (d: Date): number => Math.floor(d.getTime() / 1000);
const unixOrNull = (d: Date | null): number | null => (d ? unix(d) : null);

export default async function grantRoutes(appBase: FastifyInstance) {
  const app = appBase.withTypeProvider<ZodTypeProvider>();
  const { config, secrets, db } = app.deps;
  const now = () => app.deps.now?.() ?? Date.now();
  const grants = createGrantService({ config, secrets, db, now, verifier: createEvmSignatureVerifier(config.BROKER_EVM_RPC_URL) });
  const acceptPerIp = app.requestLimit({ name: 'grant_accept:ip', max: config.BROKER_RATE_LIMIT_IP_PER_MINUTE, windowMs: 60_000 });
  // Its own budget beside agent_revoke:account (api/routes/agents.ts), under the same variable.
  const revokesPerAccount = app.requestLimit({ name: 'grant_revoke:account', max: config.BROKER_RATE_LIMIT_REVOKE_PER_MINUTE, windowMs: 60_000 });

  /** The grant as answered: its state at `atMs` (a listing's: the moment its filter was applied). */
  function view(g: GrantRow, atMs = now()): GrantView {
    const status = grantStatus(g, atMs);
    return {
      grant_id: g.grant_id,
      main_address: g.main_address,
      agent_address: g.agent_address,
      scope: storedScope(g),
      expires_at: unix(g.expires_at),
      status,
      active: status === 'active',
      created_at: unix(g.created_at),
      accepted_at: unixOrNull(g.accepted_at),
      revoked_at: unixOrNull(g.revoked_at),
      ...(status === 'pending' ? { acceptance_message: grants.acceptanceMessage(g) } : {}),
      ...(g.approval ? { approval: g.approval } : {}),
    };
  }

  const authOf = (auth: AuthContext | undefined): AuthContext => {
    if (!auth) throw new BrokerError('unauthorized', 'not authenticated');
    return auth;
  };

  app.post(
    '/v1/grants',
    {
      preHandler: app.requireAuth,
      schema: {
        tags: ['grants'],
        summary: 'Offer an agent wallet a grant of this (main) account; it binds once the agent accepts',
        description:
          `expires_in: seconds, default ${config.BROKER_GRANT_DEFAULT_TTL_SECONDS}, at most ${config.BROKER_GRANT_MAX_TTL_SECONDS}. ` +
          'The main address is the account’s main EVM wallet. The grant is `pending` (it binds nothing) until the agent wallet signs ' +
          '`acceptance_message` and sends it to POST /v1/grants/{grant_id}/accept. ' +
          `An account holds at most ${config.BROKER_GRANTS_MAX_PER_ACCOUNT} live (pending or active) grants (409 beyond). ` +
          "approval.notify_email is this account's own verified address, or comes with approval.notify_email_proof: the access token of a " +
          'live session of that address (an email-code or Google login); anything else is a 400 (docs/approvals.md). ' +
          'An Idempotency-Key header makes a retry answer the same grant as it is now (200), a key reused for another request is a 409.',
        security: [{ bearer: [] }],
        body: z.object({
          agent_address: evmAddress,
          scope: grantScopeSchema.optional(),
          expires_in: z
            .number()
            .int()
            .min(60, 'expires_in must be at least 60 seconds')
            .max(config.BROKER_GRANT_MAX_TTL_SECONDS, `expires_in must be at most ${config.BROKER_GRANT_MAX_TTL_SECONDS} seconds`)
            .optional(),
          approval: approvalPolicyBody(config.BROKER_APPROVAL_TIMEOUT_MIN_SECONDS).optional(),
        }),
        response: { 200: grantView, 201: grantView, 403: errorBody, 409: errorBody, ...commonErrors },
      },
    },
    async (request, reply) => {
      const auth = authOf(request.auth);
      const { agent_address, scope = {}, expires_in = config.BROKER_GRANT_DEFAULT_TTL_SECONDS, approval } = request.body;
      const { grant, created } = await grants.offer(
        auth,
        { agent_address, scope, expires_in, ...(approval ? { approval } : {}), idempotencyKey: idempotencyKeyOf(request) },
        request.id,
      );
      // A retry answers the grant as it is now (pending, active, revoked, ...), never a revived one.
      return reply.code(created ? 201 : 200).send(view(grant));
    },
  );

  app.get(
    '/v1/grants',
    {
      preHandler: app.requireAuth,
      schema: {
        tags: ['grants'],
        summary: 'Grants of this account (role=main, default) or naming this wallet as agent (role=agent), newest first; every state unless status filters',
        description:
          `At most \`limit\` (1-${LIST_MAX}, default 100) grants, newest first (created_at, then grant_id). ` +
          `\`status\`: only grants in one of these states, comma-separated or the parameter repeated (${GRANT_STATUSES.join(', ')}); an unknown state is a 400. ` +
          'Anyone can offer any wallet a grant, so an agent lists what it can act on with status=pending (offers) or status=active. ' +
          '`before`: a grant_id of this same listing, usually the last grant of the previous page; the answer holds only the grants after it ' +
          '(older, in this order), so pages never overlap or skip. A grant_id that is not in this listing (another account’s, or malformed) is a 400. ' +
          'The last page is one with fewer than `limit` grants. ' +
          'role=agent needs a session of the agent wallet (wallet login, or a TEE login with that EVM identity).',
        security: [{ bearer: [] }],
        querystring: z.object({
          role: z.enum(['main', 'agent'], { error: () => 'role must be main or agent' }).default('main'),
          limit: z.coerce.number().int().min(1, 'limit must be at least 1').max(LIST_MAX, `limit must be at most ${LIST_MAX}`).default(100),
          status: statusFilter.optional(),
          before: grantIdSchema.optional(),
        }),
        response: { 200: z.object({ grants: z.array(grantView) }), 403: errorBody, ...commonErrors },
      },
    },
    async (request) => {
      const auth = authOf(request.auth);
      const { role, limit, status, before } = request.query;
      const listed = await grants.list(auth, role, { limit, ...(status ? { statuses: status } : {}), ...(before ? { before } : {}) });
      return { grants: listed.grants.map((g) => view(g, listed.atMs)) };
    },
  );

  app.post(
    '/v1/grants/:grant_id/accept',
    {
      schema: {
        tags: ['grants'],
        summary: 'The agent wallet accepts a pending grant with its signature (no bearer needed)',
        description:
          'signature: EIP-191 personal_sign by the agent wallet over the grant’s acceptance_message (lib/grant-acceptance.ts; docs/mint.md). ' +
          'Each signature is accepted once. 409 when the grant is no longer pending, 410 when it has expired.',
        params: z.object({ grant_id: grantIdSchema }),
        body: z.object({ signature: z.string().max(2 + 2 * MAX_CONTRACT_SIGNATURE_BYTES, 'signature is too long') }),
        response: { 200: grantView, 404: errorBody, 409: errorBody, 410: errorBody, ...commonErrors },
      },
    },
    async (request) => {
      await acceptPerIp(request);
      const { grant_id } = request.params;
      const accepted = await grants.accept(grant_id, request.body.signature, request.id);
      request.log.info({ flow: 'grants', grant_id }, 'grant accepted by its agent');
      return view(accepted);
    },
  );

  app.post(
    '/v1/grants/:grant_id/decline',
    {
      preHandler: app.requireAuth,
      schema: {
        tags: ['grants'],
        summary: 'The agent wallet declines a pending grant that names it (200 again if it already did)',
        description: 'Bearer: a session of the agent wallet. An accepted grant is left with DELETE /v1/grants/{grant_id}.',
        security: [{ bearer: [] }],
        params: z.object({ grant_id: grantIdSchema }),
        response: { 200: grantView, 404: errorBody, 409: errorBody, ...commonErrors },
      },
    },
    async (request) => {
      return view(await grants.decline(authOf(request.auth), request.params.grant_id, request.id));
    },
  );

  app.delete(
    '/v1/grants/:grant_id',
    {
      preHandler: app.requireAuth,
      schema: {
        tags: ['grants'],
        summary: 'The main account revokes a grant, or its agent wallet leaves (or declines) it; 204 again if already done',
        description: `At most ${config.BROKER_RATE_LIMIT_REVOKE_PER_MINUTE} calls a minute per account, a leave or a 404 too (429 beyond).`,
        security: [{ bearer: [] }],
        params: z.object({ grant_id: grantIdSchema }),
        response: { 204: z.null(), 404: errorBody, ...commonErrors },
      },
    },
    async (request, reply) => {
      const auth = authOf(request.auth);
      // Counted before any work, a leave or a 404 too. A revocation wakes the kill switch workflow
      // even when repeated (that is how an entry whose wake-up failed is applied), and each wake-up
      // goes over every data role's policy at IAM, whose request quota is the AWS account's.
      await revokesPerAccount(request, auth.omniAccount);
      if ((await grants.revokeOrLeave(auth, request.params.grant_id, request.id)) === 'revoked') await wakeKillSwitch(app.deps, request.log);
      return reply.code(204).send(null);
    },
  );
}
