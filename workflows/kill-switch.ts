import { RetryState, TimeoutType } from '@temporalio/common';
import {
  ActivityFailure,
  condition,
  continueAsNew,
  patched,
  proxyActivities,
  setHandler,
  sleep,
  TimeoutFailure,
  workflowInfo,
  type ActivityOptions,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { KILL_SWITCH_SIGNAL_BUDGET_PATCH, killSwitchChanged, type KillSwitchApplied, type KillSwitchInput } from './kill-switch.definitions';

/** One attempt's limit: the activity's write cutoff (activities/kill-switch.ts) is counted from it. */
const ATTEMPT_TIMEOUT_MS = 60_000;

const APPLY_OPTIONS = {
  startToCloseTimeout: ATTEMPT_TIMEOUT_MS,
  // IAM being down must not lose a revocation: keep trying, backing off to a minute.
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '1 minute' },
} satisfies ActivityOptions;

const { applyKillSwitch } = proxyActivities<Activities>(APPLY_OPTIONS);

/** Rounds before the history is handed to a fresh run. */
const ROUNDS_PER_RUN = 200;

/**
 * Signals before the run is handed to a fresh one (patch `kill-switch-signal-budget`). Temporal
 * refuses a run's signals past `history.maximumSignalsPerExecution` (10,000), signal-with-start
 * included: a run that reached it could no longer be woken by a revocation. The count is checked
 * after each round, and a round is bounded (ROUND_TIMEOUT_SECONDS), so what one round gathers past
 * the budget stays far below the limit (each API process sends at most one signal a second,
 * api/kill-switch.ts).
 */
const SIGNALS_PER_RUN = 1000;

/** How long one round's applyKillSwitch keeps retrying before the run continues as new (patch `kill-switch-signal-budget`). */
const ROUND_TIMEOUT_SECONDS = 600;

/** The test-only input's value when it is a positive number, else the default. */
const positive = (v: number | undefined, fallback: number) => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : fallback);

/**
 * Applies the kill switch's entries whenever a revocation signals, and again when the earliest
 * entry expires (a durable timer: the entry leaves the deny policy at its expiry, not at the next
 * maintenance run). Ends when no entry is left; the next revocation starts it again.
 *
 * From the patch `kill-switch-signal-budget` on, a round continues as new once the run has taken
 * its budget of signals (or Temporal suggests it), and one round's retries are bounded: when they
 * run out of time the run continues as new (the entries are in Postgres; the new run applies them
 * at once) instead of gathering signals for as long as IAM refuses. The patch is asked at each
 * round, so a run started before it takes the new branch from its first round on new code, and
 * a replay of an older history takes the old one throughout. `input` is the tests'.
 */
export async function killSwitchWorkflow(input: KillSwitchInput = {}): Promise<void> {
  const signalsPerRun = positive(input.signalsPerRun, SIGNALS_PER_RUN);
  const { applyKillSwitch: applyBounded } = proxyActivities<Activities>({
    ...APPLY_OPTIONS,
    scheduleToCloseTimeout: positive(input.roundTimeoutSeconds, ROUND_TIMEOUT_SECONDS) * 1000,
  });
  let changed = false;
  let signals = 0;
  setHandler(killSwitchChanged, () => {
    changed = true;
    signals += 1;
  });
  let bounded = false;
  for (let round = 0; round < ROUNDS_PER_RUN; round++) {
    changed = false;
    bounded = patched(KILL_SWITCH_SIGNAL_BUDGET_PATCH);
    let applied: KillSwitchApplied;
    if (!bounded) {
      applied = await applyKillSwitch();
    } else {
      try {
        applied = await applyBounded();
      } catch (e) {
        if (!roundTimedOut(e)) throw e;
        // An attempt the deadline cut short may still be running, and could write its (older)
        // document after the next run's: wait out its start-to-close, past which it writes nothing.
        if (attemptCutShort(e)) await sleep(ATTEMPT_TIMEOUT_MS);
        return continueAsNew<typeof killSwitchWorkflow>(input);
      }
      if (signals >= signalsPerRun || workflowInfo().continueAsNewSuggested) await continueAsNew<typeof killSwitchWorkflow>(input);
    }
    if (changed) continue;
    if (applied.nextExpiryMs === null) return;
    await condition(() => changed, Math.max(1000, applied.nextExpiryMs - Date.now() + 1000));
  }
  if (bounded) await continueAsNew<typeof killSwitchWorkflow>(input);
  await continueAsNew<typeof killSwitchWorkflow>();
}

/**
 * The bounded round's retries ran out of time: either the deadline ended an attempt (a
 * TimeoutFailure), or the last attempt failed and the next one would start past it (the server
 * gives up with retry state TIMEOUT and the attempt's own failure as the cause). Anything else
 * — a non-retryable failure — fails the run as before.
 */
function roundTimedOut(e: unknown): boolean {
  return e instanceof ActivityFailure && (e.retryState === RetryState.TIMEOUT || e.cause instanceof TimeoutFailure);
}

/** The schedule-to-close deadline fired during an attempt, which the server does not stop. */
function attemptCutShort(e: unknown): boolean {
  return e instanceof ActivityFailure && e.cause instanceof TimeoutFailure && e.cause.timeoutType === TimeoutType.SCHEDULE_TO_CLOSE;
}
