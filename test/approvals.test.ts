import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { AkStage } from '../lib/search-attributes';
import { APPROVAL_ID_PREFIX } from '../workflows/approval.definitions';
import {
  approvalRow,
  auditEvents,
  bindAgentWithApproval,
  decide,
  holderLogin,
  poll,
  requestMint,
  signedDecision,
  viewOf,
  type ApprovalView,
  type Holder,
  type Pending,
} from './approval-client';
import { devMail, uniqueEmail } from './email-login-client';
import { startStack, type TestStack } from './harness';
import { auditCount, emailLogin, walletLogin, type WalletSession } from './mint-client';

let stack: TestStack;
let holder: Holder;
let agent: WalletSession;
let stranger: WalletSession;
let notifyEmail: string;
/** A request under a 30 s timeout, opened first: the last tests decide and poll it after it expired. */
let expiring: Pending;

before(async () => {
  stack = await startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000' } });
  stack.sts.setJwksUrl(`${stack.url}/.well-known/jwks.json`);
  [holder, agent, stranger] = await Promise.all([holderLogin(stack), walletLogin(stack), walletLogin(stack)]);
  notifyEmail = uniqueEmail('approvals');
  const expiringAgent = await walletLogin(stack);
  await bindAgentWithApproval(stack, holder, expiringAgent, { timeout_seconds: 30 });
  expiring = await requestMint(stack, expiringAgent, { reason: 'will expire' });
  await bindAgentWithApproval(stack, holder, agent, { notify_email: notifyEmail });
});
after(async () => {
  await stack?.stop();
});

/** The row and the audit log as they are: a refusal must leave both as they were. */
async function unchanged(id: string, body: () => Promise<void>): Promise<void> {
  const [row, audit] = await Promise.all([approvalRow(stack, id), auditCount(stack)]);
  await body();
  assert.deepEqual(await approvalRow(stack, id), row, 'the approvals row changed');
  assert.equal(await auditCount(stack), audit, 'an audit row was written');
}

async function expectError(res: { status: number; body: unknown; text: string }, status: number, error: string): Promise<void> {
  assert.equal(res.status, status, res.text);
  assert.equal((res.body as { error: string }).error, error, res.text);
}

void describe('grants that ask for approval', () => {
  void test('the approval policy is validated and shown on the grant', async () => {
    const agentWallet = (await walletLogin(stack)).wallet.lower;
    for (const approval of [
      { mode: 'sometimes' },
      { mode: 'always', timeout_seconds: 29 },
      { mode: 'always', timeout_seconds: 3601 },
      { mode: 'beyond' },
      { mode: 'beyond', targets: ['ftp'] },
      { mode: 'always', notify_email: 'not an address' },
    ]) {
      const res = await stack.request('POST', '/v1/grants', { token: holder.token, body: { agent_address: agentWallet, approval } });
      assert.equal(res.status, 400, `${JSON.stringify(approval)}: ${res.text}`);
    }
    const res = await stack.request('POST', '/v1/grants', {
      token: holder.token,
      body: { agent_address: agentWallet, approval: { mode: 'beyond', max_duration_seconds: 900, targets: ['aws'] } },
    });
    assert.equal(res.status, 201, res.text);
    assert.deepEqual((res.body as { approval: unknown }).approval, { mode: 'beyond', max_duration_seconds: 900, targets: ['aws'], timeout_seconds: 300 });
  });

  void test('beyond: a mint within the standing limit mints at once, one beyond it waits', async () => {
    const beyondAgent = await walletLogin(stack);
    await bindAgentWithApproval(stack, holder, beyondAgent, { mode: 'beyond', max_duration_seconds: 900, targets: ['aws'] });
    const within = await stack.request('POST', '/v1/mint-aws-creds', { token: beyondAgent.token, body: { duration_seconds: 900 } });
    assert.equal(within.status, 200, within.text);
    await requestMint(stack, beyondAgent, { duration_seconds: 1800 }, '/v1/mint-aws-creds');
    await requestMint(stack, beyondAgent, {}, '/v1/mint-oidc-jwt'); // a target outside the standing list
  });
});

