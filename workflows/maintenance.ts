import { proxyActivities, upsertSearchAttributes } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { PurgeResult } from '../activities/maintenance';
import { AkOutcome, AkStage } from '../lib/search-attributes';

const { purgeExpiredRows } = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  retry: { initialInterval: '10 seconds', backoffCoefficient: 2, maximumAttempts: 5 },
});

/** Run by a Temporal Schedule: drops replay-guard and session rows that have expired. */
export async function purgeExpiredWorkflow(): Promise<PurgeResult> {
  const result = await purgeExpiredRows();
  upsertSearchAttributes([
    { key: AkStage, value: 'done' },
    { key: AkOutcome, value: 'ok' },
  ]);
  return result;
}
