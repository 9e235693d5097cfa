import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { decodeJwt, decodeProtectedHeader, generateKeyPair, SignJWT } from 'jose';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { createApprovalActivities } from '../activities/approval';
import { AkStage } from '../lib/search-attributes';
import { APPROVAL_ID_PREFIX } from '../workflows/approval.definitions';
import { FLOW_METADATA } from '../lib/flow-metadata';
import {
  approvalRow,
  unchanged,
  auditEvents,
  bindAgentWithApproval,
  decide,
  emailHolder,
  holderLogin,
  poll,
  requestMint,
  signedDecision,
  viewOf,
  type ApprovalView,
  type Holder,
  type Pending,
} from './approval-client';
import { spyWorkflowStarts } from './adversarial-probes';
import { deviceCode, pollToken, verify } from './device-client';
import { devMail, uniqueEmail } from './email-login-client';
import { startStack, type TestStack } from './harness';
import { bindAgent } from './grant-client';
import { auditCount, emailLogin, walletLogin, type Session, type WalletSession } from './mint-client';
import { newWallet } from './wallet-client';

let stack: TestStack;
let holder: Holder;
let agent: WalletSession;
let stranger: WalletSession;
let notifyEmail: string;
/** The access token of an email-code login of notifyEmail: the proof that the holder controls it. */
let notifyProof: string;
let notifiedGrant: string;
/** An agent under a grant whose requests time out after 5 s (this stack's shortest, BROKER_APPROVAL_TIMEOUT_MIN_SECONDS). */
let expiringAgent: WalletSession;
/**
 * Its request, opened before the first test with the holder's signed approval in hand: the expiry
 * test (the last) decides it after expires_at, so its 5 s run out while the other tests run.
 */
let expiring: { id: string; expiresAt: number; signature: `0x${string}` };

before(async () => {
  stack = await startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000', BROKER_APPROVAL_TIMEOUT_MIN_SECONDS: '5' } });
  stack.sts.setJwksUrl(`${stack.url}/.well-known/jwks.json`);
  [holder, agent, stranger] = await Promise.all([holderLogin(stack), walletLogin(stack), walletLogin(stack)]);
  notifyEmail = uniqueEmail('approvals');
  notifyProof = (await emailLogin(stack, notifyEmail)).token;
  expiringAgent = await walletLogin(stack);
  await bindAgentWithApproval(stack, holder, expiringAgent, { timeout_seconds: 5 });
  const opened = await requestMint(stack, expiringAgent, { reason: 'will expire' });
  const view = await viewOf(stack, holder, opened.approval_id);
  expiring = { id: opened.approval_id, expiresAt: opened.expires_at, signature: await holder.signTypedData(view.sign!.approve) };
  notifiedGrant = await bindAgentWithApproval(stack, holder, agent, { notify_email: notifyEmail, notify_email_proof: notifyProof });
});
after(async () => {
  await stack?.stop();
});

async function expectError(res: { status: number; body: unknown; text: string }, status: number, error: string): Promise<void> {
  assert.equal(res.status, status, res.text);
  assert.equal((res.body as { error: string }).error, error, res.text);
}

