import type { Client } from '@temporalio/client';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../lib/config';
import { FLOW_METADATA } from '../lib/flow-metadata';
import { AkFlow } from '../lib/search-attributes';
import { killSwitchChanged, killSwitchWorkflowId } from '../workflows/kill-switch.definitions';

/**
 * After the revocation committed: starts (or signals) the workflow that applies the entries. A
 * failure here leaves the entry recorded; a retried revocation, or the next one, applies it.
 */
export async function wakeKillSwitch(deps: { config: Config; temporal: Client }, log: FastifyBaseLogger): Promise<boolean> {
  if (deps.config.BROKER_KILL_SWITCH === 'off') return false;
  try {
    await deps.temporal.workflow.signalWithStart('killSwitchWorkflow', {
      workflowId: killSwitchWorkflowId(deps.config.BROKER_TASK_QUEUE),
      taskQueue: deps.config.BROKER_TASK_QUEUE,
      ...FLOW_METADATA.kill_switch,
      typedSearchAttributes: [{ key: AkFlow, value: 'kill_switch' }],
      signal: killSwitchChanged,
      signalArgs: [],
    });
    return true;
  } catch (e) {
    log.error(
      { flow: 'kill_switch', err: (e as Error).message },
      'could not start the kill switch workflow; the entry is recorded and applied on the next revocation',
    );
    return false;
  }
}
