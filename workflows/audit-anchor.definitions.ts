/** Ids of the audit-anchor Schedule and its workflow, and what one run returns. */
export const AUDIT_ANCHOR_SCHEDULE_ID = 'agentkeys-audit-anchor';
export const AUDIT_ANCHOR_WORKFLOW_ID = 'audit/anchor';

/** A signed head as recorded (audit_heads) and kept in this run's history. */
export interface AnchoredHead {
  seq: string;
  hash: string;
  /** ISO-8601 time of signing. */
  signed_at: string;
  kid: string;
  /** The compact JWS of the head statement (lib/audit-head.ts). */
  jws: string;
  /** 2 for a head over the sharded chains; absent in results recorded before them (version 1). */
  version?: number;
  /** Version 2: the Merkle root over every shard's head (the shard heads are in the JWS). */
  root?: string;
}

/** null when the log is still empty. */
export type AnchorResult = AnchoredHead | null;
