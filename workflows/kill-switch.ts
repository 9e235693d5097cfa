import { condition, continueAsNew, proxyActivities, setHandler } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { killSwitchChanged } from './kill-switch.definitions';

const { applyKillSwitch } = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  // IAM being down must not lose a revocation: keep trying, backing off to a minute.
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

/** Rounds before the history is handed to a fresh run. */
const ROUNDS_PER_RUN = 200;

/**
 * Applies the kill switch's entries whenever a revocation signals, and again when the earliest
 * entry expires (a durable timer: the entry leaves the deny policy at its expiry, not at the next
 * maintenance run). Ends when no entry is left; the next revocation starts it again.
 */
export async function killSwitchWorkflow(): Promise<void> {
  let changed = false;
  setHandler(killSwitchChanged, () => {
    changed = true;
  });
  for (let round = 0; round < ROUNDS_PER_RUN; round++) {
    changed = false;
    const { nextExpiryMs } = await applyKillSwitch();
    if (changed) continue;
    if (nextExpiryMs === null) return;
    await condition(() => changed, Math.max(1000, nextExpiryMs - Date.now() + 1000));
  }
  await continueAsNew<typeof killSwitchWorkflow>();
}
