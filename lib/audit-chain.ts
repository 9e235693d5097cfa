import { createHash } from 'node:crypto';

/**
 * The audit log's hash chain: each row's hash covers its own fields and the previous row's hash,
 * so editing, deleting or reordering any row breaks every hash after it.
 */
export const GENESIS_HASH = '0'.repeat(64);

export interface AuditRowFields {
  seq: string;
  at: string;
  event: string;
  outcome: 'ok' | 'denied' | 'failed';
  omni_account: string | null;
  request_id: string | null;
  idem_key: string | null;
  details: Record<string, unknown>;
  prev_hash: string;
}

/** JSON with object keys sorted at every depth, so the same value always hashes the same. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
}

export function auditRowHash(row: AuditRowFields): string {
  return createHash('sha256')
    .update(
      canonicalJson({
        seq: row.seq,
        at: row.at,
        event: row.event,
        outcome: row.outcome,
        omni_account: row.omni_account,
        request_id: row.request_id,
        idem_key: row.idem_key,
        details: row.details,
        prev_hash: row.prev_hash,
      }),
    )
    .digest('hex');
}
