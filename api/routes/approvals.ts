/**
 * Approval of a mint (docs/approvals.md, docs/contracts.md "Approvals"). A mint under a grant that
 * asks for its holder's decision answers 202 with an approval id (api/routes/mint.ts); the agent
 * polls GET /v1/approvals/{id} (CIBA poll mode) and the holder lists and decides here. Checks here:
 * the request's form and a bearer; who may see or decide which request, and with which proof, is
 * services/approvals.ts's; the wait, the one decision and the one hand-out are the approval flow's
 * (workflows/approval.ts).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { type ApprovalRow } from '../../db/approvals';
import { lowSCompactJws } from '../../lib/compact-jws';
import { hmacHex } from '../../lib/digest';
import { BrokerError, unavailable } from '../../lib/errors';
import { MAX_CONTRACT_SIGNATURE_BYTES } from '../../lib/wallet-message';
import { createSealKeyPair, unsealJson } from '../../lib/seal';
import { createApprovalService, type ApprovalService } from '../../services/approvals';
import { NEVER_A_RECENT_LOGIN } from '../../services/sessions';
import { APPROVAL_ID_PREFIX, approvalDecisionUpdate, approvalPollUpdate, type ApprovalOpened } from '../../workflows/approval.definitions';
import type { AuthContext } from '../dependencies';
import { bearerToken } from '../plugins/auth';
import { commonErrors, errorBody } from '../schemas';

const approvalIdSchema = z.string().regex(/^apr_[0-9a-f]{32}$/, 'approval_id is malformed (expected apr_ and 32 lower-case hex digits)');
const LIST_MAX = 100;
/** The refusals of a poll and of a decision: denied (or not allowed), unknown, already decided or handed out, expired. */
const refusals = { 403: errorBody, 404: errorBody, 409: errorBody, 410: errorBody, ...commonErrors };
const unix = (d: Date): number => Math.floor(d.getTime() / 1000);

/** The 202 of a mint that waits for approval (and the poll's pending answers). */
export const approvalPendingBody = z.object({
  approval_id: z.string(),
  status: z.enum(['pending', 'slow_down']),
  expires_at: z.number().int().describe('unix seconds: no decision after this'),
  interval: z.number().int().describe('seconds to wait between polls; slow_down adds 5'),
});

/** The audit log's handle on the request's bearer (an HMAC of it, never the bearer): a mint's and a hand-out's rows name their caller by it. */
export const auditBearerHash = (hmacSecret: Buffer, request: FastifyRequest): string =>
  // Over the low-s form (lib/compact-jws.ts): an ES256 bearer's twin (r, n − s) verifies too, and is the same bearer.
  hmacHex(hmacSecret, 'audit-bearer', lowSCompactJws(bearerToken(request))).slice(0, 32);

export const pendingAnswer = (o: ApprovalOpened) => ({
  approval_id: o.approval_id,
  status: 'pending' as const,
  expires_at: o.expires_at,
  interval: o.interval,
});

const typedDataView = z.object({
  domain: z.record(z.string(), z.unknown()),
  types: z.record(z.string(), z.unknown()),
  primaryType: z.string(),
  message: z.record(z.string(), z.unknown()),
});

const requestView = z.object({
  approval_id: z.string(),
  status: z.enum(['pending', 'approved', 'denied', 'expired', 'collected']),
  grant_id: z.string(),
  agent_address: z.string(),
  main_address: z.string(),
  target: z.string().describe('the mint target: aws, oidc, gcp'),
  params: z.record(z.string(), z.union([z.string(), z.number()])).describe('what the mint asks for, e.g. duration_seconds'),
  scope: z.record(z.string(), z.unknown()).describe("the grant's scope the mint runs under (roles, services)"),
  reason: z.string().nullable().describe("the agent's stated reason"),
  request_hash: z.string().describe("0x + sha256 of the request's canonical JSON: what the EIP-712 signature covers"),
  requested_at: z.number().int(),
  expires_at: z.number().int(),
  decided_at: z.number().int().nullable(),
  sign: z
    .object({ approve: typedDataView, deny: typedDataView })
    .optional()
    .describe('while pending: the EIP-712 typed data a wallet holder signs (eth_signTypedData_v4) for each decision'),
});

