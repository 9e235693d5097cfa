import { defineSignal } from '@temporalio/workflow';

/** One workflow per task queue keeps the kill switch's deny policy in step with its entries (docs/kill-switch.md). */
export const killSwitchWorkflowId = (taskQueue: string): string => `kill-switch/${taskQueue}`;

/** Sent (with start) after each revocation: apply the entries now. */
export const killSwitchChanged = defineSignal('killSwitchChanged');

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
