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

/** What anchorAuditHead takes (nothing, from runs started before the patch `audit-anchor-extends-previous`). */
export interface AnchorInput {
  /**
   * The head the Schedule's previous run returned (Temporal's last completion result): the anchor
   * refuses to sign a log that no longer extends it. null or absent: none (the first scheduled run,
   * a run started by hand).
   */
  previous?: AnchoredHead | null;
}

/** The patch id of the run that passes the previous run's head to the anchor (docs/versioning.md). */
export const AUDIT_ANCHOR_EXTENDS_PATCH = 'audit-anchor-extends-previous';
