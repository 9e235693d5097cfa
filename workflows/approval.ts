import { ActivityFailure, ApplicationFailure, condition, patched, proxyLocalActivities, setHandler, sleep, upsertSearchAttributes } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { AkStage } from '../lib/search-attributes';
import { isSealPublicJwk } from '../lib/seal-key';
import type { FailureTypeName } from '../lib/errors';
import { FailureType } from './definitions';
import {
  APPROVAL_COLLECTOR_PATCH,
  APPROVAL_WINDOW_CLOSES_PATCH,
  approvalDecisionUpdate,
  approvalPollUpdate,
  type ApprovalDecisionInput,
  type ApprovalHandout,
  type ApprovalInput,
  type ApprovalOutcome,
  type ApprovalPollInput,
  type ApprovalPollResult,
} from './approval.definitions';
import { flowFailure } from './failures';
import type { MintRequest } from './mint.definitions';
import { pollBudget, pollPacer } from './poll-pacing';
import { finishFlow, showStage } from './progress';

type Status = 'pending' | 'deciding' | 'approved' | 'denied' | 'expired';

/** Seconds an approved request stays collectable (the agent polls every few seconds; this is slack for a pause). */
const COLLECT_WINDOW_SECONDS = 300;

const { recordApprovalDecision, notifyApprovalHolder, mint } = proxyLocalActivities<Activities>({
  startToCloseTimeout: '50 seconds',
  retry: { initialInterval: '200 ms', backoffCoefficient: 2, maximumInterval: '2 seconds', maximumAttempts: 3 },
});

/**
 * The expiry's record (the row marked expired, its audit row) is tried until the database answers,
 * as the kill switch's document is: nobody waits on it (polls already hear expired), and the flow
 * failing instead would leave the row pending with no `approval.expire` row. Its pauses stay under
 * the SDK's local retry threshold (a minute), so no timer is added to a run's commands: the change
 * needs no patch, and the replay suite's histories still replay.
 */
const { expireApprovalRequest } = proxyLocalActivities<Activities>({
  startToCloseTimeout: '50 seconds',
  retry: { initialInterval: '200 ms', backoffCoefficient: 2, maximumInterval: '10 seconds' },
});

/** The ApplicationFailure an activity ended with, else an audit failure (nothing was recorded). */
function causeOf(e: unknown): ApplicationFailure {
  const cause = e instanceof ActivityFailure ? e.cause : e;
  if (cause instanceof ApplicationFailure && cause.type && cause.type !== FailureType.auditError)
    return flowFailure(cause.type as FailureTypeName, cause.message, cause.details?.[0] as Record<string, unknown> | undefined);
  return flowFailure(FailureType.auditError, 'the decision or the hand-out could not be recorded; try again');
}

/**
 * The hand-out's mint as the collecting poll runs it: its caller's bearer and HTTP request are the
 * poll's, the opener's kept as `requestedBy` (patch `approval-collector`). A poll from an API older
 * than the patch names no bearer: the opener's stay, as before.
 */
function collectorsMint(
  request: Omit<MintRequest, 'sealTo'>,
  poll: ApprovalPollInput,
  approvalId: string,
): Omit<MintRequest, 'sealTo' | 'handout'> & { handout: ApprovalHandout } {
  if (poll.bearer_hash === undefined) return { ...request, handout: { approvalId } };
  return {
    ...request,
    caller: { ...request.caller, bearerHash: poll.bearer_hash },
    httpRequestId: poll.http_request_id,
    handout: { approvalId, requestedBy: { bearerHash: request.caller.bearerHash, httpRequestId: request.httpRequestId ?? null } },
  };
}

/**
 * One mint waiting for its holder's decision (docs/approvals.md; workflow id approval/<id>, started
 * by the mint flow, which has already answered the agent 202). The holder's decision arrives as
 * approvalDecision (checked by the API: owner, proof), one at a time: the first is recorded
 * (services/approvals.ts, a conditional change of the row with its audit row), every later one is a
 * conflict. The agent polls with approvalPoll (CIBA poll mode): pending, slow_down, denied,
 * expired, or — once approved — the credential, minted then by the mint activity and sealed to the
 * polling API's fresh key, exactly once. A timer ends the wait at expires_at (the row marked
 * expired); the agent hears the end for a grace period, then the row answers.
 */
