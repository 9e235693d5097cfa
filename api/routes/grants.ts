import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { createEvmSignatureVerifier } from '../../adapters/evm-signature';
import { appendAudit } from '../../db/audit';
import {
  endGrantByAgent,
  findGrant,
  findMainAddress,
  grantStatus,
  insertGrant,
  listGrantsForAgent,
  listGrantsOfAccount,
  markGrantAccepted,
  revokeGrant,
  type GrantRow,
  type GrantScope,
} from '../../db/grants';
import { withTransaction } from '../../db/pool';
import { canonicalJson } from '../../lib/audit-chain';
import { hmacHex } from '../../lib/digest';
import { BrokerError } from '../../lib/errors';
import { buildGrantAcceptanceMessage, GRANT_ACCEPT_PROOF_PURPOSE } from '../../lib/grant-acceptance';
import { grantScopeSchema } from '../../lib/grant-scope';
import { MAX_CONTRACT_SIGNATURE_BYTES } from '../../lib/wallet-message';
import type { AuthContext } from '../deps';
import { recordGrantKill, wakeKillSwitch } from '../kill-switch';
import { commonErrors, errorBody, grantIdSchema, idempotencyKeyOf } from '../schemas';

/**
 * Grants (docs/contracts.md §6, docs/mint.md): the main account offers an agent wallet a grant with a
 * scope and an expiry; the grant binds only once the agent wallet has signed its acceptance
 * (EIP-191, the text of lib/grant-acceptance.ts). Until then it is pending and inert. The agent
 * lists the grants that name it, declines a pending one, or leaves an accepted one; the main
 * account revokes. Each change is one row plus its audit row in one transaction: a
 * single-statement change with no outside I/O, so it runs in the API rather than as a workflow.
 */

const evmAddress = z
  .string()
  .regex(/^0x[0-9a-fA-F]{40}$/, 'must be a 0x-prefixed 20-byte hex address')
  .transform((a) => a.toLowerCase())
  .refine((a) => !/^0x0{40}$/.test(a), 'must not be the zero address (nobody holds its key)');

const STATUSES = ['pending', 'active', 'revoked', 'declined', 'left', 'expired'] as const;

const grantView = z.object({
  grant_id: z.string(),
  main_address: z.string(),
  agent_address: z.string(),
  scope: z.object({ services: z.array(z.string()).optional(), roles: z.array(z.string()).optional() }),
  expires_at: z.number().int().describe('unix seconds'),
  status: z.enum(STATUSES).describe('pending until the agent wallet accepts; only an active grant binds'),
  active: z.boolean(),
  created_at: z.number().int(),
  accepted_at: z.number().int().nullable(),
  revoked_at: z.number().int().nullable(),
  acceptance_message: z.string().optional().describe('while pending: the exact text the agent wallet signs (personal_sign) to accept'),
});
type GrantView = z.infer<typeof grantView>;

const LIST_MAX = 200;

const unix = (d: Date): number => Math.floor(d.getTime() / 1000);
const unixOrNull = (d: Date | null): number | null => (d ? unix(d) : null);

/** The scope as stored (rows from before the scope was checked may hold anything: kept as is, never widened). */
function storedScope(g: GrantRow): GrantScope {
  const strings = (v: unknown): string[] | undefined => (Array.isArray(v) ? v.map(String) : undefined);
  const raw = (g.scope ?? {}) as Record<string, unknown>;
  const scope: GrantScope = {};
  const services = strings(raw.services);
  const roles = strings(raw.roles);
  if (services) scope.services = services;
  if (roles) scope.roles = roles;
  return scope;
}

/** Whether a stored grant is the one this request asks for: a retry under an Idempotency-Key must ask for the same grant. */
function isSameGrantRequest(g: GrantRow, req: { agent_address: string; scope: GrantScope; expires_in: number }): boolean {
  return (
    g.agent_address === req.agent_address &&
    canonicalJson(storedScope(g)) === canonicalJson(req.scope) &&
    g.expires_at.getTime() - g.created_at.getTime() === req.expires_in * 1000
  );
}

