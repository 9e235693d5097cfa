import { currentAuditHead, recordAuditHead } from '../db/audit-heads';
import { signAuditHead } from '../lib/audit-head';
import type { AnchorResult } from '../workflows/audit-anchor.definitions';
import type { ActivityDeps } from './deps';

export function createAuditAnchorActivities(deps: ActivityDeps) {
  return {
    /**
     * Signs the chain's current head with the audit key and records it in audit_heads. Idempotent:
     * a head already signed (an unchanged log, or a retry) is returned as first recorded.
     */
    async anchorAuditHead(): Promise<AnchorResult> {
      const head = await currentAuditHead(deps.db);
      if (!head) return null;
      const at = new Date(deps.now());
      const key = deps.secrets.auditKey;
      const jws = await signAuditHead(key, { seq: head.seq, hash: head.hash, at: at.toISOString(), iss: deps.config.publicUrl });
      const row = await recordAuditHead(deps.db, { seq: head.seq, hash: head.hash, signed_at: at, kid: key.kid, jws });
      return { seq: row.seq, hash: row.hash, signed_at: row.signed_at.toISOString(), kid: row.kid, jws: row.jws };
    },
  };
}
