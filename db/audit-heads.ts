import type { Queryable } from './pool';

export interface AuditHeadRow {
  seq: string;
  hash: string;
  signed_at: Date;
  kid: string;
  jws: string;
}

const COLUMNS = 'seq::text AS seq, hash, signed_at, kid, jws';

/** The chain's current head row, or null for an empty log. */
export async function currentAuditHead(q: Queryable): Promise<{ seq: string; hash: string } | null> {
  const r = await q.query<{ seq: string; hash: string }>('SELECT seq::text AS seq, hash FROM audit_log ORDER BY audit_log.seq DESC LIMIT 1');
  return r.rows[0] ?? null;
}

/** Records a signed head; a head already signed for that seq is kept and returned (idempotent). */
export async function recordAuditHead(q: Queryable, head: AuditHeadRow): Promise<AuditHeadRow> {
  const inserted = await q.query<AuditHeadRow>(
    `INSERT INTO audit_heads (seq, hash, signed_at, kid, jws) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq) DO NOTHING RETURNING ${COLUMNS}`,
    [head.seq, head.hash, head.signed_at, head.kid, head.jws],
  );
  if (inserted.rows[0]) return inserted.rows[0];
  const existing = await q.query<AuditHeadRow>(`SELECT ${COLUMNS} FROM audit_heads WHERE seq = $1`, [head.seq]);
  if (!existing.rows[0]) throw new Error(`audit head ${head.seq} neither inserted nor found`);
  return existing.rows[0];
}

export async function latestAuditHead(q: Queryable): Promise<AuditHeadRow | null> {
  const r = await q.query<AuditHeadRow>(`SELECT ${COLUMNS} FROM audit_heads ORDER BY seq DESC LIMIT 1`);
  return r.rows[0] ?? null;
}

export async function allAuditHeads(q: Queryable): Promise<AuditHeadRow[]> {
  return (await q.query<AuditHeadRow>(`SELECT ${COLUMNS} FROM audit_heads ORDER BY seq`)).rows;
}

/** The stored hash of one row, or null when the log has no such row. */
export async function auditRowHashAt(q: Queryable, seq: string): Promise<string | null> {
  const r = await q.query<{ hash: string }>('SELECT hash FROM audit_log WHERE seq = $1', [seq]);
  return r.rows[0]?.hash ?? null;
}