export async function approvalWorkflow(input: ApprovalInput): Promise<ApprovalOutcome> {
  const { opened, mint: request } = input;
  const approvalId = opened.approval_id;
  const expiresAtMs = opened.expires_at * 1000;
  let status: Status = 'pending';
  let collecting = false;
  let collected = false;
  // The collection window has ended uncollected: no hand-out starts after it.
  let handOutClosed = false;
  const pacer = pollPacer(opened.interval);
  const polls = pollBudget(input.pollsPerRun);
  const stage = (value: string) => {
    showStage(value);
    upsertSearchAttributes([{ key: AkStage, value }]);
  };
  const expireIfDue = () => {
    if (status === 'pending' && Date.now() >= expiresAtMs) status = 'expired';
  };

  setHandler(
    approvalDecisionUpdate,
    async (decision: ApprovalDecisionInput) => {
      expireIfDue();
      if (status === 'expired') throw flowFailure(FailureType.expired, 'this approval request has expired; nothing was decided');
      if (status !== 'pending') throw flowFailure(FailureType.conflict, 'this approval request has already been decided');
      // Set before the first await: a concurrent decision sees it and is refused (one wins).
      status = 'deciding';
      try {
        const r = await recordApprovalDecision({ approvalId, requestId: request.requestId, decision });
        status = r.status;
        stage(r.status);
        return r;
      } catch (e) {
        // Nothing was recorded: the request stays open.
        status = 'pending';
        throw causeOf(e);
      }
    },
    {
      // A decision that cannot land is refused before it is accepted: nothing enters the history.
      validator: (d: ApprovalDecisionInput) => {
        if (d?.decision !== 'approve' && d?.decision !== 'deny') throw flowFailure(FailureType.badRequest, 'decision must be approve or deny');
        if (typeof d.omni_account !== 'string' || !d.proof) throw flowFailure(FailureType.badRequest, 'no account or proof');
        if (status === 'expired' || (status === 'pending' && Date.now() >= expiresAtMs))
          throw flowFailure(FailureType.expired, 'this approval request has expired; nothing was decided');
        if (status !== 'pending') throw flowFailure(FailureType.conflict, 'this approval request has already been decided');
      },
    },
  );

  setHandler(
    approvalPollUpdate,
    async (poll: ApprovalPollInput): Promise<ApprovalPollResult> => {
      polls.count();
      expireIfDue();
      const shown = { interval: pacer.interval, expires_at: opened.expires_at };
      if (collected) return { status: 'collected', ...shown };
      if (status === 'denied') return { status: 'denied', ...shown };
      if (status === 'expired' || handOutClosed) return { status: 'expired', ...shown };
      if (status === 'approved' && !collecting) {
        collecting = true;
        try {
          // Since the approval-collector patch the hand-out's rows name the session that collects (the opener's as requested_by_*).
          const outcome = await mint(
            patched(APPROVAL_COLLECTOR_PATCH)
              ? { ...collectorsMint(request, poll, approvalId), sealTo: poll.sealTo }
              : { ...request, sealTo: poll.sealTo, handout: { approvalId } },
          );
          if ('minted' in outcome) {
            collected = true;
            return { status: 'approved', minted: outcome.minted };
          }
          // Authorised no more (the grant revoked since the approval): nothing handed out, ever.
          status = 'denied';
          stage('denied');
          throw flowFailure(FailureType.forbidden, 'denied' in outcome && outcome.denied ? outcome.reason : 'nothing to hand out');
        } catch (e) {
          if (e instanceof ApplicationFailure && e.type === FailureType.forbidden) throw e;
          throw causeOf(e);
        } finally {
          collecting = false;
        }
      }
      return { status: pacer.tooSoon(Date.now()) ? 'slow_down' : 'pending', interval: pacer.interval, expires_at: opened.expires_at };
    },
    {
      // Only the agent that asked polls; anyone else hears the same as for an unknown request.
      validator: (poll: ApprovalPollInput) => {
        if (poll?.agent_account !== request.caller.omniAccount) throw flowFailure(FailureType.notFound, 'no such approval request for this agent');
        // Only the shape (lib/seal-key.ts); the activity's seal checks the key itself.
        if (!isSealPublicJwk(poll.sealTo)) throw flowFailure(FailureType.badRequest, 'no seal key');
        polls.check(status === 'pending' && Date.now() < expiresAtMs, pacer.interval);
      },
    },
  );

  stage('awaiting_approval');
  // The holder is told; a mail that cannot be sent leaves the request listed and open all the same.
  await notifyApprovalHolder({ approvalId }).catch(() => undefined);
  await condition(() => status === 'approved' || status === 'denied', Math.max(0, expiresAtMs - Date.now()));
  await condition(() => status !== 'deciding');
  let ended: ApprovalOutcome;
  const settled = status as Status; // set by the Update handlers while this function awaited
  if (settled === 'approved') {
    await condition(() => collected && !collecting, (input.collectWindowSeconds ?? COLLECT_WINDOW_SECONDS) * 1000);
    // Past the window a poll hears expired (410), as the row will say, instead of collecting a
    // credential the run then reports uncollected; a hand-out already running finishes.
    if (patched(APPROVAL_WINDOW_CLOSES_PATCH)) handOutClosed = true;
    await condition(() => !collecting);
    ended = collected ? 'collected' : 'uncollected';
  } else if (settled === 'denied') {
    ended = 'denied';
  } else {
    status = 'expired';
    stage('expired');
    await expireApprovalRequest({ approvalId, requestId: request.requestId });
    ended = 'expired';
  }
  // The agent hears the end for a while; after that the approvals row answers (the API reads it).
  await sleep(input.graceSeconds * 1000);
  return finishFlow(ended);
}
