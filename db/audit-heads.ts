import type { ShardHead } from '../lib/audit-merkle';
import type { Queryable } from './pool';

export interface AuditHeadRow {
  /** The log's latest row when signed. */
  seq: string;
  hash: string;
  signed_at: Date;
  kid: string;
  jws: string;
  /** 1: the single chain's head; 2: the Merkle root over every shard's head. */
  version: number;
  root: string | null;
  shard_heads: ShardHead[] | null;
}

const COLUMNS = 'seq::text AS seq, hash, signed_at, kid, jws, version, root, shard_heads';

export interface CurrentHeads {
  /** The log's latest row. */
  seq: string;
  hash: string;
  /** Every shard's last row in shard order (seq "0" and the chains' starting hash for an empty shard). */
  shards: ShardHead[];
}

/** The log's current shard heads, read in one snapshot; null for an empty log. */
export async function currentAuditHeads(q: Queryable): Promise<CurrentHeads | null> {
  const r = await q.query<{ kind: 'shard' | 'latest'; shard: number | null; seq: string | null; hash: string | null }>(
    `WITH settings AS (SELECT shards, genesis_hash FROM audit_settings)
     SELECT 'shard' AS kind, s.shard, coalesce(p.seq::text, '0') AS seq, coalesce(p.hash, settings.genesis_hash) AS hash
       FROM settings CROSS JOIN LATERAL generate_series(0, settings.shards - 1) AS s(shard)
       LEFT JOIN LATERAL (SELECT seq, hash FROM audit_log WHERE audit_log.shard = s.shard ORDER BY shard_seq DESC LIMIT 1) p ON true
     UNION ALL
     SELECT 'latest', NULL, l.seq::text, l.hash FROM (SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1) l
     ORDER BY 1 DESC, 2`,
  );
  const latest = r.rows.find((x) => x.kind === 'latest');
  if (!latest?.seq || !latest.hash) return null;
  const shards = r.rows.filter((x) => x.kind === 'shard').map((x) => ({ shard: x.shard ?? 0, seq: x.seq ?? '0', hash: x.hash ?? '' }));
  return { seq: latest.seq, hash: latest.hash, shards };
}

/**
 * Records a signed head; a head already signed for that root (version 1: seq) is kept and returned
 * (idempotent). In the same statement, each shard position the head is the first to cover goes into
 * audit_head_shards, the index proofs find their head by (migration 011).
 */
export async function recordAuditHead(q: Queryable, head: AuditHeadRow): Promise<AuditHeadRow> {
  const conflict = head.root ? '(root) WHERE root IS NOT NULL' : '(seq) WHERE root IS NULL';
  const inserted = await q.query<AuditHeadRow>(
    `WITH head AS (
       INSERT INTO audit_heads (seq, hash, signed_at, kid, jws, version, root, shard_heads) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
       ON CONFLICT ${conflict} DO NOTHING RETURNING ${COLUMNS}
     ), positions AS (
       INSERT INTO audit_head_shards (shard, seq, head_root)
       SELECT e.shard, e.seq, head.root FROM head CROSS JOIN LATERAL jsonb_to_recordset(head.shard_heads) AS e(shard int, seq bigint)
        WHERE head.version = 2 AND head.root IS NOT NULL AND e.seq > 0
       ON CONFLICT (shard, seq) DO NOTHING
     )
     SELECT * FROM head`,
    [head.seq, head.hash, head.signed_at, head.kid, head.jws, head.version, head.root, head.shard_heads ? JSON.stringify(head.shard_heads) : null],
  );
  if (inserted.rows[0]) return inserted.rows[0];
  const existing = head.root
    ? await q.query<AuditHeadRow>(`SELECT ${COLUMNS} FROM audit_heads WHERE root = $1`, [head.root])
    : await q.query<AuditHeadRow>(`SELECT ${COLUMNS} FROM audit_heads WHERE seq = $1 AND root IS NULL`, [head.seq]);
  if (!existing.rows[0]) throw new Error(`audit head ${head.root ?? head.seq} neither inserted nor found`);
  return existing.rows[0];
}

/** The latest version 2 head: the first entry of audit_heads_signed_idx read newest first (version 1 heads are all older). */
export const LATEST_SHARDED_HEAD_SQL = `SELECT ${COLUMNS} FROM audit_heads WHERE version = 2 ORDER BY signed_at DESC, seq DESC LIMIT 1`;

/**
 * The head that first covered row `$2` (a global seq) of shard `$1`: the shard position at or above
 * it with the lowest seq, one probe of audit_head_shards' primary key, then its head by root.
 */
export const FIRST_COVERING_HEAD_SQL = `SELECT ${COLUMNS} FROM audit_heads
  WHERE root IS NOT NULL AND root = (SELECT head_root FROM audit_head_shards WHERE shard = $1 AND seq >= $2 ORDER BY seq LIMIT 1)`;

export async function latestShardedHead(q: Queryable): Promise<AuditHeadRow | null> {
  return (await q.query<AuditHeadRow>(LATEST_SHARDED_HEAD_SQL)).rows[0] ?? null;
}

/** The signed head with the shortest chain above row `seq` of `shard`; null when no head covers it yet. */
export async function firstCoveringHead(q: Queryable, shard: number, seq: string): Promise<AuditHeadRow | null> {
  return (await q.query<AuditHeadRow>(FIRST_COVERING_HEAD_SQL, [shard, seq])).rows[0] ?? null;
}

export async function latestAuditHead(q: Queryable): Promise<AuditHeadRow | null> {
  const r = await q.query<AuditHeadRow>(`SELECT ${COLUMNS} FROM audit_heads ORDER BY signed_at DESC, seq DESC LIMIT 1`);
  return r.rows[0] ?? null;
}

export async function allAuditHeads(q: Queryable): Promise<AuditHeadRow[]> {
  return (await q.query<AuditHeadRow>(`SELECT ${COLUMNS} FROM audit_heads ORDER BY signed_at, seq`)).rows;
}
