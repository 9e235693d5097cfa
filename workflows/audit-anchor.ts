import { patched, proxyActivities, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { AkOutcome, AkStage } from '../lib/search-attributes';
import { AUDIT_ANCHOR_EXTENDS_PATCH, type AnchoredHead, type AnchorResult } from './audit-anchor.definitions';

const { anchorAuditHead } = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumAttempts: 5 },
});

/**
 * Run by a Temporal Schedule every BROKER_AUDIT_ANCHOR_SECONDS: signs the audit chain's current
 * head and records it. Its result — the signed head — stays in this run's history, the second of
 * the three places a head is kept (audit_heads, this history, GET /v1/audit/head).
 *
 * From the patch `audit-anchor-extends-previous` on, the head the Schedule's previous run returned
 * (Temporal hands a scheduled run its predecessor's result, kept from the last run that completed)
 * goes to the activity, which refuses to sign a log that no longer extends it
 * (activities/audit-anchor.ts). A run replaying a history without the marker calls it as before.
 */
export async function auditAnchorWorkflow(): Promise<AnchorResult> {
  const head = patched(AUDIT_ANCHOR_EXTENDS_PATCH) ? await anchorAuditHead({ previous: previousHead() }) : await anchorAuditHead();
  upsertSearchAttributes([
    { key: AkStage, value: 'done' },
    { key: AkOutcome, value: head ? 'ok' : 'empty' },
  ]);
  return head;
}

/** The previous scheduled run's signed head, when Temporal passed one (null for an empty log, absent for a first or manual run). */
function previousHead(): AnchoredHead | null {
  const last = workflowInfo().lastResult;
  return typeof last === 'object' && last !== null && typeof (last as { jws?: unknown }).jws === 'string' ? (last as AnchoredHead) : null;
}
