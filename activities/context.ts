import { Context } from '@temporalio/activity';

/** The workflow run the current activity belongs to: the key that makes activities idempotent. */
export function currentRun(): { workflowId: string; runId: string } {
  const wf = Context.current().info.workflowExecution;
  if (!wf) throw new Error('this activity must run inside a workflow');
  return { workflowId: wf.workflowId, runId: wf.runId };
}
