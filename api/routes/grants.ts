import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { appendAudit } from '../../db/audit';
import { findMainAddress, insertGrant, listGrantsOfAccount, revokeGrant, type GrantRow } from '../../db/grants';
import { withTransaction } from '../../db/pool';
import { canonicalJson } from '../../lib/audit-chain';
import { hmacHex } from '../../lib/digest';
import { BrokerError } from '../../lib/errors';
import { commonErrors, errorBody, grantIdSchema } from '../schemas';

/**
 * Grants (docs/contracts.md §6): the main account binds an agent wallet with a scope and an expiry.
 * Each change is one row plus its audit row in one transaction: a single-statement change with
 * no outside I/O, so it runs in the API rather than as a workflow.
 */

const evmAddress = z
  .string()
  .regex(/^0x[0-9a-fA-F]{40}$/, 'must be a 0x-prefixed 20-byte hex address')
  .transform((a) => a.toLowerCase())
  .refine((a) => !/^0x0{40}$/.test(a), 'must not be the zero address (nobody holds its key)');

const scopeItem = z.string().regex(/^[\x21-\x7e]{1,256}$/, 'scope entries are 1-256 printable characters without spaces');
const scopeSchema = z
  .object({
    services: z.array(scopeItem).max(64, 'at most 64 services').optional(),
    roles: z.array(scopeItem).max(64, 'at most 64 roles').optional(),
  })
  .strict();

const idempotencyKeySchema = z.string().regex(/^[\w.:-]{1,128}$/, 'Idempotency-Key must be 1-128 characters of [A-Za-z0-9_.:-]');

const createdGrant = z.object({
  grant_id: z.string(),
  main_address: z.string(),
  agent_address: z.string(),
  scope: scopeSchema,
  expires_at: z.number().int().describe('unix seconds'),
});

const listedGrant = createdGrant.extend({
  created_at: z.number().int(),
  revoked_at: z.number().int().nullable(),
  active: z.boolean(),
});

const unix = (d: Date): number => Math.floor(d.getTime() / 1000);

function scopeOf(g: GrantRow): z.infer<typeof scopeSchema> {
  const parsed = scopeSchema.safeParse(g.scope);
  return parsed.success ? parsed.data : {};
}

/** Whether a stored grant is the one this request asks for: a retry under an Idempotency-Key must ask for the same grant. */
function isSameGrantRequest(g: GrantRow, req: { agent_address: string; scope: z.infer<typeof scopeSchema>; expires_in: number }): boolean {
  return (
    g.agent_address === req.agent_address &&
    canonicalJson(scopeOf(g)) === canonicalJson(req.scope) &&
    g.expires_at.getTime() - g.created_at.getTime() === req.expires_in * 1000
  );
}

