/**
 * The approval flow on its own (test/support/workflow-env.ts): a dev server of its own, mocked
 * activities, windows under two seconds through the input (a fractional expires_at and grace: the
 * API sends whole seconds, the workflow times both in milliseconds). The timer ends an undecided request
 * (marked expired once, a late decision refused), an approved one is handed out once, and only the
 * agent that asked may poll; past its collection window an approved credential is not handed out.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { WorkflowUpdateFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Activities } from '../activities';
import { FailureType } from '../workflows/definitions';
import { approvalDecisionUpdate, approvalPollUpdate, type ApprovalInput, type ApprovalPollResult } from '../workflows/approval.definitions';
import type { MintRequest } from '../workflows/mint.definitions';
import type { SealPublicJwk } from '../lib/seal-key';
import { acceptedUpdates, startWorkflowTestEnv, updateRefusal, withWorker } from './support/workflow-env';

let env: TestWorkflowEnvironment;
before(async () => {
  env = await startWorkflowTestEnv();
});
after(async () => {
  await env?.teardown();
});

const AGENT = 'agent-account';
const SEAL = { kty: 'EC' as const, crv: 'P-256' as const, x: 'x', y: 'y' };

/** A request opened now that expires after ttlMs; the agent hears its end for graceSeconds after that. */
function inputOf(ttlMs: number, graceSeconds: number): ApprovalInput {
  const nowMs = Date.now();
  const approvalId = `apr_${randomBytes(16).toString('hex')}`;
  const mint: Omit<MintRequest, 'sealTo'> = {
    requestId: approvalId.slice(4),
    target: 'oidc',
    params: {},
    caller: { omniAccount: AGENT, authKind: 'session', bearerHash: 'h' },
  };
  return {
    opened: { approval_id: approvalId, requested_at: Math.floor(nowMs / 1000), expires_at: (nowMs + ttlMs) / 1000, interval: 1 },
    mint,
    graceSeconds,
  };
}

/** Mocks that count their calls. */
function mocks() {
  const calls = { notify: 0, expire: 0, decide: 0, mint: [] as MintRequest[] };
  const activities: Partial<Activities> = {
    notifyApprovalHolder: () => {
      calls.notify++;
      return Promise.resolve({ sent: true });
    },
    expireApprovalRequest: () => {
      calls.expire++;
      return Promise.resolve();
    },
    recordApprovalDecision: (i) => {
      calls.decide++;
      return Promise.resolve({ status: i.decision.decision === 'approve' ? 'approved' : 'denied', decided_at: Math.floor(Date.now() / 1000) });
    },
    mint: (req) => {
      calls.mint.push(req);
      return Promise.resolve({ denied: false, minted: { sealed: 'jwe', public: {}, wallet: '0xholder', expiration: 1 } });
    },
  };
  return { calls, activities };
}

const decision = { decision: 'approve' as const, omni_account: 'holder', proof: { via: 'fresh-session' as const, session_hash: 's', auth_time: 1 } };

async function failureType(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof WorkflowUpdateFailedError, String(e));
    return e.cause instanceof ApplicationFailure ? (e.cause.type ?? undefined) : undefined;
  }
  assert.fail('the update was accepted');
}