void describe('an agent asks, the holder approves, the agent collects once', () => {
  let pending: Pending;

  void test('the mint answers 202 with an approval id; nothing is minted; the request is audited', async () => {
    const before = await auditCount(stack);
    pending = await requestMint(stack, agent, { reason: 'deploy the nightly build' });
    assert.match(pending.approval_id, /^apr_[0-9a-f]{32}$/);
    assert.equal(pending.status, 'pending');
    assert.ok(pending.expires_at > Date.now() / 1000 + 250 && pending.expires_at <= Date.now() / 1000 + 301, `expires_at ${pending.expires_at}`);
    assert.ok(pending.interval >= 1);
    assert.equal((await approvalRow(stack, pending.approval_id))?.status, 'pending');
    const requested = await auditEvents(stack, 'approval.request', pending.approval_id);
    assert.equal(requested.length, 1);
    assert.equal(requested[0]?.details.reason, 'deploy the nightly build');
    const mints = await stack.db.query(`SELECT 1 FROM audit_log WHERE event LIKE 'mint.oidc%' AND seq > $1 AND omni_account = $2`, [
      before,
      agent.omni_account,
    ]);
    assert.equal(mints.rowCount, 0, 'a mint row was written for a request that waits');
  });

  void test('the holder is mailed the request and the commands that decide it', async () => {
    let mails: Awaited<ReturnType<typeof devMail>> = [];
    for (let i = 0; i < 50 && mails.length === 0; i++) {
      mails = (await devMail(stack, notifyEmail)).filter((m) => m.text.includes(pending.approval_id));
      if (!mails.length) await sleep(100);
    }
    assert.equal(mails.length, 1, 'no notification mail');
    const text = mails[0]?.text ?? '';
    assert.ok(text.includes(`agentkeys approve ${pending.approval_id}`), text);
    assert.ok(text.includes(agent.wallet.lower), text);
    assert.ok(text.includes('deploy the nightly build'), text);
  });

  void test('ops find the waiting request in Temporal by AkStage=awaiting_approval', async () => {
    const workflowId = APPROVAL_ID_PREFIX + pending.approval_id;
    let found: string[] = [];
    for (let i = 0; i < 50 && found.length === 0; i++) {
      found = [];
      for await (const wf of stack.temporal.workflow.list({ query: `AkStage = "awaiting_approval" AND WorkflowId = "${workflowId}"` }))
        found.push(wf.workflowId);
      if (!found.length) await sleep(200);
    }
    assert.deepEqual(found, [workflowId]);
    const described = await stack.temporal.workflow.getHandle(workflowId).describe();
    assert.deepEqual(described.typedSearchAttributes.get(AkStage), 'awaiting_approval');
  });

  void test('the agent polls: pending, then slow_down when it polls faster than interval', async () => {
    const first = await poll(stack, agent.token, pending.approval_id);
    assert.equal(first.status, 200, first.text);
    const again = await poll(stack, agent.token, pending.approval_id);
    assert.equal(again.status, 200, again.text);
    const statuses = [(first.body as Pending).status, (again.body as Pending).status];
    assert.ok(statuses.includes('slow_down'), `statuses ${statuses.join(',')}`);
    const slowed = [first.body, again.body].find((b) => (b as Pending).status === 'slow_down') as Pending;
    assert.equal(slowed.interval, pending.interval + 5);
  });

  void test('the holder lists what exactly is asked', async () => {
    const res = await stack.request('GET', '/v1/approvals?role=owner', { token: holder.token });
    assert.equal(res.status, 200, res.text);
    const listed = (res.body as { approvals: ApprovalView[] }).approvals.find((a) => a.approval_id === pending.approval_id);
    assert.ok(listed, res.text);
    assert.equal(listed.status, 'pending');
    assert.equal(listed.agent_address, agent.wallet.lower);
    assert.equal(listed.main_address, holder.wallet.lower);
    assert.equal(listed.target, 'oidc');
    assert.equal(listed.reason, 'deploy the nightly build');
    assert.ok(listed.requested_at <= Math.floor(Date.now() / 1000));
    assert.match(listed.request_hash, /^0x[0-9a-f]{64}$/);
    assert.equal((listed.sign?.approve.message as { requestHash: string }).requestHash, listed.request_hash);
    // The agent's own list as owner is empty; a stranger sees nothing either.
    for (const other of [agent, stranger]) {
      const theirs = await stack.request('GET', '/v1/approvals?role=owner', { token: other.token });
      assert.deepEqual((theirs.body as { approvals: unknown[] }).approvals, []);
    }
  });

  void test('refusals change nothing: malformed, forged, another wallet, unsigned wallet session, another account', async () => {
    const id = pending.approval_id;
    const { signature } = await signedDecision(stack, holder, id, 'approve');
    await unchanged(id, async () => {
      await expectError(await decide(stack, holder.token, id, { decision: 'approve', signature: '0x1234' }), 400, 'bad_request');
      // Forged: a well-formed signature over other data (the deny typed data) does not approve.
      const view = await viewOf(stack, holder, id);
      const overDeny = await holder.signTypedData(view.sign!.deny);
      await expectError(await decide(stack, holder.token, id, { decision: 'approve', signature: overDeny }), 401, 'unauthorized');
      // Signed by another wallet over exactly the right typed data.
      const other = privateKeyToAccount(generatePrivateKey());
      const byOther = await other.signTypedData(view.sign!.approve);
      await expectError(await decide(stack, holder.token, id, { decision: 'approve', signature: byOther }), 401, 'unauthorized');
      // A wallet-login session must sign.
      await expectError(await decide(stack, holder.token, id, { decision: 'approve' }), 400, 'bad_request');
      // Another account, even with the holder's signature: 404, as for a request that does not exist.
      await expectError(await decide(stack, stranger.token, id, { decision: 'approve', signature }), 404, 'not_found');
      await expectError(await decide(stack, agent.token, id, { decision: 'approve', signature }), 404, 'not_found');
      await expectError(await decide(stack, holder.token, `apr_${'0'.repeat(32)}`, { decision: 'approve', signature }), 404, 'not_found');
      // Another agent polls it: 404.
      await expectError(await poll(stack, stranger.token, id), 404, 'not_found');
      await expectError(await decide(stack, holder.token, id, { decision: 'maybe', signature }), 400, 'bad_request');
    });
  });

  void test('16 concurrent approvals: exactly one wins, the others are 409, one decision row with its receipt', async () => {
    const id = pending.approval_id;
    const { signature } = await signedDecision(stack, holder, id, 'approve');
    const answers = await Promise.all(Array.from({ length: 16 }, () => decide(stack, holder.token, id, { decision: 'approve', signature })));
    const statuses = answers.map((a) => a.status).sort();
    assert.deepEqual(statuses, [200, ...Array<number>(15).fill(409)], answers.map((a) => `${a.status} ${a.text}`).join('\n'));
    const row = await approvalRow(stack, id);
    assert.equal(row?.status, 'approved');
    assert.equal(row?.receipt?.via, 'eip712');
    assert.equal(row?.receipt?.signer, holder.wallet.lower);
    assert.equal(row?.receipt?.signature, signature);
    const decided = await auditEvents(stack, 'approval.decide', id);
    assert.equal(decided.length, 1);
    assert.equal((decided[0]?.details.receipt as { signature: string }).signature, signature);
  });

  void test('a replayed approval, approving twice and denying after are 409 with nothing changed', async () => {
    const id = pending.approval_id;
    const row = await approvalRow(stack, id);
    const signature = row?.receipt?.signature as string;
    await unchanged(id, async () => {
      await expectError(await decide(stack, holder.token, id, { decision: 'approve', signature }), 409, 'conflict');
      const denyView = await stack.request('GET', `/v1/approvals/${id}`, { token: holder.token });
      assert.equal((denyView.body as ApprovalView).sign, undefined, 'a decided request offers nothing to sign');
    });
  });

  void test('the agent collects the credential once, audited with the approval id', async () => {
    const id = pending.approval_id;
    const got = await poll(stack, agent.token, id);
    assert.equal(got.status, 200, got.text);
    const body = got.body as { status: string; jwt: string; wallet: string };
    assert.equal(body.status, 'approved');
    assert.equal(body.wallet, holder.wallet.lower);
    assert.equal(body.jwt.split('.').length, 3);
    assert.ok((await approvalRow(stack, id))?.collected_at, 'the hand-out is not recorded');
    const ok = await stack.db.query<{ details: Record<string, unknown> }>(
      `SELECT details FROM audit_log WHERE event = 'mint.oidc' AND outcome = 'ok' AND details->>'approval_id' = $1`,
      [id],
    );
    assert.equal(ok.rowCount, 1);
    await expectError(await poll(stack, agent.token, id), 409, 'conflict');
  });
});

