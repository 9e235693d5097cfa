import { allHandlersFinished, condition, setCurrentDetails, upsertSearchAttributes } from '@temporalio/workflow';
import { AkOutcome, AkStage } from '../lib/search-attributes';

/**
 * What the Temporal UI shows as a run's current details (its metadata query): the stage it is at,
 * then how it ended — the same words as AkStage and AkOutcome, never an address, account or code.
 * It sets workflow state only and issues no command, so replays of older histories are unchanged.
 */
export function showStage(stage: string): void {
  setCurrentDetails(`Stage: ${stage}`);
}

export function showOutcome(outcome: string): void {
  setCurrentDetails(`Done: ${outcome}`);
}

/**
 * How a login flow ends: its outcome shown, AkStage `done` and AkOutcome set (one command, as the
 * flows have always issued it), and every Update handler let finish before the run completes.
 */
export async function finishFlow<O extends string>(outcome: O): Promise<O> {
  showOutcome(outcome);
  upsertSearchAttributes([
    { key: AkStage, value: 'done' },
    { key: AkOutcome, value: outcome },
  ]);
  await condition(allHandlersFinished);
  return outcome;
}
