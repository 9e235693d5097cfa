import {
  ActivityFailure,
  ApplicationFailure,
  ParentClosePolicy,
  patched,
  proxyLocalActivities,
  startChild,
  upsertSearchAttributes,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { AkFlow, AkOutcome, AkStage } from '../lib/search-attributes';
import { accountAttributes } from './account-attribute';
import { FailureType } from './definitions';
import { showOutcome, showStage } from './progress';
import { flowFailure } from './failures';
import { APPROVAL_ID_PREFIX, type ApprovalInput } from './approval.definitions';
import { SYSTEM_FLOW_METADATA } from '../lib/system-flow-metadata';
import { MintActivityFailure, type MintFailureDetails, type MintRequest, type PendingMint, type SealedMint } from './mint.definitions';

/** Seconds the agent still hears a decision or the expiry from the approval flow (after that, the approvals row answers). */
const APPROVAL_GRACE_SECONDS = 60;

/**
 * The whole mint is one local activity (activities/mint.ts): authorise + the decision's row, the
 * target's exchange, the outcome row. Each local activity costs a round trip between the SDK core
 * and the workflow thread, more than most of the steps' own work. The activity repeats nothing
 * that left the broker: it retries the exchange and the outcome row itself and then ends for good,
 * so a retry here only re-runs authorisation and the intent row (single by its idem key).
 */
const { mint } = proxyLocalActivities<Activities>({
  // Inside: audit writes bounded by BROKER_AUDIT_WRITE_TIMEOUT_MS, an exchange of a few tries at
  // most 8 s each; within the mint's 1-minute execution timeout.
  startToCloseTimeout: '50 seconds',
  scheduleToCloseTimeout: '55 seconds',
  retry: { initialInterval: '100 ms', backoffCoefficient: 2, maximumInterval: '1 second', maximumAttempts: 3 },
});

/** The ApplicationFailure the activity ended with (its last attempt's), if any. */
function activityCause(e: unknown): ApplicationFailure | undefined {
  if (e instanceof ActivityFailure) return e.cause instanceof ApplicationFailure ? e.cause : undefined;
  return e instanceof ApplicationFailure ? e : undefined;
}

function mark(stage: string, outcome?: string): void {
  if (outcome) showOutcome(outcome);
  else showStage(stage);
  upsertSearchAttributes([{ key: AkStage, value: stage }, ...(outcome ? [{ key: AkOutcome, value: outcome }] : [])]);
}

/**
 * POST /v1/mint-* (workflow id mint/<request_id>): one run per mint, whatever its target. Nothing
 * leaves before its audit rows are durable, and the answer leaves sealed to the API's key.
 */
export async function mintWorkflow(req: MintRequest): Promise<SealedMint | PendingMint> {
  // Since the mint-approval patch a grant that asks for approval opens a request (docs/approvals.md).
  const approvals = patched('mint-approval');
  let outcome;
  try {
    outcome = await mint(approvals ? { ...req, approvals: true } : req);
  } catch (e) {
    const cause = activityCause(e);
    if (cause?.type === FailureType.auditError) {
      mark('done', 'audit_error');
      throw flowFailure(FailureType.auditError, 'the mint could not be recorded in the audit log, so no credential was issued; try again later');
    }
    const failed = (cause?.details?.[0] as Partial<MintFailureDetails> | undefined)?.outcome;
    mark('done', failed ?? 'failed');
    // A target's failure (e.g. StsFailed) keeps its type, which the API maps to its wire error.
    throw ApplicationFailure.create({
      type: cause?.type ?? MintActivityFailure.authoriseFailed,
      message: cause?.message ?? 'the mint failed',
      nonRetryable: true,
    });
  }
  if (outcome.denied) {
    mark('done', 'denied');
    throw flowFailure(FailureType.forbidden, outcome.reason);
  }
  if ('pending' in outcome) {
    // The wait is the approval flow's: it outlives this run (ABANDON), which answers the agent 202 now.
    const { sealTo: _dropped, ...mintRequest } = req;
    const input: ApprovalInput = { opened: outcome.pending, mint: mintRequest, graceSeconds: APPROVAL_GRACE_SECONDS };
    await startChild('approvalWorkflow', {
      workflowId: APPROVAL_ID_PREFIX + outcome.pending.approval_id,
      args: [input],
      parentClosePolicy: ParentClosePolicy.ABANDON,
      workflowIdReusePolicy: 'REJECT_DUPLICATE',
      ...SYSTEM_FLOW_METADATA.approval,
      typedSearchAttributes: [
        { key: AkFlow, value: 'approval' },
        { key: AkStage, value: 'awaiting_approval' },
        ...accountAttributes({ omni_account: req.caller.omniAccount, account_tag: req.caller.accountTag }),
      ],
    });
    mark('done', 'awaiting_approval');
    return { pending: outcome.pending };
  }
  mark('done', 'ok');
  return outcome.minted;
}
