/**
 * Approval of a mint (docs/approvals.md; workflow id `approval/<approval_id>`): its input, its
 * Updates and what they answer. Types, constants and definitions only: imported by the workflow,
 * the activities and the API alike.
 */
import { defineUpdate } from '@temporalio/workflow';
import type { ApprovalDecisionInput, ApprovalOpened } from '../lib/approvals';
import type { SealPublicJwk } from '../lib/seal-key';

export type { ApprovalDecisionInput, ApprovalOpened } from '../lib/approvals';
import type { MintRequest, SealedMint } from './mint.definitions';

export const APPROVAL_ID_PREFIX = 'approval/';

/** Input of approvalWorkflow: the mint that waits (its seal key dropped: each collection brings its own). */
export interface ApprovalInput {
  opened: ApprovalOpened;
  mint: Omit<MintRequest, 'sealTo'>;
  /** Seconds after a decision or the expiry during which the agent still hears it (then the row answers). */
  graceSeconds: number;
  /** Seconds an approved credential waits to be collected (default 300, docs/approvals.md); the workflow tests shorten it. */
  collectWindowSeconds?: number;
  /** Polls the run records (default MAX_POLLS_PER_RUN, workflows/poll-pacing.ts); the workflow tests lower it. */
  pollsPerRun?: number;
}

export interface ApprovalDecisionResult {
  status: 'approved' | 'denied';
  decided_at: number;
}

/** Patch id: the hand-out's audit rows name the session that collects it (docs/versioning.md). */
export const APPROVAL_COLLECTOR_PATCH = 'approval-collector';

/** Patch id: once the collection window has ended, a poll hears `expired` and nothing is minted (docs/versioning.md). */
export const APPROVAL_WINDOW_CLOSES_PATCH = 'approval-collection-window-closes';

/**
 * The agent's poll: its account (only the agent that asked may poll), a fresh seal key for the
 * credential, and who polls — the audit handle of its bearer (an HMAC, as the mint's) and the HTTP
 * request id — for the hand-out's audit rows (absent from an API older than the patch).
 */
export interface ApprovalPollInput {
  agent_account: string;
  sealTo: SealPublicJwk;
  bearer_hash?: string;
  http_request_id?: string;
}

/**
 * What a hand-out's mint carries (activities/mint.ts): the approval it hands out and, since patch
 * `approval-collector`, the session that opened the request (the mint's caller is then the one
 * that collects).
 */
export interface ApprovalHandout {
  approvalId: string;
  requestedBy?: { bearerHash: string; httpRequestId: string | null };
}

export type ApprovalPollResult =
  | { status: 'pending' | 'slow_down'; interval: number; expires_at: number }
  | { status: 'denied' | 'expired' | 'collected'; interval: number; expires_at: number }
  | { status: 'approved'; minted: SealedMint };

export type ApprovalOutcome = 'collected' | 'uncollected' | 'denied' | 'expired';

export const approvalDecisionUpdate = defineUpdate<ApprovalDecisionResult, [ApprovalDecisionInput]>('approvalDecision');
export const approvalPollUpdate = defineUpdate<ApprovalPollResult, [ApprovalPollInput]>('approvalPoll');
