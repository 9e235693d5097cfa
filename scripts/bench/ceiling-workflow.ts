/**
 * The engine ceiling of `npm run bench`: a workflow that does nothing but answer one Update.
 * Started by Update-with-Start on the broker's Temporal server, it costs what every broker flow
 * pays to Temporal and nothing else. Bundled by the bench for its own task queue; never by the
 * broker's worker.
 */
import { condition, defineUpdate, proxyLocalActivities, setHandler, upsertSearchAttributes } from '@temporalio/workflow';
import { AkOutcome, AkStage } from '../../lib/search-attributes';

export const benchPingUpdate = defineUpdate<string, []>('benchPing');

export async function benchEmptyWorkflow(): Promise<void> {
  let answered = false;
  setHandler(benchPingUpdate, () => {
    answered = true;
    return 'ok';
  });
  await condition(() => answered);
}

/**
 * The mint's shape with none of its work (`--flows shape,shape_sa_start,shape_sa`, rows run only when named): a
 * plain start (eager where the client rides the worker's connection, as the broker's API does),
 * one local activity that does nothing, and the result fetched by the client. `shape_sa_start`
 * adds the three search attributes the API starts a mint with; `shape_sa` also upserts the stage
 * and outcome at the end (`upsert`), as workflows/mint.ts marks them. The differences between the
 * rows are what each costs the engine; between `shape` and the ceiling, what the start-and-result
 * shape with a local activity costs against Update-with-Start.
 */
const { benchNoop } = proxyLocalActivities<{ benchNoop(): Promise<string> }>({ startToCloseTimeout: '10 seconds' });

export async function benchMintShapeWorkflow(opts: { upsert: boolean }): Promise<string> {
  const answer = await benchNoop();
  if (opts.upsert) {
    upsertSearchAttributes([
      { key: AkStage, value: 'done' },
      { key: AkOutcome, value: 'ok' },
    ]);
  }
  return answer;
}
