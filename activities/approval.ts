import { log } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { findGrant } from '../db/grants';
import { findApproval, markApprovalNotified } from '../db/approvals';
import { findUserByOmni } from '../db/users';
import { provenNotifyEmail, verifiedEmailOf } from '../lib/approvals';
import { BrokerError, FailureType } from '../lib/errors';
import { createApprovalService } from '../services/approvals';
import { failureOf } from '../workflows/failures';
import type { ApprovalDecisionInput, ApprovalDecisionResult } from '../workflows/approval.definitions';
import { PERMANENT_SES_ERRORS } from '../adapters/ses-mailer';
import type { ActivityDeps } from './deps';

/** A refusal of the service as the flow's failure (its code kept for the API); anything else is retryable. */
function asFailure(e: unknown): ApplicationFailure {
  if (e instanceof BrokerError) return failureOf(e.errorCode, e.message, { details: e.extra.body });
  return ApplicationFailure.retryable(`the approval could not be recorded: ${(e as Error).message}`, FailureType.auditError);
}

/**
 * The address the holder is told at: the grant's notify_email when it was proven (lib/approvals.ts),
 * else the account's email identity (or its verified Google email). An unproven notify_email (a
 * policy written before the proof was asked for) is never mailed.
 */
async function holderEmail(deps: ActivityDeps, grantId: string, mainAccount: string): Promise<string | undefined> {
  const grant = await findGrant(deps.db, grantId);
  const proven = provenNotifyEmail(grant?.approval);
  if (proven) return proven;
  return verifiedEmailOf(await findUserByOmni(deps.db, mainAccount));
}

export function createApprovalActivities(deps: ActivityDeps) {
  const approvals = createApprovalService(deps);
  return {
    /** The holder's checked decision, recorded once (services/approvals.ts recordDecision). */
    async recordApprovalDecision(input: { approvalId: string; requestId: string; decision: ApprovalDecisionInput }): Promise<ApprovalDecisionResult> {
      try {
        const row = await approvals.recordDecision(input.approvalId, input.decision, input.requestId);
        return { status: row.status === 'approved' ? 'approved' : 'denied', decided_at: Math.floor((row.decided_at ?? new Date()).getTime() / 1000) };
      } catch (e) {
        throw asFailure(e);
      }
    },

    /** The request's time is up: its row marked expired, with its audit row (nothing when it was decided first). */
    async expireApprovalRequest(input: { approvalId: string; requestId: string }): Promise<void> {
      await approvals.expire(input.approvalId, input.requestId);
    },

    /**
     * Tells the holder through the mail service: what is asked and the commands that decide.
     * No address known: nothing sent (the request is listed all the same). Once sent, the row says
     * so, and a rerun (a retry, the flow's task run again after a worker died) sends nothing; a
     * second mail takes a send whose own answer was lost, or the row's update failing after it.
     */
    async notifyApprovalHolder(input: { approvalId: string }): Promise<{ sent: boolean }> {
      const row = await findApproval(deps.db, input.approvalId);
      if (!row) return { sent: false };
      if (row.notified_at) return { sent: true };
      const to = await holderEmail(deps, row.grant_id, row.main_account);
      if (!to) return { sent: false };
      const params = Object.entries(row.params)
        .map(([k, v]) => `${k}=${v}`)
        .join(', ');
      const text =
        `Agent ${row.agent_address} asks to mint ${row.target} credentials under grant ${row.grant_id}` +
        `${params ? ` (${params})` : ''}.\n` +
        `Reason given: ${row.reason ?? '(none)'}\nRequested at: ${row.requested_at.toISOString()}\nDecide before: ${row.expires_at.toISOString()}\n\n` +
        `To approve:  agentkeys approve ${row.approval_id}\nTo deny:     agentkeys deny ${row.approval_id}\nTo list:     agentkeys approvals\n\n` +
        `Nothing is minted unless you approve. If you do not know this agent, deny and revoke the grant.\n`;
      try {
        await deps.mailer.send({ to, subject: `AgentKeys: approve a ${row.target} mint for agent ${row.agent_address}? (${row.approval_id})`, text });
      } catch (e) {
        const name = (e as Error).name;
        if (PERMANENT_SES_ERRORS.has(name)) throw ApplicationFailure.nonRetryable(`the mail service refused the message (${name})`, FailureType.deliveryFailed);
        throw ApplicationFailure.retryable(`sending the notification failed (${name}); will retry`, FailureType.mailTransient);
      }
      try {
        await markApprovalNotified(deps.db, row.approval_id, new Date(deps.now()));
      } catch (e) {
        // The mail went: failing here would send it again on the retry.
        log.warn('the approval notice was sent but could not be recorded as sent', { approvalId: row.approval_id, error: (e as Error).message });
      }
      return { sent: true };
    },
  };
}
