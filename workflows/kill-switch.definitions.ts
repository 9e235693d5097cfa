import { defineSignal } from '@temporalio/workflow';

/** One workflow per task queue keeps the kill switch's deny policy in step with its entries (docs/kill-switch.md). */
export const killSwitchWorkflowId = (taskQueue: string): string => `kill-switch/${taskQueue}`;

/** Sent (with start) after each revocation: apply the entries now. */
export const killSwitchChanged = defineSignal('killSwitchChanged');

/**
 * Patch (1.4.0): a run continues as new once it has taken SIGNALS_PER_RUN signals (Temporal refuses
 * a run's signals past 10,000, signal-with-start included), and one round of applyKillSwitch is
 * bounded (its retries end at a schedule-to-close deadline, then the run continues as new).
 */
export const KILL_SWITCH_SIGNAL_BUDGET_PATCH = 'kill-switch-signal-budget';

/**
 * The workflow's input: none from the API (every field takes its default); tests shorten the
 * budget and the round bound. A continue-as-new hands it on.
 */
export interface KillSwitchInput {
  /** Signals a run takes before it continues as new, checked after each round (default 1000). */
  signalsPerRun?: number;
  /** How long one round's applyKillSwitch may keep retrying before the run continues as new (default 600). */
  roundTimeoutSeconds?: number;
}

export interface KillSwitchApplied {
  /** Entries in force after this application. */
  entries: number;
  /** Entries dropped because nothing minted before their revocation can still be valid. */
  dropped: number;
  /** When the earliest entry in force expires (ms since the epoch), or null when none is. */
  nextExpiryMs: number | null;
  /** Wallets whose entries are denied by issue time, too many to name one by one (docs/kill-switch.md, "Limits"). */
  collapsedWallets?: number;
  /** Every agent session issued before the latest cutoff is denied: not even the wallets fitted. */
  roleWide?: boolean;
}