export default async function grantRoutes(appBase: FastifyInstance) {
  const app = appBase.withTypeProvider<ZodTypeProvider>();
  const { config, secrets, db } = app.deps;
  const now = () => app.deps.now?.() ?? Date.now();

  app.post(
    '/v1/grants',
    {
      preHandler: app.requireAuth,
      schema: {
        tags: ['grants'],
        summary: 'Bind an agent wallet to this (main) account',
        description:
          `expires_in: seconds, default ${config.BROKER_GRANT_DEFAULT_TTL_SECONDS}, at most ${config.BROKER_GRANT_MAX_TTL_SECONDS}. ` +
          'The main address is the account’s main EVM wallet. An Idempotency-Key header makes a retry answer the same grant.',
        security: [{ bearer: [] }],
        body: z.object({
          agent_address: evmAddress,
          scope: scopeSchema.optional(),
          expires_in: z.number().int().min(60, 'expires_in must be at least 60 seconds').max(config.BROKER_GRANT_MAX_TTL_SECONDS, `expires_in must be at most ${config.BROKER_GRANT_MAX_TTL_SECONDS} seconds`).optional(),
        }),
        response: { 201: createdGrant, 403: errorBody, 409: errorBody, ...commonErrors },
      },
    },
    async (request, reply) => {
      const auth = request.auth;
      if (!auth) throw new BrokerError('unauthorized', 'not authenticated');
      const mainAddress = auth.wallet?.toLowerCase() ?? (await findMainAddress(db, auth.omniAccount));
      if (!mainAddress) {
        throw new BrokerError('forbidden', 'this account has no main EVM wallet; log in with a wallet (or through the TEE with an EVM identity) to grant agents');
      }
      const { agent_address, scope = {}, expires_in = config.BROKER_GRANT_DEFAULT_TTL_SECONDS } = request.body;
      if (agent_address === mainAddress) throw new BrokerError('bad_request', 'agent_address must differ from the main address');
      const keyHeader = request.headers['idempotency-key'];
      let grantId = `grt_${randomUUID().replace(/-/g, '')}`;
      if (keyHeader !== undefined) {
        const parsed = idempotencyKeySchema.safeParse(keyHeader);
        if (!parsed.success) throw new BrokerError('bad_request', parsed.error.issues[0]?.message ?? 'bad Idempotency-Key');
        grantId = `grt_${hmacHex(secrets.hmacSecret, 'grant-id', auth.omniAccount, parsed.data).slice(0, 32)}`;
      }
      const createdAt = new Date(now());
      const expiresAt = new Date(createdAt.getTime() + expires_in * 1000);
      const result = await withTransaction(db, async (tx) => {
        const inserted = await insertGrant(tx, { grantId, mainAccount: auth.omniAccount, mainAddress, agentAddress: agent_address, scope, createdAt, expiresAt });
        if (inserted?.created) {
          await appendAudit(tx, {
            event: 'grant.create',
            outcome: 'ok',
            omniAccount: auth.omniAccount,
            requestId: request.id,
            idemKey: `grant.create:${grantId}`,
            details: { grant_id: grantId, main_address: mainAddress, agent_address, scope, expires_at: unix(expiresAt), via: auth.kind },
          });
        }
        return inserted;
      });
      if (!result) throw new BrokerError('conflict', 'this Idempotency-Key was already used for another grant');
      if (!result.created && !isSameGrantRequest(result.grant, { agent_address, scope, expires_in })) {
        throw new BrokerError('conflict', 'this Idempotency-Key was already used for a different grant request (agent_address, scope or expires_in); use a new key');
      }
      const g = result.grant;
      return reply.code(201).send({ grant_id: g.grant_id, main_address: g.main_address, agent_address: g.agent_address, scope: scopeOf(g), expires_at: unix(g.expires_at) });
    },
  );

  app.get(
    '/v1/grants',
    {
      preHandler: app.requireAuth,
      schema: {
        tags: ['grants'],
        summary: 'This account’s grants, newest first (revoked and expired ones included)',
        security: [{ bearer: [] }],
        response: { 200: z.object({ grants: z.array(listedGrant) }), ...commonErrors },
      },
    },
    async (request) => {
      const auth = request.auth;
      if (!auth) throw new BrokerError('unauthorized', 'not authenticated');
      const t = now();
      const rows = await listGrantsOfAccount(db, auth.omniAccount);
      return {
        grants: rows.map((g) => ({
          grant_id: g.grant_id,
          main_address: g.main_address,
          agent_address: g.agent_address,
          scope: scopeOf(g),
          expires_at: unix(g.expires_at),
          created_at: unix(g.created_at),
          revoked_at: g.revoked_at ? unix(g.revoked_at) : null,
          active: g.revoked_at === null && g.expires_at.getTime() > t,
        })),
      };
    },
  );

  app.delete(
    '/v1/grants/:grant_id',
    {
      preHandler: app.requireAuth,
      schema: {
        tags: ['grants'],
        summary: 'Revoke a grant of this account (204 again if it already is)',
        security: [{ bearer: [] }],
        params: z.object({ grant_id: grantIdSchema }),
        response: { 204: z.null(), 404: errorBody, ...commonErrors },
      },
    },
    async (request, reply) => {
      const auth = request.auth;
      if (!auth) throw new BrokerError('unauthorized', 'not authenticated');
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
        }
        return r;
      });
      // Another account's grant answers exactly like a missing one.
      if (!revoked) throw new BrokerError('not_found', 'no such grant on this account');
      return reply.code(204).send(null);
    },
  );
}