function ownerView(approvals: ApprovalService, row: ApprovalRow, nowMs: number): z.infer<typeof requestView> {
  const expired = row.status === 'expired' || (row.status === 'pending' && row.expires_at.getTime() <= nowMs);
  const status = expired ? 'expired' : row.status === 'approved' && row.collected_at ? 'collected' : row.status;
  return {
    approval_id: row.approval_id,
    status,
    grant_id: row.grant_id,
    agent_address: row.agent_address,
    main_address: row.main_address,
    target: row.target,
    params: row.params,
    scope: row.scope,
    reason: row.reason,
    request_hash: row.request_hash,
    requested_at: unix(row.requested_at),
    expires_at: unix(row.expires_at),
    decided_at: row.decided_at ? unix(row.decided_at) : null,
    ...(status === 'pending' ? { sign: { approve: approvals.typedData(row, 'approve'), deny: approvals.typedData(row, 'deny') } } : {}),
  };
}

export default async function approvalRoutes(appBase: FastifyInstance) {
  const app = appBase.withTypeProvider<ZodTypeProvider>();
  const { config, db, temporal, secrets } = app.deps;
  const now = () => app.deps.now?.() ?? Date.now();
  const approvals = createApprovalService({ config, db, now });
  const pollsPerAccount = app.requestLimit({ name: 'approval_poll:account', max: config.BROKER_RATE_LIMIT_MINT_PER_MINUTE * 4, windowMs: 60_000 });

  const authOf = (request: FastifyRequest): AuthContext => {
    if (!request.auth) throw new BrokerError('unauthorized', 'not authenticated');
    return request.auth;
  };
  const handle = (approvalId: string) => temporal.workflow.getHandle(APPROVAL_ID_PREFIX + approvalId);

  /** After the flow has ended, the row says how the request ended (to its agent). */
  function endedAnswer(row: ApprovalRow): never {
    if (row.status === 'denied') throw new BrokerError('forbidden', 'the holder denied this request; nothing was minted');
    if (row.status === 'approved' && row.collected_at) throw new BrokerError('conflict', 'this approved request was already handed out (once)');
    throw new BrokerError('expired', 'this approval request has expired (no decision in time, or the approved credential was not collected in time)');
  }

  app.get(
    '/v1/approvals',
    {
      preHandler: app.requireAuth,
      schema: {
        tags: ['approvals'],
        summary: "Pending approval requests of this account's grants (role=owner), oldest first",
        security: [{ bearer: [] }],
        querystring: z.object({
          role: z.enum(['owner'], { error: () => 'role must be owner' }).default('owner'),
          limit: z.coerce.number().int().min(1, 'limit must be at least 1').max(LIST_MAX, `limit must be at most ${LIST_MAX}`).default(50),
        }),
        response: { 200: z.object({ approvals: z.array(requestView) }), ...commonErrors },
      },
    },
    async (request) => {
      const auth = authOf(request);
      const rows = await approvals.listPending(auth.omniAccount, request.query.limit);
      return { approvals: rows.map((r) => ownerView(approvals, r, now())) };
    },
  );

  app.get(
    '/v1/approvals/:approval_id',
    {
      preHandler: app.requireAuth,
      schema: {
        tags: ['approvals'],
        summary: 'The agent polls its request (CIBA poll mode); the holder reads it with what it would sign',
        description:
          'The agent that asked: 200 {status: pending | slow_down, interval, expires_at} while undecided (slow_down: it polled faster than ' +
          'interval, which grows by 5 s), 200 {status: approved, ...the credential} once (sealed to this request until it leaves the broker), ' +
          '403 denied, 410 expired, 409 already handed out, 429 (retry_after) past 1,500 polls while undecided. The holder: the request as listed. ' +
          'Anyone else: 404.',
        security: [{ bearer: [] }],
        params: z.object({ approval_id: approvalIdSchema }),
        response: {
          200: z.union([approvalPendingBody, requestView, z.looseObject({ approval_id: z.string(), status: z.literal('approved') })]),
          ...refusals,
        },
      },
    },
    async (request) => {
      const auth = authOf(request);
      const { approval_id } = request.params;
      await pollsPerAccount(request, auth.omniAccount);
      const asAgent = await approvals.ofAgent(auth.omniAccount, approval_id).catch((e: unknown) => {
        if (e instanceof BrokerError && e.kind === 'not_found') return undefined;
        throw e;
      });
      if (!asAgent) return ownerView(approvals, await approvals.ofOwner(auth.omniAccount, approval_id), now());
      const seal = await createSealKeyPair();
      const gone = new BrokerError('not_found', 'the approval flow has ended');
      let r;
      try {
        r = await app.driveFlow(
          () =>
            handle(approval_id).executeUpdate(approvalPollUpdate, {
              // Who polls: an approved request's hand-out is recorded as this session's, this request's.
              args: [
                {
                  agent_account: auth.omniAccount,
                  sealTo: seal.publicJwk,
                  bearer_hash: auditBearerHash(secrets.hmacSecret, request),
                  http_request_id: request.id,
                },
              ],
            }),
          gone,
        );
      } catch (e) {
        if (e === gone) endedAnswer(await approvals.ofAgent(auth.omniAccount, approval_id));
        throw e;
      }
      switch (r.status) {
        case 'approved': {
          const secret = await unsealJson<Record<string, string>>(seal.privateKey, r.minted.sealed);
          request.log.info({ flow: 'approval', approval_id, wallet: r.minted.wallet }, 'approved credential handed out');
          return { approval_id, status: 'approved' as const, ...secret, ...r.minted.public, expiration: r.minted.expiration, wallet: r.minted.wallet };
        }
        case 'pending':
        case 'slow_down':
          return { approval_id, status: r.status, expires_at: r.expires_at, interval: r.interval };
        case 'collected':
          throw new BrokerError('conflict', 'this approved request was already handed out (once)');
        case 'denied':
          throw new BrokerError('forbidden', 'the holder denied this request; nothing was minted');
        default:
          throw new BrokerError('expired', 'this approval request has expired; nothing was minted');
      }
    },
  );

  app.post(
    '/v1/approvals/:approval_id/decision',
    {
      preHandler: app.requireAuth,
      schema: {
        tags: ['approvals'],
        summary: "The holder approves or denies a request of its grant's agent",
        description:
          "signature: the EIP-712 signature (eth_signTypedData_v4) by the grant's main wallet over the request's typed data for this " +
          'decision (GET /v1/approvals/{id} `sign`); required of a wallet-login session. Without it: a broker session whose login is at most ' +
          `300 s old and was made on this device (${NEVER_A_RECENT_LOGIN} are 403).` +
          ' The first decision wins: later ones are 409; after expires_at 410; another account’s request 404;' +
          ' 503 with Retry-After in the moment between a request being listed and its flow starting (send it again).',
        security: [{ bearer: [] }],
        params: z.object({ approval_id: approvalIdSchema }),
        body: z
          .object({
            decision: z.enum(['approve', 'deny'], 'decision must be approve or deny'),
            signature: z
              .string()
              .max(2 + 2 * MAX_CONTRACT_SIGNATURE_BYTES, 'signature is too long')
              .optional(),
          })
          .strict(),
        response: {
          200: z.object({ approval_id: z.string(), status: z.enum(['approved', 'denied']), decided_at: z.number().int() }),
          ...refusals,
        },
      },
    },
    async (request) => {
      const auth = authOf(request);
      const { approval_id } = request.params;
      const { decision, signature } = request.body;
      const checked = await approvals.checkDecision(auth, approval_id, decision, signature);
      // The row is pending and unexpired (checkDecision): no flow for it yet means the mint that
      // opened it has committed the row and not yet started the flow, a matter of milliseconds.
      const r = await app.driveFlow(
        () => handle(approval_id).executeUpdate(approvalDecisionUpdate, { args: [{ ...checked, http_request_id: request.id }] }),
        unavailable('this approval request is still being opened; nothing was decided: send the decision again in a moment'),
      );
      request.log.info({ flow: 'approval', approval_id, decision: r.status }, 'approval request decided');
      return { approval_id, ...r };
    },
  );
}
