import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { listAuditForAccount } from '../../db/audit-query';
import { BrokerError } from '../../lib/errors';
import { commonErrors } from '../schemas';

const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 200;
/** The largest bigint: no seq (or `before` cursor) is above it. */
const MAX_SEQ = 9_223_372_036_854_775_807n;

const entrySchema = z.object({
  seq: z.string().describe('position in the chained log (a decimal string)'),
  at: z.string().describe('ISO-8601 time the row was written'),
  event: z.string().describe('e.g. login.email, mint.aws.intent, mint.aws, grant.create'),
  outcome: z.enum(['ok', 'denied', 'failed']),
  request_id: z.string().nullable(),
  details: z.record(z.string(), z.unknown()).describe('never a raw secret: bearers, JWTs and codes appear as HMACs'),
  prev_hash: z.string(),
  hash: z.string(),
});

/** GET /v1/audit: the caller's own audit rows (by OmniAccount), newest first, paged by seq. */
export default async function auditRoutes(appBase: FastifyInstance) {
  const app = appBase.withTypeProvider<ZodTypeProvider>();
  const { db } = app.deps;

  app.get(
    '/v1/audit',
    {
      onRequest: app.requireAuth,
      schema: {
        tags: ['audit'],
        summary: 'Your own audit rows, newest first',
        description: 'Pass the returned next_before as `before` to get the next (older) page.',
        security: [{ bearer: [] }],
        querystring: z.object({
          limit: z.coerce.number().int().min(1, 'limit must be at least 1').max(MAX_LIMIT, `limit must be at most ${MAX_LIMIT}`).default(DEFAULT_LIMIT),
          before: z
            .string()
            .regex(/^[1-9]\d{0,18}$/, 'before must be a seq from a previous page')
            // seq is a Postgres bigint: a larger cursor would fail in the query (a 500), not page.
            .refine((v) => !/^\d{19}$/.test(v) || BigInt(v) <= MAX_SEQ, 'before must be a seq from a previous page')
            .optional(),
        }),
        response: { 200: z.object({ entries: z.array(entrySchema), next_before: z.string().nullable() }), ...commonErrors },
      },
    },
    async (request) => {
      const auth = request.auth;
      if (!auth) throw new BrokerError('unauthorized', 'not authenticated');
      const { limit, before } = request.query;
      const rows = await listAuditForAccount(db, auth.omniAccount, { limit, beforeSeq: before });
      const entries = rows.map((r) => ({
        seq: r.seq,
        at: r.at,
        event: r.event,
        outcome: r.outcome,
        request_id: r.request_id,
        details: r.details,
        prev_hash: r.prev_hash,
        hash: r.hash,
      }));
      const last = rows[rows.length - 1];
      return { entries, next_before: rows.length === limit && last ? last.seq : null };
    },
  );
}
