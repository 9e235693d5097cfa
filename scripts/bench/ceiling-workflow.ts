/**
 * The engine ceiling of `npm run bench`: a workflow that does nothing but answer one Update.
 * Started by Update-with-Start on the broker's Temporal server, it costs what every broker flow
 * pays to Temporal and nothing else. Bundled by the bench for its own task queue; never by the
 * broker's worker.
 */
import { condition, defineUpdate, setHandler } from '@temporalio/workflow';

export const benchPingUpdate = defineUpdate<string, []>('benchPing');

export async function benchEmptyWorkflow(): Promise<void> {
  let answered = false;
  setHandler(benchPingUpdate, () => {
    answered = true;
    return 'ok';
  });
  await condition(() => answered);
}
