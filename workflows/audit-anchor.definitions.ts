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
  /** The compact JWS of {seq, hash, at, iss} (lib/audit-head.ts). */
  jws: string;
}

/** null when the log is still empty. */
export type AnchorResult = AnchoredHead | null;