void describe('approvalWorkflow', () => {
  void test('the timer ends an undecided request: marked expired once, a late decision and poll hear expired', async () => {
    const { calls, activities } = mocks();
    await withWorker(env, activities, async (taskQueue) => {
      // 3 s of grace: the late decision and poll below (two Updates, tens of ms when idle) land inside
      // it even on a loaded machine (1 s was not always enough), and the run ends soon after them.
      const input = inputOf(900, 3);
      const h = await env.client.workflow.start('approvalWorkflow', { workflowId: `approval/${input.opened.approval_id}`, taskQueue, args: [input] });
      const first = await h.executeUpdate(approvalPollUpdate, { args: [{ agent_account: AGENT, sealTo: SEAL }] });
      assert.equal(first.status, 'pending');
      // Just past expires_at, inside the grace period.
      await sleep(Math.max(0, input.opened.expires_at * 1000 + 100 - Date.now()));
      assert.equal(await failureType(h.executeUpdate(approvalDecisionUpdate, { args: [decision] })), FailureType.expired);
      const late = await h.executeUpdate(approvalPollUpdate, { args: [{ agent_account: AGENT, sealTo: SEAL }] });
      assert.equal(late.status, 'expired');
      assert.equal(await h.result(), 'expired');
      assert.equal(calls.expire, 1);
      assert.equal(calls.decide, 0);
      assert.equal(calls.notify, 1);
    });
  });

  void test('the expiry is recorded though the database fails its first tries: the run ends expired, not failed', async () => {
    const { calls, activities } = mocks();
    // Three failures: one more than the flow's other steps are tried.
    activities.expireApprovalRequest = () => {
      calls.expire++;
      return calls.expire <= 3 ? Promise.reject(new Error('the database is not answering')) : Promise.resolve();
    };
    await withWorker(env, activities, async (taskQueue) => {
      const input = inputOf(300, 0.2);
      const h = await env.client.workflow.start('approvalWorkflow', { workflowId: `approval/${input.opened.approval_id}`, taskQueue, args: [input] });
      assert.equal(await h.result(), 'expired');
      assert.equal(calls.expire, 4);
    });
  });

  void test('approved: handed out once (a fresh seal key per poll), then collected; another agent cannot poll', async () => {
    const { calls, activities } = mocks();
    await withWorker(env, activities, async (taskQueue) => {
      // The window never ends here; 1 s of grace after the collection for the repeated poll.
      const input = inputOf(30_000, 1);
      const h = await env.client.workflow.start('approvalWorkflow', { workflowId: `approval/${input.opened.approval_id}`, taskQueue, args: [input] });
      assert.equal(await failureType(h.executeUpdate(approvalPollUpdate, { args: [{ agent_account: 'someone-else', sealTo: SEAL }] })), FailureType.notFound);
      assert.equal(calls.decide, 0, 'a refused poll recorded a decision');
      assert.equal((await h.executeUpdate(approvalDecisionUpdate, { args: [decision] })).status, 'approved');
      // The decision is recorded once, before the Update answers.
      assert.equal(calls.decide, 1);
      assert.equal(await failureType(h.executeUpdate(approvalDecisionUpdate, { args: [decision] })), FailureType.conflict);
      assert.equal(calls.decide, 1, 'the refused second decision was recorded');
      const notAKey = { kty: 'RSA', n: 'x', e: 'AQAB' } as unknown as SealPublicJwk;
      assert.equal(await failureType(h.executeUpdate(approvalPollUpdate, { args: [{ agent_account: AGENT, sealTo: notAKey }] })), FailureType.badRequest);
      // The API's key since 2026-12-06 (lib/seal.ts); a P-256 one (SEAL) is still taken.
      const fresh: SealPublicJwk = { kty: 'OKP', crv: 'X25519', x: 'fresh' };
      const got: ApprovalPollResult = await h.executeUpdate(approvalPollUpdate, { args: [{ agent_account: AGENT, sealTo: fresh }] });
      assert.equal(got.status, 'approved');
      const again = await h.executeUpdate(approvalPollUpdate, { args: [{ agent_account: AGENT, sealTo: SEAL }] });
      assert.equal(again.status, 'collected');
      assert.equal(await h.result(), 'collected');
      assert.equal(calls.mint.length, 1);
      assert.deepEqual(calls.mint[0]?.sealTo, fresh);
      assert.deepEqual(calls.mint[0]?.handout, { approvalId: input.opened.approval_id });
      assert.equal(calls.decide, 1);
      assert.equal(calls.expire, 0);
    });
  });

  void test('past its poll budget a poll while undecided is refused unrecorded (429, retry after the interval); the decision, the hand-out and the end still land', async () => {
    const { calls, activities } = mocks();
    await withWorker(env, activities, async (taskQueue) => {
      const input: ApprovalInput = { ...inputOf(30_000, 1), pollsPerRun: 3 };
      const h = await env.client.workflow.start('approvalWorkflow', { workflowId: `approval/${input.opened.approval_id}`, taskQueue, args: [input] });
      const poll = () => h.executeUpdate(approvalPollUpdate, { args: [{ agent_account: AGENT, sealTo: SEAL }] });
      for (let i = 0; i < 3; i++) assert.ok(['pending', 'slow_down'].includes((await poll()).status));
      for (let i = 0; i < 2; i++) {
        const refused = await updateRefusal(poll());
        assert.equal(refused.type, FailureType.rateLimited);
        // The interval grew by 5 s for each poll that came too soon (here every one after the first).
        assert.deepEqual(refused.details?.[0], { retry_after: 11 });
      }
      assert.equal(await acceptedUpdates(h), 3, 'a refused poll was recorded');
      assert.equal((await h.executeUpdate(approvalDecisionUpdate, { args: [decision] })).status, 'approved');
      // The poll that hands the credential out is taken whatever the count.
      assert.equal((await poll()).status, 'approved');
      // Once decided, the end is heard again (here: collected), not refused.
      assert.equal((await poll()).status, 'collected');
      assert.equal(calls.mint.length, 1);
      assert.equal(await h.result(), 'collected');
      assert.equal(await acceptedUpdates(h), 6);
    });
  });

  void test('past its poll budget, a denial is still heard by the next poll', async () => {
    const { activities } = mocks();
    await withWorker(env, activities, async (taskQueue) => {
      const input: ApprovalInput = { ...inputOf(30_000, 1), pollsPerRun: 1 };
      const h = await env.client.workflow.start('approvalWorkflow', { workflowId: `approval/${input.opened.approval_id}`, taskQueue, args: [input] });
      const poll = () => h.executeUpdate(approvalPollUpdate, { args: [{ agent_account: AGENT, sealTo: SEAL }] });
      assert.equal((await poll()).status, 'pending');
      assert.equal((await updateRefusal(poll())).type, FailureType.rateLimited);
      assert.equal((await h.executeUpdate(approvalDecisionUpdate, { args: [{ ...decision, decision: 'deny' }] })).status, 'denied');
      assert.equal((await poll()).status, 'denied');
      assert.equal(await h.result(), 'denied');
    });
  });

  void test('approved but not collected in its window: a later poll hears expired and nothing is minted', async () => {
    const { calls, activities } = mocks();
    await withWorker(env, activities, async (taskQueue) => {
      // A 0.5 s collection window (300 s in the product), then 2 s in which the agent still hears the end.
      const input: ApprovalInput = { ...inputOf(30_000, 2), collectWindowSeconds: 0.5 };
      const h = await env.client.workflow.start('approvalWorkflow', { workflowId: `approval/${input.opened.approval_id}`, taskQueue, args: [input] });
      assert.equal((await h.executeUpdate(approvalDecisionUpdate, { args: [decision] })).status, 'approved');
      // The window has ended once its patch marker is in the history (the workflow task after its
      // timer; no hand-out ran, so it is the only patch marker; local activities' are named otherwise).
      const deadline = Date.now() + 15_000;
      const windowEnded = async () => ((await h.fetchHistory()).events ?? []).some((e) => e.markerRecordedEventAttributes?.markerName === 'core_patch');
      while (!(await windowEnded())) {
        assert.ok(Date.now() < deadline, 'the collection window never ended');
        await sleep(100);
      }
      const late = await h.executeUpdate(approvalPollUpdate, { args: [{ agent_account: AGENT, sealTo: SEAL }] });
      assert.equal(late.status, 'expired');
      assert.equal(calls.mint.length, 0, 'a credential was minted after its collection window');
      assert.equal(await h.result(), 'uncollected');
    });
  });
});
