import { createHash } from 'node:crypto';
import { canonicalJson } from './canonical-json';

export { canonicalJson } from './canonical-json';

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
