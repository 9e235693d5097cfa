import { auditRowHash, GENESIS_HASH, type AuditRowFields } from '../lib/audit-chain';
import { auditWriteFailures } from '../lib/metrics';
import type { Queryable } from './pool';

// Serialises appenders so each row chains to the true previous row.
const AUDIT_CHAIN_LOCK = 727_002;

export interface AuditEvent {
  /** What happened, e.g. "login.email", "tee.post_heima_login", "grant.create", "mint.aws". */
  event: string;
  outcome: 'ok' | 'denied' | 'failed';
  omniAccount?: string | null;
  requestId?: string | null;
  /** Makes the append idempotent: a second append with the same key returns the first row. */
  idemKey?: string | null;
  /** Never raw secrets: hash or HMAC tokens, codes and credentials before they get here. */
  details?: Record<string, unknown>;
}

export interface AuditRecord {
  seq: string;
  hash: string;
}

/**
 * Appends one row to the chained audit log. Must run inside a transaction (the chain lock is
 * transaction-scoped); the row is durable when that transaction commits.
 */
export async function appendAudit(tx: Queryable, e: AuditEvent): Promise<AuditRecord> {
  try {
    return await appendAuditRow(tx, e);
  } catch (err) {
    auditWriteFailures.inc({ event: e.event });
    throw err;
  }
}

async function appendAuditRow(tx: Queryable, e: AuditEvent): Promise<AuditRecord> {
  await tx.query('SELECT pg_advisory_xact_lock($1)', [AUDIT_CHAIN_LOCK]);
  if (e.idemKey) {
    const existing = await tx.query<AuditRecord>('SELECT seq::text AS seq, hash FROM audit_log WHERE idem_key = $1', [e.idemKey]);
    if (existing.rows[0]) return existing.rows[0];
  }
  // ORDER BY the column, not the text alias `seq` (as text '9' sorts after '10').
  const prev = await tx.query<{ seq: string; hash: string }>('SELECT seq::text AS seq, hash FROM audit_log ORDER BY audit_log.seq DESC LIMIT 1');
  const seq = prev.rows[0] ? (BigInt(prev.rows[0].seq) + 1n).toString() : '1';
  const row: AuditRowFields = {
    seq,
    at: new Date().toISOString(),
    event: e.event,
    outcome: e.outcome,
    omni_account: e.omniAccount ?? null,
    request_id: e.requestId ?? null,
    idem_key: e.idemKey ?? null,
    details: e.details ?? {},
    prev_hash: prev.rows[0]?.hash ?? GENESIS_HASH,
  };
  const hash = auditRowHash(row);
  await tx.query(
    `INSERT INTO audit_log (seq, at, event, outcome, omni_account, request_id, idem_key, details, prev_hash, hash)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
    [row.seq, row.at, row.event, row.outcome, row.omni_account, row.request_id, row.idem_key, JSON.stringify(row.details), row.prev_hash, hash],
  );
  return { seq, hash };
}
