import { auditRowContentDigest } from '../lib/audit-chain';
import { shardAuditPath, type ShardHead } from '../lib/audit-merkle';
import type { AuditProof } from '../lib/audit-proof';
import { AUDIT_COLUMNS, type AuditRow } from './audit-query';
import type { AuditHeadRow } from './audit-heads';
import type { Queryable } from './pool';

/** A proof's chain is at most this many rows; a row further below its shard's latest signed head gets the earliest head that covers it. */
export const MAX_PROOF_CHAIN = 10_000;

export type ProofLookup =
  { ok: true; proof: AuditProof } | { ok: false; why: 'beyond_log'; logEnd: string | null } | { ok: false; why: 'not_found' | 'unsharded' | 'not_anchored' };

const HEAD_COLUMNS = 'seq::text AS seq, hash, signed_at, kid, jws, version, root, shard_heads';

/**
 * The inclusion proof of row `seq` of `omniAccount` (lib/audit-proof.ts) under the latest signed
 * head — or, when the row is more than MAX_PROOF_CHAIN rows below its shard's head there, the
 * earliest signed head that covers it (the shortest chain). Another account's row is not_found.
 */
export async function buildAuditProof(q: Queryable, omniAccount: string, seq: string, opts: { maxChain?: number } = {}): Promise<ProofLookup> {
  const maxChain = opts.maxChain ?? MAX_PROOF_CHAIN;
  const row = (await q.query<AuditRow>(`SELECT ${AUDIT_COLUMNS} FROM audit_log WHERE seq = $1 AND omni_account = $2`, [seq, omniAccount])).rows[0];
  if (!row) {
    const end = (await q.query<{ seq: string | null }>('SELECT max(seq)::text AS seq FROM audit_log')).rows[0]?.seq ?? null;
    if (end === null || BigInt(seq) > BigInt(end)) return { ok: false, why: 'beyond_log', logEnd: end };
    return { ok: false, why: 'not_found' };
  }
  if (row.shard === null || row.shard === undefined || !row.shard_seq) return { ok: false, why: 'unsharded' };
  const shard = row.shard;
  const leafOf = (h: AuditHeadRow) => h.shard_heads?.[shard];
  const covering = async (order: 'DESC' | 'ASC') =>
    (
      await q.query<AuditHeadRow>(
        `SELECT ${HEAD_COLUMNS} FROM audit_heads
          WHERE version = 2 AND (shard_heads -> $1::int ->> 'seq')::bigint >= $2::bigint
          ORDER BY signed_at ${order}, seq ${order} LIMIT 1`,
        [shard, row.seq],
      )
    ).rows[0];
  let head = await covering('DESC');
  if (!head) return { ok: false, why: 'not_anchored' };
  const chainLength = async (h: AuditHeadRow) =>
    Number(
      (await q.query<{ n: string }>('SELECT count(*)::text AS n FROM audit_log WHERE shard = $1 AND seq > $2 AND seq <= $3', [shard, row.seq, leafOf(h)?.seq]))
        .rows[0]?.n,
    );
  if ((await chainLength(head)) > maxChain) head = (await covering('ASC')) ?? head;
  const heads = head.shard_heads as ShardHead[];
  const leaf = leafOf(head) as ShardHead;
  const later = (
    await q.query<AuditRow>(`SELECT ${AUDIT_COLUMNS} FROM audit_log WHERE shard = $1 AND seq > $2 AND seq <= $3 ORDER BY audit_log.shard_seq`, [
      shard,
      row.seq,
      leaf.seq,
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
