import {
  ScheduleAlreadyRunning,
  ScheduleNotFoundError,
  ScheduleOverlapPolicy,
  type Client,
  type ScheduleHandle,
  type ScheduleOptions,
} from '@temporalio/client';
import { CodecError } from '../lib/codec';
import type { Config } from '../lib/config';
import { AkFlow } from '../lib/search-attributes';
import { FLOW_METADATA } from '../lib/flow-metadata';
import { AUDIT_ANCHOR_SCHEDULE_ID, AUDIT_ANCHOR_WORKFLOW_ID } from '../workflows/audit-anchor.definitions';
import { PURGE_SCHEDULE_ID, PURGE_WORKFLOW_ID } from '../workflows/maintenance.definitions';

/**
 * Registers the broker's housekeeping Schedule (hourly purge of expired replay-guard and session
 * rows) unless it exists already (an existing one without the action's summary gets it); safe to
 * call from every worker at start-up.
 */
export async function ensureMaintenanceSchedule(client: Client, config: Config): Promise<ScheduleEnsured> {
  const options = {
    scheduleId: PURGE_SCHEDULE_ID,
    spec: { intervals: [{ every: '1 hour' }] },
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 hour' },
    action: startAction('purgeExpiredWorkflow', PURGE_WORKFLOW_ID, 'maintenance', config, MAINTENANCE_EXECUTION_TIMEOUT),
  } satisfies ScheduleOptions;
  return ensureSchedule(client, options, async (handle) => {
    // A Schedule registered before its action carried this summary, details or execution timeout gets them.
    const { action } = await handle.describe();
    const timeoutMs: unknown = action.type === 'startWorkflow' ? (action.workflowExecutionTimeout as unknown) : undefined;
    const { staticSummary, staticDetails } = FLOW_METADATA.maintenance;
    if (action.staticSummary !== staticSummary || action.staticDetails !== staticDetails || timeoutMs !== msFrom(MAINTENANCE_EXECUTION_TIMEOUT)) {
      await handle.update((previous) => ({
        ...previous,
        action: { ...previous.action, ...FLOW_METADATA.maintenance, workflowExecutionTimeout: MAINTENANCE_EXECUTION_TIMEOUT },
      }));
    }
  });
}

/**
 * Registers the audit-anchor Schedule (sign the audit chain's head every
 * BROKER_AUDIT_ANCHOR_SECONDS) unless it exists; an existing one gets the configured interval
 * and the action's summary.
 */
export async function ensureAuditAnchorSchedule(client: Client, config: Config): Promise<ScheduleEnsured> {
  const spec = { intervals: [{ every: `${config.BROKER_AUDIT_ANCHOR_SECONDS} seconds` }] };
  const options = {
    scheduleId: AUDIT_ANCHOR_SCHEDULE_ID,
    spec,
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 minute' },
    action: startAction('auditAnchorWorkflow', AUDIT_ANCHOR_WORKFLOW_ID, 'audit_anchor', config, auditAnchorExecutionTimeout(config)),
  } satisfies ScheduleOptions;
  return ensureSchedule(client, options, (handle) =>
    handle.update((previous) => ({
      ...previous,
      spec,
      action: { ...previous.action, ...FLOW_METADATA.audit_anchor, workflowExecutionTimeout: auditAnchorExecutionTimeout(config) },
    })),
  );
}

/**
 * How long one scheduled run may take before Temporal ends it. Without it, a run no worker can finish
 * (one written under a payload key this broker does not hold) retries its workflow task forever, and
 * with overlap SKIP no later run starts either. A purge takes seconds, an anchor well under one.
 */
export const MAINTENANCE_EXECUTION_TIMEOUT = '30 minutes';
export function auditAnchorExecutionTimeout(config: Pick<Config, 'BROKER_AUDIT_ANCHOR_SECONDS'>): string {
  return `${Math.max(300, 2 * config.BROKER_AUDIT_ANCHOR_SECONDS)} seconds`;
}

function msFrom(duration: string): number {
  const [n = '0', unit = ''] = duration.split(' ');
  return Number(n) * (unit.startsWith('minute') ? 60_000 : 1000);
}

/** The workflows the broker's Schedules start (both take no arguments). */
type WorkflowTypeName = 'purgeExpiredWorkflow' | 'auditAnchorWorkflow';

/** A Schedule's action: start the broker's `flow` workflow, with no arguments, on the broker task queue, ending it after `workflowExecutionTimeout`. */
function startAction(
  workflowType: WorkflowTypeName,
  workflowId: string,
  flow: 'maintenance' | 'audit_anchor',
  config: Config,
  workflowExecutionTimeout: string,
): ScheduleOptions['action'] {
  return {
    type: 'startWorkflow',
    workflowType,
    workflowId,
    workflowExecutionTimeout,
    ...FLOW_METADATA[flow],
    taskQueue: config.BROKER_TASK_QUEUE,
    args: [],
    typedSearchAttributes: [{ key: AkFlow, value: flow }],
  };
}

/** created: it was not there; existing: it was, and `refresh` brought it up to date; replaced: see ensureSchedule. */
export type ScheduleEnsured = 'created' | 'existing' | 'replaced';

/**
 * Creates the Schedule, or refreshes the one already there. Reading an existing Schedule decodes its
 * action's payloads (summary, details) with this broker's payload keys; one written under a key this
 * broker does not hold (a key retired and dropped, another deployment sharing the namespace) cannot be
 * read or kept, so it is deleted and created again from this broker's definition instead of stopping
 * the worker at start-up. Its content is the broker's own fixed definition, so nothing is lost.
 */
async function ensureSchedule(client: Client, options: ScheduleOptions, refresh: (handle: ScheduleHandle) => Promise<unknown>): Promise<ScheduleEnsured> {
  if (await createUnlessThere(client, options)) return 'created';
  const handle = client.schedule.getHandle(options.scheduleId);
  try {
    await refresh(handle);
    return 'existing';
  } catch (e) {
    if (!(e instanceof CodecError)) throw e;
    await handle.delete().catch((err: unknown) => {
      if (!(err instanceof ScheduleNotFoundError)) throw err;
    });
    await createUnlessThere(client, options);
    return 'replaced';
  }
}

async function createUnlessThere(client: Client, options: ScheduleOptions): Promise<boolean> {
  try {
    await client.schedule.create(options);
    return true;
  } catch (e) {
    if (e instanceof ScheduleAlreadyRunning) return false;
    throw e;
  }
}