void describe('denials and revocations', () => {
  void test('the holder denies: the agent hears 403 and nothing is minted', async () => {
    const p = await requestMint(stack, agent, { reason: 'please' });
    const { send } = await signedDecision(stack, holder, p.approval_id, 'deny');
    const res = await send();
    assert.equal(res.status, 200, res.text);
    assert.equal((res.body as { status: string }).status, 'denied');
    await expectError(await poll(stack, agent.token, p.approval_id), 403, 'forbidden');
    assert.equal((await auditEvents(stack, 'approval.decide', p.approval_id))[0]?.outcome, 'denied');
    const minted = await stack.db.query(`SELECT 1 FROM audit_log WHERE event = 'mint.oidc' AND details->>'approval_id' = $1`, [p.approval_id]);
    assert.equal(minted.rowCount, 0);
  });

  void test('approving while the grant is revoked is 409 and changes nothing', async () => {
    const revokedAgent = await walletLogin(stack);
    const grantId = await bindAgentWithApproval(stack, holder, revokedAgent);
    const p = await requestMint(stack, revokedAgent);
    const { send } = await signedDecision(stack, holder, p.approval_id, 'approve');
    const del = await stack.request('DELETE', `/v1/grants/${grantId}`, { token: holder.token });
    assert.equal(del.status, 204, del.text);
    await unchanged(p.approval_id, async () => {
      await expectError(await send(), 409, 'conflict');
    });
  });

  void test('an account without a wallet decides with a fresh session; a stale one must sign in again', async () => {
    // An email account owns no grant (no main wallet); what it is refused is deciding another's request.
    const emailHolder = await emailLogin(stack);
    const p = await requestMint(stack, agent);
    await unchanged(p.approval_id, async () => {
      await expectError(await decide(stack, emailHolder.token, p.approval_id, { decision: 'approve' }), 404, 'not_found');
    });
    // The holder's own fresh session cannot skip the signature: it is a wallet account.
    await unchanged(p.approval_id, async () => {
      await expectError(await decide(stack, holder.token, p.approval_id, { decision: 'approve' }), 400, 'bad_request');
    });
  });
});

void describe('expiry', () => {
  void test('deciding after expires_at is 410 with nothing changed; the agent hears 410; the row says expired', async () => {
    const id = expiring.approval_id;
    const view = await viewOf(stack, holder, id);
    const signature = await holder.signTypedData(view.sign!.approve);
    const wait = expiring.expires_at * 1000 - Date.now() + 500;
    if (wait > 0) await sleep(wait);
    await unchanged(id, async () => {
      await expectError(await decide(stack, holder.token, id, { decision: 'approve', signature }), 410, 'expired');
    });
    let row = await approvalRow(stack, id);
    for (let i = 0; i < 50 && row?.status !== 'expired'; i++) {
      await sleep(100);
      row = await approvalRow(stack, id);
    }
    assert.equal(row?.status, 'expired');
    assert.equal((await auditEvents(stack, 'approval.expire', id)).length, 1);
  });
});
