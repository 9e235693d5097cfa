import { Context } from '@temporalio/activity';

/** The workflow run the current activity belongs to: the key that makes activities idempotent. */
export function currentRun(): { workflowId: string; runId: string } {
  const wf = Context.current().info.workflowExecution;
  if (!wf) throw new Error('this activity must run inside a workflow');
  return { workflowId: wf.workflowId, runId: wf.runId };
}

/**
 * The current activity within its run: `activityId` is distinct per activity the workflow
 * schedules and the same for every retry of it. For a local activity (@temporalio/workflow 1.24
 * scheduleLocalActivity) it is the command's sequence number, taken once per scheduling and kept
 * by the worker's own retries and by a replay; only a retry whose backoff exceeds the local retry
 * threshold (1 minute by default) is scheduled anew under a new id.
 */
export function currentActivity(): { workflowId: string; runId: string; activityId: string } {
  return { ...currentRun(), activityId: Context.current().info.activityId };
}