void describe('grants that ask for approval', () => {
  void test('the approval policy is validated and shown on the grant', async () => {
    const agentWallet = (await walletLogin(stack)).wallet.lower;
    // The grants and the audit log as they are; the request opened before the first test may expire
    // meanwhile (its flow's own audit row), which no refusal here has to do with.
    const state = async () => {
      const r = await stack.db.query<{ grants: string; audit: string }>(
        `SELECT (SELECT count(*) FROM grants) AS grants,
                (SELECT count(*) FROM audit_log WHERE NOT (event = 'approval.expire' AND details->>'approval_id' = $1)) AS audit`,
        [expiring.id],
      );
      return { grants: Number(r.rows[0]?.grants), audit: Number(r.rows[0]?.audit) };
    };
    const before = await state();
    for (const approval of [
      { mode: 'sometimes' },
      { mode: 'always', timeout_seconds: 4 }, // under this stack's BROKER_APPROVAL_TIMEOUT_MIN_SECONDS (5; 30 by default)
      { mode: 'always', timeout_seconds: 3601 },
      { mode: 'beyond' },
      { mode: 'beyond', targets: ['ftp'] },
      { mode: 'always', notify_email: 'not an address' },
    ]) {
      const res = await stack.request('POST', '/v1/grants', { token: holder.token, body: { agent_address: agentWallet, approval } });
      assert.equal(res.status, 400, `${JSON.stringify(approval)}: ${res.text}`);
      if (approval.timeout_seconds === 4) assert.match(res.text, /at least 5/, 'the refusal names the configured minimum');
    }
    assert.deepEqual(await state(), before, 'a refused grant wrote a grant or an audit row');
    const pairs = await stack.db.query('SELECT 1 FROM grants WHERE agent_address = $1', [agentWallet]);
    assert.equal(pairs.rowCount, 0, 'a grant to the agent exists');
    const res = await stack.request('POST', '/v1/grants', {
      token: holder.token,
      body: { agent_address: agentWallet, approval: { mode: 'beyond', max_duration_seconds: 900, targets: ['aws'] } },
    });
    assert.equal(res.status, 201, res.text);
    assert.deepEqual((res.body as { approval: unknown }).approval, { mode: 'beyond', max_duration_seconds: 900, targets: ['aws'], timeout_seconds: 300 });
    // The accepted one is seen by the same count: a grant more.
    assert.equal((await state()).grants, before.grants + 1);
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

/** The mail to `address` naming `approvalId`, waited for (up to 5 s). */
async function mailNaming(address: string, approvalId: string) {
  let mails: Awaited<ReturnType<typeof devMail>> = [];
  for (let i = 0; i < 50 && mails.length === 0; i++) {
    mails = (await devMail(stack, address)).filter((m) => m.text.includes(approvalId));
    if (!mails.length) await sleep(100);
  }
  return mails;
}

/** `token` re-signed by a key that is not the broker's: every claim and header field as the broker issued them. */
async function forged(token: string): Promise<string> {
  const { privateKey } = await generateKeyPair('ES256');
  const { kid, typ } = decodeProtectedHeader(token);
  return new SignJWT(decodeJwt(token)).setProtectedHeader({ alg: 'ES256', ...(kid ? { kid } : {}), ...(typ ? { typ } : {}) }).sign(privateKey);
}

void describe('notify_email must be an address the holder proved it controls', () => {
  let asker: Holder;
  /** An address the asker does not control, and a live session of it (someone else's). */
  let victim: string;
  let victimSession: Session;
  let other: Session & { email: string };

  before(async () => {
    asker = await holderLogin(stack);
    victim = uniqueEmail('victim');
    [victimSession, other] = await Promise.all([emailLogin(stack, victim), emailLogin(stack, uniqueEmail('other'))]);
  });

  const counts = async (omni: string) => {
    const r = await stack.db.query<{ grants: string; audit: string }>(
      'SELECT (SELECT count(*) FROM grants WHERE main_account = $1) AS grants, (SELECT count(*) FROM audit_log WHERE omni_account = $1) AS audit',
      [omni],
    );
    return r.rows[0];
  };

  /** POST /v1/grants with `approval`: 400 bad_request saying why and what to do; no grant row, no audit row. */
  async function refused(approval: Record<string, unknown>, why: RegExp): Promise<void> {
    const before = await counts(asker.omni_account);
    const res = await stack.request('POST', '/v1/grants', {
      token: asker.token,
      body: { agent_address: newWallet().lower, approval: { mode: 'always', ...approval } },
    });
    await expectError(res, 400, 'bad_request');
    const message = (res.body as { message: string }).message;
    assert.match(message, why);
    assert.match(message, /sign in with that address \(email code or Google\) and pass that session's access token as approval\.notify_email_proof/);
    assert.match(message, /leave notify_email out to use this account's own verified address/);
    if (typeof approval.notify_email_proof === 'string') assert.ok(!res.text.includes(approval.notify_email_proof), 'the answer echoes the proof');
    assert.deepEqual(await counts(asker.omni_account), before, 'a grant or an audit row was written');
  }

  void test('an address without a proof is refused: 400, no grant, no audit row', async () => {
    await refused({ notify_email: victim }, /is not this account's verified address and comes without approval\.notify_email_proof/);
  });

  void test('a live session of another address is no proof of this one: 400', async () => {
    await refused({ notify_email: victim, notify_email_proof: other.token }, /a session of another address/);
  });

  void test('a forged or garbage proof is refused: 400', async () => {
    await refused({ notify_email: victim, notify_email_proof: await forged(victimSession.token) }, /not a live session of this broker/);
    await refused({ notify_email: victim, notify_email_proof: 'garbage' }, /not a live session of this broker/);
    await refused({ notify_email: victim, notify_email_proof: `${victimSession.token}x` }, /not a live session of this broker/);
  });

  void test('a wallet-login session is no proof of an address (not an email identity): 400', async () => {
    await refused({ notify_email: victim, notify_email_proof: stranger.token }, /not an email identity/);
    // Not even the asker's own wallet session.
    await refused({ notify_email: victim, notify_email_proof: asker.token }, /not an email identity/);
  });

  void test('a proof whose session was logged out is refused: 400 (it was accepted while live)', async () => {
    const live = await stack.request('POST', '/v1/grants', {
      token: asker.token,
      body: { agent_address: newWallet().lower, approval: { mode: 'always', notify_email: victim, notify_email_proof: victimSession.token } },
    });
    assert.equal(live.status, 201, live.text);
    const out = await stack.request('POST', '/v1/session/logout', { token: victimSession.token });
    assert.equal(out.status, 204, out.text);
    await refused({ notify_email: victim, notify_email_proof: victimSession.token }, /not a live session of this broker \(session has been logged out\)/);
  });

  void test('the proof is checked and dropped: the grant and its audit row hold the proven address, never the token', async () => {
    const g = await stack.db.query<{ approval: Record<string, unknown> }>('SELECT approval FROM grants WHERE grant_id = $1', [notifiedGrant]);
    const stored = g.rows[0]?.approval;
    assert.equal(stored?.notify_email, notifyEmail.toLowerCase());
    assert.equal(typeof stored?.notify_email_proven_at, 'number');
    assert.equal(stored?.notify_email_proof, undefined);
    const audit = await stack.db.query<{ details: Record<string, unknown> }>(
      `SELECT details FROM audit_log WHERE event = 'grant.create' AND details->>'grant_id' = $1`,
      [notifiedGrant],
    );
    assert.equal(audit.rowCount, 1);
    assert.equal((audit.rows[0]?.details.approval as Record<string, unknown>).notify_email, notifyEmail.toLowerCase());
    const anywhere = await stack.db.query(
      `SELECT 1 FROM grants WHERE approval::text LIKE '%' || $1 || '%' UNION ALL SELECT 1 FROM audit_log WHERE details::text LIKE '%' || $1 || '%'`,
      [notifyProof.split('.')[2]],
    );
    assert.equal(anywhere.rowCount, 0, 'the proof token was stored');
  });

  void test('an email-login holder names its own address without a proof: accepted, and the notice goes there', async () => {
    const person = await emailHolder(stack, uniqueEmail('own'));
    const itsAgent = await walletLogin(stack);
    // Typed in another case than the login's: compared normalised.
    await bindAgent(stack, person.token, itsAgent.wallet, { approval: { mode: 'always', notify_email: person.email.toUpperCase() } });
    const p = await requestMint(stack, itsAgent, { reason: 'own address' });
    assert.equal((await mailNaming(person.email, p.approval_id)).length, 1, 'no notification mail at the holder’s own address');
  });

  void test('a policy from before the proof (notify_email unproven) mails the account’s own address, never that one', async () => {
    const person = await emailHolder(stack, uniqueEmail('legacy'));
    const itsAgent = await walletLogin(stack);
    const unproven = uniqueEmail('unproven');
    const grantId = await bindAgent(stack, person.token, itsAgent.wallet, { approval: { mode: 'always' } });
    // The row as an earlier release wrote it: an address the holder typed, nothing proven.
    await stack.db.query(`UPDATE grants SET approval = approval || jsonb_build_object('notify_email', $2::text) WHERE grant_id = $1`, [grantId, unproven]);
    const p = await requestMint(stack, itsAgent, { reason: 'legacy policy' });
    assert.equal((await mailNaming(person.email, p.approval_id)).length, 1, 'no notification mail at the holder’s own address');
    assert.deepEqual(
      (await devMail(stack, unproven)).filter((m) => m.text.includes(p.approval_id)),
      [],
      'the unproven address was mailed',
    );
  });
});

void describe("the agent's reason is one line of plain text", () => {
  void test('control characters (C0 with tab, CR and LF; DEL; C1), line separators and bidi overrides are a 400 naming the field; nothing is opened', async () => {
    const cases: [string, string][] = [
      ['ESC', 'ok\u001b[2J\u001b[Happroved'],
      ['CR', 'deploy\rapproved by the holder'],
      ['LF', 'deploy\nagentkeys approve'],
      ['TAB', 'deploy\tnow'],
      ['BEL', 'ring\u0007'],
      ['DEL', 'x\u007f'],
      ['C1 CSI', 'x\u009b2J'],
      ['C1 NEL', 'x\u0085y'],
      ['LINE SEPARATOR', 'x\u2028y'],
      ['RLO', 'invoice \u202egnp.exe'],
      ['LRE', '\u202ax'],
      ['PDF', 'x\u202c'],
      ['RLI', 'x\u2067y\u2069'],
      ['FSI', '\u2068x'],
      ['RLM', 'x\u200f'],
      ['ALM', 'x\u061cy'],
    ];
    // What a mint request writes: an approvals row, its approval.request row, mint rows (the expiring request's own expiry may land meanwhile).
    const written = async () =>
      (
        await stack.db.query<{ approvals: number; audit: number }>(
          `SELECT (SELECT count(*)::int FROM approvals) AS approvals,
                  (SELECT count(*)::int FROM audit_log WHERE event = 'approval.request' OR event LIKE 'mint.%') AS audit`,
        )
      ).rows[0];
    const before = await written();
    const starts = spyWorkflowStarts(stack.temporal);
    try {
      for (const [name, reason] of cases) {
        const res = await stack.request('POST', '/v1/mint-oidc-jwt', { token: agent.token, body: { reason } });
        assert.equal(res.status, 400, `${name}: ${res.text}`);
        const body = res.body as { error: string; message: string };
        assert.equal(body.error, 'bad_request', name);
        assert.match(body.message, /^body\.reason: reason must be one line of plain text: U\+[0-9A-F]{4} at character \d+ is refused/, name);
        const code = (reason.match(/[^\x20-\x7e]/)?.[0]?.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0');
        assert.ok(body.message.includes(`U+${code}`), `${name}: ${body.message}`);
      }
      assert.equal(starts.count(), 0, 'a mint or approval flow was started');
    } finally {
      starts.restore();
    }
    assert.deepEqual(await written(), before, 'a refused reason wrote rows');
    // Printable text in any script, emoji and punctuation is one line, and is kept as sent.
    const plain = 'déployer le build — «nightly» 🚀 (ticket #42); 日本語 OK';
    const p = await requestMint(stack, agent, { reason: plain });
    assert.equal((await viewOf(stack, holder, p.approval_id)).reason, plain);
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

  void test('the holder is mailed the request and the commands that decide it, at the proven notify_email', async () => {
    const mails = await mailNaming(notifyEmail, pending.approval_id);
    assert.equal(mails.length, 1, 'no notification mail');
    const text = mails[0]?.text ?? '';
    assert.ok(text.includes(`agentkeys approve ${pending.approval_id}`), text);
    assert.ok(text.includes(agent.wallet.lower), text);
    assert.ok(text.includes('deploy the nightly build'), text);
  });

  void test('the notice runs again (a retry, or the flow’s task after a worker died): no second mail, and the row says when it went', async () => {
    // Recorded just after the mail service answered, so shortly after the mail is seen.
    let row = await approvalRow(stack, pending.approval_id);
    for (let i = 0; i < 50 && !row?.notified_at; i++) {
      await sleep(100);
      row = await approvalRow(stack, pending.approval_id);
    }
    assert.ok(row?.notified_at instanceof Date, 'the sent notice is not recorded');
    const rerun = createApprovalActivities(stack.activityDeps);
    assert.deepEqual(await rerun.notifyApprovalHolder({ approvalId: pending.approval_id }), { sent: true });
    assert.equal((await mailNaming(notifyEmail, pending.approval_id)).length, 1, 'mailed twice');
    assert.equal((await approvalRow(stack, pending.approval_id))?.notified_at?.getTime(), row.notified_at.getTime(), 'the first time stays');
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
    assert.deepEqual(
      { staticSummary: await described.staticSummary(), staticDetails: await described.staticDetails() },
      FLOW_METADATA.approval,
      'the approval flow starts with its metadata from lib/flow-metadata.ts',
    );
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
    await unchanged(stack, id, async () => {
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
    await unchanged(stack, id, async () => {
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
    await unchanged(stack, p.approval_id, async () => {
      await expectError(await send(), 409, 'conflict');
    });
  });

  void test('a session without a wallet decides without a signature only from a login made here (an email code of the holder, just now); a device login of the holder is refused; others are refused', async () => {
    const person = await emailHolder(stack);
    const itsAgent = await walletLogin(stack);
    await bindAgent(stack, person.token, itsAgent.wallet, { approval: { mode: 'always' } });
    const p = await requestMint(stack, itsAgent);
    // The holder's notice marks the row when it is sent; wait for it, so that no check below sees it as a change.
    for (let i = 0; i < 100 && !(await approvalRow(stack, p.approval_id))?.notified_at; i++) await sleep(100);
    assert.ok((await approvalRow(stack, p.approval_id))?.notified_at, 'the holder was not notified');
    // An email account owns no grant (no main wallet): deciding the holder's request is another account's, 404.
    const emailAccount = await emailLogin(stack);
    await unchanged(stack, p.approval_id, async () => {
      await expectError(await decide(stack, emailAccount.token, p.approval_id, { decision: 'approve' }), 404, 'not_found');
    });
    // The holder approves a device code (RFC 8628): that session names the holder's account and was
    // made just now, but from another device, where a phisher may hold it (§5.4): 403.
    const dc = await deviceCode(stack);
    assert.equal((await verify(stack, person.token, dc.user_code)).status, 200);
    const got = await pollToken(stack, dc.device_code);
    assert.equal(got.status, 200, got.text);
    const deviceSession = (got.body as { token: string }).token;
    await unchanged(stack, p.approval_id, async () => {
      const refused = await decide(stack, deviceSession, p.approval_id, { decision: 'approve' });
      await expectError(refused, 403, 'forbidden');
      assert.match((refused.body as { message: string }).message, /^deciding without a wallet signature needs a login made on this device/);
    });
    // The holder's own email-code login, made here just now, decides.
    const res = await decide(stack, person.token, p.approval_id, { decision: 'approve' });
    assert.equal(res.status, 200, res.text);
    const row = await approvalRow(stack, p.approval_id);
    assert.equal(row?.status, 'approved');
    assert.equal(row?.receipt?.via, 'fresh-session');
    assert.equal(typeof row?.receipt?.auth_time, 'number');
    const collected = await poll(stack, itsAgent.token, p.approval_id);
    assert.equal(collected.status, 200, collected.text);
    assert.equal((collected.body as { status: string }).status, 'approved');
  });
});

void describe('expiry', () => {
  void test('deciding after expires_at is 410 with nothing changed; the agent hears 410; the row says expired', async () => {
    const { id, signature } = expiring;
    const wait = expiring.expiresAt * 1000 + 500 - Date.now();
    if (wait > 0) await sleep(wait);
    await unchanged(stack, id, async () => {
      await expectError(await decide(stack, holder.token, id, { decision: 'approve', signature }), 410, 'expired');
    });
    let row = await approvalRow(stack, id);
    for (let i = 0; i < 50 && row?.status !== 'expired'; i++) {
      await sleep(100);
      row = await approvalRow(stack, id);
    }
    assert.equal(row?.status, 'expired');
    assert.equal((await auditEvents(stack, 'approval.expire', id)).length, 1);
    // The agent polling for its credential hears the end, and no other wallet hears anything of it.
    await expectError(await poll(stack, expiringAgent.token, id), 410, 'expired');
    await expectError(await poll(stack, stranger.token, id), 404, 'not_found');
  });
});
