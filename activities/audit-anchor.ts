import { currentAuditHeads, recordAuditHead } from '../db/audit-heads';
import { signAuditHead } from '../lib/audit-head';
import { shardHeadsRoot } from '../lib/audit-merkle';
import type { AnchorResult } from '../workflows/audit-anchor.definitions';
import type { ActivityDeps } from './deps';

export function createAuditAnchorActivities(deps: ActivityDeps) {
  return {
    /**
     * Signs the log's current heads — a version 2 head: the Merkle root over every shard's head —
     * with the audit key and records it in audit_heads. Idempotent: a head already signed (an
     * unchanged log, or a retry) is returned as first recorded.
     */
    async anchorAuditHead(): Promise<AnchorResult> {
      const head = await currentAuditHeads(deps.db);
      if (!head) return null;
      const at = new Date(deps.now());
      const key = deps.secrets.auditKey;
      const root = shardHeadsRoot(head.shards);
      const jws = await signAuditHead(key, {
        v: 2,
        seq: head.seq,
        hash: head.hash,
        root,
        shards: head.shards,
        at: at.toISOString(),
        iss: deps.config.publicUrl,
      });
      const row = await recordAuditHead(deps.db, {
        seq: head.seq,
        hash: head.hash,
        signed_at: at,
        kid: key.kid,
        jws,
        version: 2,
        root,
        shard_heads: head.shards,
      });
      return {
        seq: row.seq,
        hash: row.hash,
        signed_at: row.signed_at.toISOString(),
        kid: row.kid,
        jws: row.jws,
        version: row.version,
        root: row.root ?? undefined,
      };
    },
  };
}
