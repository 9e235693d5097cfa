/**
 * The caller's audit rows, their inclusion proofs and the signed heads (docs/contracts.md §4/§5).
 * Checks here: the query's form and the bearer; rows are scoped to the caller's account by
 * db/audit-query.ts and db/audit-proof.ts.
 */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { listAuditForAccount, listMintsUnderGrantsOf } from '../../db/audit-query';
import { latestAuditHead } from '../../db/audit-heads';
import { buildAuditProof, MAX_PROOF_CHAIN } from '../../db/audit-proof';
import { auditProofSchema } from '../../lib/audit-proof';
import { BrokerError } from '../../lib/errors';
import { commonErrors, errorBody } from '../schemas';

const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 200;
/** GET /v1/audit/proof's 404: the same for a row of another account and a seq the log has not reached. */
const PROOF_NOT_FOUND = 'no audit row of yours has that seq';

/** The largest bigint: no seq (or `before` cursor) is above it. */
const MAX_SEQ = 9_223_372_036_854_775_807n;

const entrySchema = z.object({
  seq: z.string().describe('global position in the log (a decimal string; a cursor — may have gaps)'),
  shard: z.number().int().nullable().describe('the hash chain the row is in (all of one account are in one); null before the log was sharded'),
  shard_seq: z.string().nullable().describe("the row's position in its shard's chain, from 1 without gaps"),
  at: z.string().describe('ISO-8601 time the row was written'),
  event: z.string().describe('e.g. login.email, mint.aws.intent, mint.aws, grant.create'),
  outcome: z.enum(['ok', 'denied', 'failed']),
  request_id: z.string().nullable(),
  details: z.record(z.string(), z.unknown()).describe('never a raw secret: bearers, JWTs and codes appear as HMACs'),
  prev_hash: z.string(),
  hash: z.string(),
  omni_account: z.string().optional().describe('with of=grants: the agent account whose log holds the row'),
});

/** A seq from a page of GET /v1/audit: a positive Postgres bigint (a larger one would fail in the query — a 500 — not find nothing). */
const seqParam = (what: string) =>
  z
    .string()
    .regex(/^[1-9]\d{0,18}$/, `${what} must be a seq from GET /v1/audit`)
    .refine((v) => !/^\d{19}$/.test(v) || BigInt(v) <= MAX_SEQ, `${what} must be a seq from GET /v1/audit`);

