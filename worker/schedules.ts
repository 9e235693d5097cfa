import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import type { Config } from '../lib/config';
import { AkFlow } from '../lib/search-attributes';
import type { purgeExpiredWorkflow } from '../workflows/maintenance';
import { PURGE_SCHEDULE_ID, PURGE_WORKFLOW_ID } from '../workflows/maintenance.definitions';

/**
 * Registers the broker's housekeeping Schedule (hourly purge of expired replay-guard and session
 * rows) unless it exists already; safe to call from every worker at start-up.
 */
export async function ensureMaintenanceSchedule(client: Client, config: Config): Promise<'created' | 'existing'> {
  try {
    await client.schedule.create<typeof purgeExpiredWorkflow>({
      scheduleId: PURGE_SCHEDULE_ID,
      spec: { intervals: [{ every: '1 hour' }] },
      policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 hour' },
      action: {
        type: 'startWorkflow',
        workflowType: 'purgeExpiredWorkflow',
        workflowId: PURGE_WORKFLOW_ID,
        taskQueue: config.BROKER_TASK_QUEUE,
        args: [],
        typedSearchAttributes: [{ key: AkFlow, value: 'maintenance' }],
      },
    });
    return 'created';
  } catch (e) {
    if (e instanceof ScheduleAlreadyRunning) return 'existing';
    throw e;
  }
}
