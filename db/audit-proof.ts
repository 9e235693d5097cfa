import { auditRowContentDigest } from '../lib/audit-chain';
import { shardAuditPath, type ShardHead } from '../lib/audit-merkle';
import type { AuditProof } from '../lib/audit-proof';
import { AUDIT_COLUMNS, MINTS_UNDER_GRANTS_OF, type AuditRow } from './audit-query';
import { firstCoveringHead, latestShardedHead, type AuditHeadRow } from './audit-heads';
import type { Queryable } from './pool';

/**
 * A proof's chain is at most this many rows; a row further below its shard's latest signed head gets
 * the earliest head that covers it, and a row further than this below that one too (the anchor
 * stalled while its shard grew) gets no proof (too_far).
 */
export const MAX_PROOF_CHAIN = 10_000;

export type ProofLookup = { ok: true; proof: AuditProof } | { ok: false; why: 'not_found' | 'unsharded' | 'not_anchored' | 'too_far' };

/**
 * The inclusion proof of row `seq` of `omniAccount` (lib/audit-proof.ts) under the latest signed
 * head — or, when the row is more than `maxChain` rows below its shard's head there, the earliest
 * signed head that covers it (the shortest chain); too_far when that chain is still longer than
 * `maxChain`, so no proof reads more rows than that. Another account's row is not_found, except a
 * mint made under one of the account's grants (the rows GET /v1/audit?of=grants lists); so is a
 * seq beyond the log's last row, with nothing to tell the two apart (not even another query).
 */
export async function buildAuditProof(q: Queryable, omniAccount: string, seq: string, opts: { maxChain?: number } = {}): Promise<ProofLookup> {
  const maxChain = opts.maxChain ?? MAX_PROOF_CHAIN;
  const row = (
    await q.query<AuditRow>(`SELECT ${AUDIT_COLUMNS} FROM audit_log WHERE seq = $1 AND (omni_account = $2 OR (${MINTS_UNDER_GRANTS_OF('$2')}))`, [
      seq,
      omniAccount,
    ])
  ).rows[0];
  if (!row) return { ok: false, why: 'not_found' };
  if (row.shard === null || row.shard === undefined || !row.shard_seq) return { ok: false, why: 'unsharded' };
  const shard = row.shard;
  const rowShardSeq = row.shard_seq;
  const leafOf = (h: AuditHeadRow) => h.shard_heads?.[shard];
  const covers = (h: AuditHeadRow | null): h is AuditHeadRow => h !== null && BigInt(leafOf(h)?.seq ?? '0') >= BigInt(row.seq);
  // Within a shard seq rises with shard_seq (db/audit.ts): the chain above the row is a shard_seq range, its length a difference.
  const leafShardSeq = async (h: AuditHeadRow): Promise<string> =>
    (await q.query<{ shard_seq: string }>('SELECT shard_seq::text AS shard_seq FROM audit_log WHERE seq = $1', [leafOf(h)?.seq])).rows[0]?.shard_seq ??
    rowShardSeq;
  // Two indexed look-ups, whatever the number of heads: the latest head, and (when it does not cover
  // the row, or its chain is too long) the first head that covered it (audit_head_shards).
  const latest = await latestShardedHead(q);
  let head = covers(latest) ? latest : null;
  let upTo = head ? await leafShardSeq(head) : rowShardSeq;
  if (!head || BigInt(upTo) - BigInt(rowShardSeq) > BigInt(maxChain)) {
    const first = await firstCoveringHead(q, shard, row.seq);
    if (covers(first)) {
      head = first;
      upTo = await leafShardSeq(first);
    }
  }
  if (!head) return { ok: false, why: 'not_anchored' };
  // Even the earliest head that covers the row is too far above it: refused before reading the chain.
  if (BigInt(upTo) - BigInt(rowShardSeq) > BigInt(maxChain)) return { ok: false, why: 'too_far' };
  const heads = head.shard_heads as ShardHead[];
  const leaf = leafOf(head) as ShardHead;
  const later = (
    await q.query<AuditRow>(`SELECT ${AUDIT_COLUMNS} FROM audit_log WHERE shard = $1 AND shard_seq > $2 AND shard_seq <= $3 ORDER BY audit_log.shard_seq`, [
      shard,
      rowShardSeq,
      upTo,
    ])
  ).rows;
  return {
    ok: true,
    proof: {
      version: 1,
      // AUDIT_COLUMNS: exactly the fields the row's hash covers, and the hash.
      row: { ...row, shard, shard_seq: row.shard_seq },
      chain: later.map((r) => ({ seq: r.seq, shard_seq: r.shard_seq ?? '', content: auditRowContentDigest(r), hash: r.hash })),
      shard_head: leaf,
      tree_size: heads.length,
      audit_path: shardAuditPath(heads, shard),
      head: { jws: head.jws, signed_at: head.signed_at.toISOString(), kid: head.kid },
    },
  };
}
