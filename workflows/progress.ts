import { setCurrentDetails } from '@temporalio/workflow';

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