/** GET /v1/audit: the caller's own audit rows (by OmniAccount), newest first, paged by seq. */
export default async function auditRoutes(appBase: FastifyInstance) {
  const app = appBase.withTypeProvider<ZodTypeProvider>();
  const { db, config, secrets } = app.deps;
  // Heads change at most once per anchor interval: let caches keep one that long (at most a minute).
  const headMaxAge = Math.min(config.BROKER_AUDIT_ANCHOR_SECONDS, 60);
  // A proof reads up to MAX_PROOF_CHAIN rows: per source and per account, so neither many accounts
  // from one place nor one bearer from many can keep the database busy with them.
  const proofPerIp = app.requestLimit({ name: 'audit_proof:ip', max: config.BROKER_RATE_LIMIT_IP_PER_MINUTE, windowMs: 60_000 });
  const proofPerAccount = app.requestLimit({ name: 'audit_proof:account', max: config.BROKER_RATE_LIMIT_IP_PER_MINUTE, windowMs: 60_000 });

  app.get(
    '/v1/audit',
    {
      onRequest: app.requireAuth,
      schema: {
        tags: ['audit'],
        summary: 'Your own audit rows, newest first; or the mints your agents made under your grants',
        description:
          'Pass the returned next_before as `before` to get the next (older) page. With of=grants: the mint rows ' +
          '(mint.<target>.intent and mint.<target>) your agents wrote under your grants — on their logs, each naming the ' +
          'grant in details.grant_id — with the agent account in omni_account; GET /v1/audit/proof proves them to you too.',
        security: [{ bearer: [] }],
        querystring: z.object({
          limit: z.coerce.number().int().min(1, 'limit must be at least 1').max(MAX_LIMIT, `limit must be at most ${MAX_LIMIT}`).default(DEFAULT_LIMIT),
          before: seqParam('before').optional(),
          of: z.enum(['own', 'grants'], 'of must be "own" (the default) or "grants"').default('own'),
        }),
        response: { 200: z.object({ entries: z.array(entrySchema), next_before: z.string().nullable() }), ...commonErrors },
      },
    },
    async (request) => {
      const auth = request.auth;
      if (!auth) throw new BrokerError('unauthorized', 'not authenticated');
      const { limit, before, of } = request.query;
      const rows =
        of === 'grants'
          ? await listMintsUnderGrantsOf(db, auth.omniAccount, { limit, beforeSeq: before })
          : await listAuditForAccount(db, auth.omniAccount, { limit, beforeSeq: before });
      const entries = rows.map((r) => ({
        seq: r.seq,
        shard: r.shard ?? null,
        shard_seq: r.shard_seq ?? null,
        at: r.at,
        event: r.event,
        outcome: r.outcome,
        request_id: r.request_id,
        details: r.details,
        prev_hash: r.prev_hash,
        hash: r.hash,
        ...(of === 'grants' ? { omni_account: r.omni_account ?? undefined } : {}),
      }));
      const last = rows[rows.length - 1];
      return { entries, next_before: rows.length === limit && last ? last.seq : null };
    },
  );

  app.get(
    '/v1/audit/proof',
    {
      onRequest: app.requireAuth,
      schema: {
        tags: ['audit'],
        summary: 'Proof that one of your audit rows (or a mint under one of your grants) is under a signed head',
        description:
          'The row, the later rows of its shard as {seq, shard_seq, content, hash} up to the shard head at the latest signed head ' +
          `(or, when the row is more than ${MAX_PROOF_CHAIN} rows below it, the earliest signed head that covers it), the RFC 6962 audit path from that shard head to the head's Merkle root, and the signed head. ` +
          'Check it offline with `npm run audit:verify -- --proof <file> --keys <broker>/v1/audit/keys`. ' +
          "404: no such row of yours (one answer whether the seq is another account's or beyond the log); 409: the row is not under a signed head yet (retry after the next anchor), " +
          `it predates sharding, or it is more than ${MAX_PROOF_CHAIN} rows below the first head that covers it (audit:verify covers those). ` +
          '429: more than BROKER_RATE_LIMIT_IP_PER_MINUTE proofs a minute from one address or for one account.',
        security: [{ bearer: [] }],
        querystring: z.object({ seq: seqParam('seq') }),
        response: { 200: auditProofSchema, 404: errorBody, 409: errorBody, ...commonErrors },
      },
    },
    async (request) => {
      const auth = request.auth;
      if (!auth) throw new BrokerError('unauthorized', 'not authenticated');
      await proofPerIp(request);
      await proofPerAccount(request, auth.omniAccount);
      const { seq } = request.query;
      const found = await buildAuditProof(db, auth.omniAccount, seq);
      if (found.ok) return found.proof;
      switch (found.why) {
        case 'not_found':
          // One answer, byte for byte, for another account's row and a seq past the log's end: it
          // must not tell how far the log goes (its activity) or which seqs exist.
          throw new BrokerError('not_found', PROOF_NOT_FOUND);
        case 'too_far':
          throw new BrokerError(
            'conflict',
            `row ${seq} is too far from any signed head for a proof (more than ${MAX_PROOF_CHAIN} rows of its shard between it and the first head that covers it); \`npm run audit:verify\` with a signed head covers it`,
          );
        case 'unsharded':
          throw new BrokerError('conflict', `row ${seq} predates the sharded log and has no inclusion proof; audit:verify with a signed head covers it`);
        case 'not_anchored':
          throw new BrokerError('conflict', `row ${seq} is not under a signed head yet: one is signed every ${config.BROKER_AUDIT_ANCHOR_SECONDS} s`, {
            headers: { 'retry-after': String(config.BROKER_AUDIT_ANCHOR_SECONDS) },
          });
      }
    },
  );

  app.get(
    '/v1/audit/head',
    {
      // Route hooks run after the app's no-store default: a head may be cached for one anchor interval.
      onSend: async (_request, reply) => {
        if (reply.statusCode === 200) void reply.header('cache-control', `public, max-age=${headMaxAge}`);
      },
      schema: {
        tags: ['audit'],
        summary: "The audit chain's latest signed head (public): pin it, and check the log against it later",
        description:
          'jws: a compact JWS (ES256, typ agentkeys-audit-head+jws) by the audit key at GET /v1/audit/keys of {v: 2, seq, hash, root, shards, at, iss}: ' +
          'shards the head {shard, seq, hash} of every shard chain, root their RFC 6962 Merkle root, seq/hash the latest row (version 1 heads, from before sharding, have only {seq, hash, at, iss}). ' +
          'Every row hash covers the previous row of its shard, so the head pins every row under it: `npm run audit:verify -- --head <jws>` reports a log that disagrees. 404 until the first head is signed.',
        response: {
          200: z.object({
            seq: z.string(),
            hash: z.string(),
            signed_at: z.string(),
            kid: z.string(),
            jws: z.string(),
            version: z.number().int(),
            root: z.string().nullable(),
            shards: z.array(z.object({ shard: z.number().int(), seq: z.string(), hash: z.string() })).nullable(),
          }),
          404: errorBody,
          ...commonErrors,
        },
      },
    },
    async () => {
      const head = await latestAuditHead(db);
      if (!head)
        throw new BrokerError(
          'not_found',
          'no head has been signed yet (the audit-anchor Schedule signs one every BROKER_AUDIT_ANCHOR_SECONDS once the log has rows)',
        );
      return {
        seq: head.seq,
        hash: head.hash,
        signed_at: head.signed_at.toISOString(),
        kid: head.kid,
        jws: head.jws,
        version: head.version,
        root: head.root,
        shards: head.shard_heads,
      };
    },
  );

  app.get(
    '/v1/audit/keys',
    {
      onSend: async (_request, reply) => {
        void reply.header('cache-control', 'public, max-age=3600');
      },
      schema: {
        tags: ['audit'],
        summary: 'The keys that sign audit heads (a JWKS)',
        description:
          'The current audit key and those retired by a rotation (BROKER_AUDIT_KEYS_RETIRED_PATH). ' +
          'Kept apart from /.well-known/jwks.json on purpose: AWS trusts every key in the OIDC JWKS to sign web identity tokens, and an audit key must never be one.',
        response: { 200: z.object({ keys: z.array(z.record(z.string(), z.unknown())) }) },
      },
    },
    () => {
      // The current key, then those a rotation retired: heads and proofs they signed keep verifying.
      return { keys: [secrets.auditKey.publicJwk, ...secrets.retiredAuditKeys] };
    },
  );
}
