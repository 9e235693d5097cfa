import type { Client } from '@temporalio/client';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../lib/config';
import { FLOW_METADATA } from '../lib/flow-metadata';
import { AkFlow } from '../lib/search-attributes';
import { killSwitchChanged, killSwitchWorkflowId } from '../workflows/kill-switch.definitions';

/** One API process signals the kill switch workflow at most once in this many milliseconds. */
export const WAKE_INTERVAL_MS = 1000;

/** The wake-ups of one kill switch workflow from this process. */
interface WakeState {
  /** The next signal, scheduled and not yet sent: a revocation arriving now is covered by it. */
  pending?: Promise<void>;
  /** When the last signal's send started (ms since the epoch). */
  lastSentMs: number;
}

/** Per Temporal client (one per API process; tests make several), then per workflow id. */
const wakeStates = new WeakMap<Client, Map<string, WakeState>>();

function wakeStateOf(temporal: Client, workflowId: string): WakeState {
  let byWorkflow = wakeStates.get(temporal);
  if (!byWorkflow) wakeStates.set(temporal, (byWorkflow = new Map<string, WakeState>()));
  let state = byWorkflow.get(workflowId);
  if (!state) byWorkflow.set(workflowId, (state = { lastSentMs: -Infinity }));
  return state;
}

/**
 * A signal sent after this call: the one already scheduled and not yet sent if there is one, else
 * a new one, sent once WAKE_INTERVAL_MS have passed since the last send started (on the next turn
 * of the event loop at the earliest, so calls made together share it). A signal being sent, or
 * sent, never stands for a later call: the round it wakes may have read the entries before that
 * call's revocation committed. So the pending slot is cleared right before the send starts.
 */
function coalescedSignal(state: WakeState, send: () => Promise<unknown>): Promise<void> {
  if (state.pending) return state.pending;
  const delay = Math.max(0, state.lastSentMs + WAKE_INTERVAL_MS - Date.now());
  const pending = new Promise<void>((resolve) => setTimeout(resolve, delay)).then(async () => {
    state.pending = undefined;
    state.lastSentMs = Date.now();
    await send();
  });
  state.pending = pending;
  return pending;
}

/**
 * After the revocation committed: starts (or signals) the workflow that applies the entries. A
 * failure here leaves the entry recorded; a retried revocation, or the next one, applies it.
 *
 * Wake-ups are coalesced per process (at most one signal a second), since a run takes a bounded
 * number of signals (workflows/kill-switch.ts); each call still returns only once a signal sent
 * after it was made has been accepted (or has failed), so the route's answer still means the
 * wake-up went out.
 */
export async function wakeKillSwitch(deps: { config: Config; temporal: Client }, log: FastifyBaseLogger): Promise<boolean> {
  if (deps.config.BROKER_KILL_SWITCH === 'off') return false;
  const workflowId = killSwitchWorkflowId(deps.config.BROKER_TASK_QUEUE);
  try {
    await coalescedSignal(wakeStateOf(deps.temporal, workflowId), () =>
      deps.temporal.workflow.signalWithStart('killSwitchWorkflow', {
        workflowId,
        taskQueue: deps.config.BROKER_TASK_QUEUE,
        ...FLOW_METADATA.kill_switch,
        typedSearchAttributes: [{ key: AkFlow, value: 'kill_switch' }],
        signal: killSwitchChanged,
        signalArgs: [],
      }),
    );
    return true;
  } catch (e) {
    log.error(
      { flow: 'kill_switch', err: (e as Error).message },
      'could not start the kill switch workflow; the entry is recorded and applied on the next revocation',
    );
    return false;
  }
}
