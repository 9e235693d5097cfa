import { proxyActivities, upsertSearchAttributes } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { AkOutcome, AkStage } from '../lib/search-attributes';
import type { AnchorResult } from './audit-anchor.definitions';

const { anchorAuditHead } = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumAttempts: 5 },
});

/**
 * Run by a Temporal Schedule every BROKER_AUDIT_ANCHOR_SECONDS: signs the audit chain's current
 * head and records it. Its result — the signed head — stays in this run's history, the second of
 * the three places a head is kept (audit_heads, this history, GET /v1/audit/head).
 */
export async function auditAnchorWorkflow(): Promise<AnchorResult> {
  const head = await anchorAuditHead();
  upsertSearchAttributes([
    { key: AkStage, value: 'done' },
    { key: AkOutcome, value: head ? 'ok' : 'empty' },
  ]);
  return head;
}