export default async function grantRoutes(appBase: FastifyInstance) {
  const app = appBase.withTypeProvider<ZodTypeProvider>();
  const { config, secrets, db } = app.deps;
  const now = () => app.deps.now?.() ?? Date.now();
  const broker = new URL(config.publicUrl).host;
  const verifier = createEvmSignatureVerifier(config.BROKER_EVM_RPC_URL);
  const acceptPerIp = app.requestLimit({ name: 'grant_accept:ip', max: config.BROKER_RATE_LIMIT_IP_PER_MINUTE, windowMs: 60_000 });

  const acceptanceMessage = (g: GrantRow): string =>
    buildGrantAcceptanceMessage({
      broker,
      grantId: g.grant_id,
      mainAddress: g.main_address,
      agentAddress: g.agent_address,
      scope: storedScope(g),
      expiresAt: unix(g.expires_at),
    });

  function view(g: GrantRow): GrantView {
    const status = grantStatus(g, now());
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
      ...(status === 'pending' ? { acceptance_message: acceptanceMessage(g) } : {}),
    };
  }

  const authOf = (auth: AuthContext | undefined): AuthContext => {
    if (!auth) throw new BrokerError('unauthorized', 'not authenticated');
    return auth;
  };

  /** The EVM wallet the caller acts as an agent with: its wallet-login wallet, else its account's main wallet. */
  const callerWallet = async (auth: AuthContext): Promise<string | undefined> => auth.wallet?.toLowerCase() ?? (await findMainAddress(db, auth.omniAccount));

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
        }),
        response: { 200: grantView, 201: grantView, 403: errorBody, 409: errorBody, ...commonErrors },
      },
    },
    async (request, reply) => {
      const auth = authOf(request.auth);
      const mainAddress = auth.wallet?.toLowerCase() ?? (await findMainAddress(db, auth.omniAccount));
      if (!mainAddress) {
        throw new BrokerError(
          'forbidden',
          'this account has no main EVM wallet; log in with a wallet (or through the TEE with an EVM identity) to grant agents',
        );
      }
      const { agent_address, scope = {}, expires_in = config.BROKER_GRANT_DEFAULT_TTL_SECONDS } = request.body;
      if (agent_address === mainAddress) throw new BrokerError('bad_request', 'agent_address must differ from the main address');
      const idempotencyKey = idempotencyKeyOf(request);
      let grantId = `grt_${randomUUID().replace(/-/g, '')}`;
      if (idempotencyKey !== undefined) grantId = `grt_${hmacHex(secrets.hmacSecret, 'grant-id', auth.omniAccount, idempotencyKey).slice(0, 32)}`;
      const createdAt = new Date(now());
      const expiresAt = new Date(createdAt.getTime() + expires_in * 1000);
      const maxLive = config.BROKER_GRANTS_MAX_PER_ACCOUNT;
      const result = await withTransaction(db, async (tx) => {
        const r = await insertGrant(tx, {
          grantId,
          mainAccount: auth.omniAccount,
          mainAddress,
          agentAddress: agent_address,
          scope,
          createdAt,
          expiresAt,
          maxLive,
        });
        if (r.outcome === 'created') {
          await appendAudit(tx, {
            event: 'grant.create',
            outcome: 'ok',
            omniAccount: auth.omniAccount,
            requestId: request.id,
            idemKey: `grant.create:${grantId}`,
            details: { grant_id: grantId, main_address: mainAddress, agent_address, scope, expires_at: unix(expiresAt), status: 'pending', via: auth.kind },
          });
        }
        return r;
      });
      switch (result.outcome) {
        case 'foreign':
          throw new BrokerError('conflict', 'this Idempotency-Key was already used for another grant');
        case 'capped':
          throw new BrokerError(
            'conflict',
            `this account already holds ${result.live} live (pending or active) grants, the most allowed (BROKER_GRANTS_MAX_PER_ACCOUNT = ${maxLive}); revoke some first`,
            { body: { limit: maxLive } },
          );
        case 'existing':
          if (!isSameGrantRequest(result.grant, { agent_address, scope, expires_in })) {
            throw new BrokerError(
              'conflict',
              'this Idempotency-Key was already used for a different grant request (agent_address, scope or expires_in); use a new key',
            );
          }
          // A retry answers the grant as it is now (pending, active, revoked, ...), never a revived one.
          return reply.code(200).send(view(result.grant));
        case 'created':
          return reply.code(201).send(view(result.grant));
      }
    },
  );

  app.get(
    '/v1/grants',
    {
      preHandler: app.requireAuth,
      schema: {
        tags: ['grants'],
        summary: 'Grants of this account (role=main, default) or naming this wallet as agent (role=agent), newest first, every state included',
        description: `At most \`limit\` (1-${LIST_MAX}, default 100) grants. role=agent needs a session of the agent wallet (wallet login, or a TEE login with that EVM identity).`,
        security: [{ bearer: [] }],
        querystring: z.object({
          role: z.enum(['main', 'agent'], { error: () => 'role must be main or agent' }).default('main'),
          limit: z.coerce.number().int().min(1, 'limit must be at least 1').max(LIST_MAX, `limit must be at most ${LIST_MAX}`).default(100),
        }),
        response: { 200: z.object({ grants: z.array(grantView) }), 403: errorBody, ...commonErrors },
      },
    },
    async (request) => {
      const auth = authOf(request.auth);
      const { role, limit } = request.query;
      if (role === 'main') return { grants: (await listGrantsOfAccount(db, auth.omniAccount, limit)).map(view) };
      const wallet = await callerWallet(auth);
      if (!wallet) throw new BrokerError('forbidden', 'this session has no EVM wallet; log in with the agent wallet to list the grants that name it');
      return { grants: (await listGrantsForAgent(db, wallet, limit)).map(view) };
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
      const grant = await findGrant(db, grant_id);
      if (!grant) throw new BrokerError('not_found', 'no such grant');
      let check;
      try {
        check = await verifier.verify({ address: grant.agent_address, message: acceptanceMessage(grant), signature: request.body.signature });
      } catch (e) {
        throw new BrokerError('unavailable', `the contract-wallet signature could not be checked: ${(e as Error).message}`);
      }
      if (!check.valid) {
        if (check.malformed) throw new BrokerError('bad_request', `body.signature: ${check.reason}`);
        throw new BrokerError('unauthorized', "the signature was not made by the grant's agent wallet over the grant's acceptance text (acceptance_message)");
      }
      const proof = check;
      const accepted = await withTransaction(db, async (tx) => {
        const at = new Date(now());
        const row = await findGrant(tx, grant_id, { forUpdate: true });
        const status = row ? grantStatus(row, at.getTime()) : 'revoked';
        if (status === 'expired') throw new BrokerError('expired', 'this grant has expired; ask the main account for a new one');
        if (status !== 'pending')
          throw new BrokerError('conflict', `this grant is ${status}, not pending; only a pending grant can be accepted`, { body: { status } });
        const fresh = await tx.query(
          `INSERT INTO used_signatures (signature_hash, purpose, expires_at) VALUES ($1, $2, $3) ON CONFLICT (signature_hash) DO NOTHING`,
          [proof.replayKey, GRANT_ACCEPT_PROOF_PURPOSE, grant.expires_at],
        );
        if (fresh.rowCount === 0) throw new BrokerError('conflict', 'this signature has already been used');
        const g = await markGrantAccepted(tx, grant_id, at);
        if (!g) throw new BrokerError('conflict', 'this grant is no longer pending');
        await appendAudit(tx, {
          event: 'grant.accept',
          outcome: 'ok',
          omniAccount: g.main_account,
          requestId: request.id,
          idemKey: `grant.accept:${grant_id}`,
          details: { grant_id, main_address: g.main_address, agent_address: g.agent_address, signature_hash: proof.replayKey, via: proof.via },
        });
        return g;
      });
      request.log.info({ flow: 'grants', grant_id }, 'grant accepted by its agent');
      return view(accepted);
    },
  );

  /** The agent (by its session) declines a pending grant or, with `leave`, ends an accepted one too. */
  async function endByAgent(auth: AuthContext, grantId: string, requestId: string, leave: boolean) {
    const wallet = await callerWallet(auth);
    if (!wallet) return undefined;
    const at = new Date(now());
    return withTransaction(db, async (tx) => {
      const r = await endGrantByAgent(tx, grantId, wallet, at, { onlyPending: !leave });
      if (r?.changed) {
        await appendAudit(tx, {
          event: `grant.${r.changed === 'declined' ? 'decline' : 'leave'}`,
          outcome: 'ok',
          omniAccount: r.grant.main_account,
          requestId,
          idemKey: `grant.${r.changed}:${grantId}`,
          details: {
            grant_id: grantId,
            main_address: r.grant.main_address,
            agent_address: r.grant.agent_address,
            agent_account: auth.omniAccount,
            via: auth.kind,
          },
        });
      }
      return r;
    });
  }

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
      const auth = authOf(request.auth);
      const r = await endByAgent(auth, request.params.grant_id, request.id, false);
      if (!r) throw new BrokerError('not_found', 'no such grant names this wallet as its agent');
      const status = grantStatus(r.grant, now());
      if (!r.changed && status !== 'declined') {
        throw new BrokerError('conflict', `this grant is ${status}; only a pending grant can be declined (leave an accepted one with DELETE)`, {
          body: { status },
        });
      }
      return view(r.grant);
    },
  );

  app.delete(
    '/v1/grants/:grant_id',
    {
      preHandler: app.requireAuth,
      schema: {
        tags: ['grants'],
        summary: 'The main account revokes a grant, or its agent wallet leaves (or declines) it; 204 again if already done',
        security: [{ bearer: [] }],
        params: z.object({ grant_id: grantIdSchema }),
        response: { 204: z.null(), 404: errorBody, ...commonErrors },
      },
    },
    async (request, reply) => {
      const auth = authOf(request.auth);
      const { grant_id } = request.params;
      const revoked = await withTransaction(db, async (tx) => {
        const r = await revokeGrant(tx, grant_id, auth.omniAccount, new Date(now()));
        if (r?.changed) {
          await appendAudit(tx, {
            event: 'grant.revoke',
            outcome: 'ok',
            omniAccount: auth.omniAccount,
            requestId: request.id,
            idemKey: `grant.revoke:${grant_id}`,
            details: { grant_id, main_address: r.grant.main_address, agent_address: r.grant.agent_address, via: auth.kind },
          });
          await recordGrantKill(tx, config, r.grant, r.grant.revoked_at ?? new Date(now()), request.id);
        }
        return r;
      });
      if (revoked) {
        await wakeKillSwitch(app.deps, request.log);
        return reply.code(204).send(null);
      }
      // Not the owner: the grant's agent leaves it (declines it while pending).
      if (await endByAgent(auth, grant_id, request.id, true)) return reply.code(204).send(null);
      // Another account's grant answers exactly like a missing one.
      throw new BrokerError('not_found', 'no such grant on this account or naming this wallet');
    },
  );
}
