import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import type { Config } from '../lib/config';
import { AkFlow } from '../lib/search-attributes';
import { FLOW_METADATA } from '../lib/flow-metadata';
import type { auditAnchorWorkflow } from '../workflows/audit-anchor';
import { AUDIT_ANCHOR_SCHEDULE_ID, AUDIT_ANCHOR_WORKFLOW_ID } from '../workflows/audit-anchor.definitions';
import type { purgeExpiredWorkflow } from '../workflows/maintenance';
import { PURGE_SCHEDULE_ID, PURGE_WORKFLOW_ID } from '../workflows/maintenance.definitions';

/**
 * Registers the broker's housekeeping Schedule (hourly purge of expired replay-guard and session
 * rows) unless it exists already (an existing one without the action's summary gets it); safe to
 * call from every worker at start-up.
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
        ...FLOW_METADATA.maintenance,
        taskQueue: config.BROKER_TASK_QUEUE,
        args: [],
        typedSearchAttributes: [{ key: AkFlow, value: 'maintenance' }],
      },
    });
    return 'created';
  } catch (e) {
    if (!(e instanceof ScheduleAlreadyRunning)) throw e;
    // A Schedule registered before its action carried a summary gets one.
    const handle = client.schedule.getHandle(PURGE_SCHEDULE_ID);
    const { action } = await handle.describe();
    if (action.staticSummary !== FLOW_METADATA.maintenance.staticSummary) {
      await handle.update((previous) => ({ ...previous, action: { ...previous.action, ...FLOW_METADATA.maintenance } }));
    }
    return 'existing';
  }
}

/**
 * Registers the audit-anchor Schedule (sign the audit chain's head every
 * BROKER_AUDIT_ANCHOR_SECONDS) unless it exists; an existing one gets the configured interval
 * and the action's summary.
 */
export async function ensureAuditAnchorSchedule(client: Client, config: Config): Promise<'created' | 'existing'> {
  const every = `${config.BROKER_AUDIT_ANCHOR_SECONDS} seconds`;
  const spec = { intervals: [{ every }] };
  try {
    await client.schedule.create<typeof auditAnchorWorkflow>({
      scheduleId: AUDIT_ANCHOR_SCHEDULE_ID,
      spec,
      policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 minute' },
      action: {
        type: 'startWorkflow',
        workflowType: 'auditAnchorWorkflow',
        workflowId: AUDIT_ANCHOR_WORKFLOW_ID,
        ...FLOW_METADATA.audit_anchor,
        taskQueue: config.BROKER_TASK_QUEUE,
        args: [],
        typedSearchAttributes: [{ key: AkFlow, value: 'audit_anchor' }],
      },
    });
    return 'created';
  } catch (e) {
    if (!(e instanceof ScheduleAlreadyRunning)) throw e;
    await client.schedule
      .getHandle(AUDIT_ANCHOR_SCHEDULE_ID)
      .update((previous) => ({ ...previous, spec, action: { ...previous.action, ...FLOW_METADATA.audit_anchor } }));
    return 'existing';
  }
}
