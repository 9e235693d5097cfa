/**
 * Edges of approval grants and of what a holder reads of its agents' mints:
 *
 * - a `beyond` policy with max_duration_seconds holds back the targets that take no duration (a
 *   bare OIDC token, a Google token: the agent picks the lifetime of what it exchanges them for);
 * - a stranger's refused mint naming the holder's grant id is not the holder's to read or prove,
 *   and a failed exchange under the grant is (its failed row names the grant);
 * - an approved mint collected by another session of the agent is recorded as that session's;
 * - approval requests opened from one client address are limited, checked before anything opens.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { hmacHex } from '../lib/digest';
import { spyWorkflowStarts, type WorkflowStartSpy } from './adversarial-probes';
import { approvalRow, bindAgentWithApproval, holderLogin, poll, requestMint, signedDecision, viewOf } from './approval-client';
import { bindAgent } from './grant-client';
import { apiRequest, startStack, withApiUnder, type ApiRequest, type TestStack } from './harness';
import { emailLogin, walletLogin, type WalletSession } from './mint-client';

const GCP_AUDIENCE = '//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/gaps-pool/providers/gaps-provider';

let stack: TestStack;
let starts: WorkflowStartSpy;

before(async () => {
  stack = await startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000' } });
  stack.sts.setJwksUrl(`${stack.url}/.well-known/jwks.json`);
  starts = spyWorkflowStarts(stack.temporal);
});
after(async () => {
  starts?.restore();
  stack?.sts.failAlways(null);
  await stack?.stop();
});

interface AuditEntry {
  seq: string;
  event: string;
  outcome: string;
  request_id: string | null;
  details: Record<string, unknown>;
}

/** Every mint row the holder reads under its grants (GET /v1/audit?of=grants, one page is plenty here). */
async function mintsUnderGrants(token: string): Promise<AuditEntry[]> {
  const res = await stack.request('GET', '/v1/audit?of=grants&limit=200', { token });
  assert.equal(res.status, 200, res.text);
  return (res.body as { entries: AuditEntry[] }).entries;
}

const bearerHashOf = (token: string) => hmacHex(stack.secrets.hmacSecret, 'audit-bearer', token).slice(0, 32);

void describe('a beyond policy with max_duration_seconds', () => {
  void test('targets without a duration wait for the holder unless named in targets; an AWS mint within the limit mints at once', async () => {
    const [holder, agent] = await Promise.all([holderLogin(stack), walletLogin(stack)]);
    await bindAgentWithApproval(stack, holder, agent, { mode: 'beyond', max_duration_seconds: 900 });

    const oidc = await requestMint(stack, agent, {}, '/v1/mint-oidc-jwt');
    const gcp = await requestMint(stack, agent, { audience: GCP_AUDIENCE }, '/v1/mint-gcp-token');
    for (const p of [oidc, gcp]) {
      const why = await stack.db.query<{ why: string }>(
        `SELECT details->>'why' AS why FROM audit_log WHERE event = 'approval.request' AND details->>'approval_id' = $1`,
        [p.approval_id],
      );
      assert.match(why.rows[0]?.why ?? '', /cannot hold the lifetime/, JSON.stringify(why.rows));
    }
    const aws = await stack.request('POST', '/v1/mint-aws-creds', { token: agent.token, body: { duration_seconds: 900 } });
    assert.equal(aws.status, 200, aws.text);
    const longer = await stack.request('POST', '/v1/mint-aws-creds', { token: agent.token, body: { duration_seconds: 901 } });
    assert.equal(longer.status, 202, longer.text);

    // Named in targets: the holder chose to let those mint at once.
    const [holder2, agent2] = await Promise.all([holderLogin(stack), walletLogin(stack)]);
    await bindAgentWithApproval(stack, holder2, agent2, { mode: 'beyond', max_duration_seconds: 900, targets: ['aws', 'oidc'] });
    const named = await stack.request('POST', '/v1/mint-oidc-jwt', { token: agent2.token });
    assert.equal(named.status, 200, named.text);
    await requestMint(stack, agent2, { audience: GCP_AUDIENCE }, '/v1/mint-gcp-token');
  });
});

void describe('a Google Cloud mint without its audience, under a grant that always asks', () => {
  void test('no body or a null one: 400 before anything opens (no approval request, no row, no workflow); with an audience it waits, naming it', async () => {
    const [holder, agent] = await Promise.all([holderLogin(stack), walletLogin(stack)]);
    await bindAgentWithApproval(stack, holder, agent);
    const counts = async () =>
      (
        await stack.db.query<{ approvals: number; audit: number }>(
          `SELECT (SELECT count(*) FROM approvals WHERE agent_account = $1)::int AS approvals,
                  (SELECT count(*) FROM audit_log WHERE omni_account = $1 OR event = 'approval.request')::int AS audit`,
          [agent.omni_account],
        )
      ).rows[0];
    const before = await counts();
    const started = starts.count();
    for (const [what, opts] of [
      ['no body', {}],
      ['a null body', { body: null }],
    ] as const) {
      const res = await stack.request('POST', '/v1/mint-gcp-token', { token: agent.token, ...opts });
      assert.equal(res.status, 400, `${what}: ${res.text}`);
      assert.equal((res.body as { error: string }).error, 'bad_request', `${what}: ${res.text}`);
    }
    assert.equal(starts.count(), started, 'a refused mint started a workflow');
    assert.deepEqual(await counts(), before, 'a refused mint opened a request or wrote a row');
    // The holder is only ever asked about a mint that names its audience.
    const pending = await requestMint(stack, agent, { audience: GCP_AUDIENCE }, '/v1/mint-gcp-token');
    assert.deepEqual((await viewOf(stack, holder, pending.approval_id)).params, { audience: GCP_AUDIENCE });
  });
});

void describe('what the holder reads of mints under its grants', () => {
  void test("a stranger's refused mint naming the holder's grant is not listed or proven to the holder; a failed exchange under the grant is listed", async () => {
    const [holder, agent, stranger, emailStranger] = await Promise.all([walletLogin(stack), walletLogin(stack), walletLogin(stack), emailLogin(stack)]);
    const grantId = await bindAgent(stack, holder.token, agent.wallet);

    for (const s of [stranger, emailStranger]) {
      const res = await stack.request('POST', '/v1/mint-oidc-jwt', { token: s.token, body: { grant_id: grantId } });
      assert.equal(res.status, 403, res.text);
    }
    const strangers = await stack.db.query<{ seq: string }>(
      `SELECT seq::text AS seq FROM audit_log WHERE omni_account = ANY($1) AND details->>'grant_id' = $2 ORDER BY seq`,
      [[stranger.omni_account, emailStranger.omni_account], grantId],
    );
    assert.equal(strangers.rows.length, 2, 'each refusal is on its caller’s log, naming the id it sent');

    // The agent's own refusal under the grant (a scope that does not cover the target) stays the holder's to read.
    const scoped = await bindAgent(stack, holder.token, agent.wallet, { scope: { services: ['s3'] } });
    const refused = await stack.request('POST', '/v1/mint-oidc-jwt', { token: agent.token, body: { grant_id: scoped } });
    assert.equal(refused.status, 403, refused.text);

    // A failed exchange under the grant: its intent and its failed outcome.
    stack.sts.failAlways('AccessDenied');
    let failedMint;
    try {
      failedMint = await stack.request('POST', '/v1/mint-aws-creds', { token: agent.token, body: { grant_id: grantId } });
    } finally {
      stack.sts.failAlways(null);
    }
    assert.equal(failedMint.status, 502, failedMint.text);

    const listed = await mintsUnderGrants(holder.token);
    const seqs = new Set(listed.map((e) => e.seq));
    for (const r of strangers.rows) assert.ok(!seqs.has(r.seq), `a stranger's row ${r.seq} is listed to the holder`);
    assert.ok(
      listed.some((e) => e.event === 'mint.oidc' && e.outcome === 'denied' && e.details.grant_id === scoped),
      `the agent's own refusal is listed: ${JSON.stringify(listed)}`,
    );
    const aws = listed.filter((e) => e.event.startsWith('mint.aws'));
    assert.deepEqual(
      aws.map((e) => [e.event, e.outcome]),
      [
        ['mint.aws', 'failed'],
        ['mint.aws.intent', 'ok'],
      ],
      JSON.stringify(aws),
    );
    assert.equal(aws[0]?.details.grant_id, grantId);
    assert.equal(aws[0]?.details.child_wallet, agent.wallet.lower);
    assert.equal(aws[0]?.request_id, aws[1]?.request_id);

    for (const r of strangers.rows) {
      const proof = await stack.request('GET', `/v1/audit/proof?seq=${r.seq}`, { token: holder.token });
      assert.equal(proof.status, 404, `the holder is proven a stranger's row ${r.seq}: ${proof.text}`);
    }
    const own = await stack.request('GET', `/v1/audit/proof?seq=${aws[0]?.seq}`, { token: holder.token });
    assert.notEqual(own.status, 404, `the failed row under the grant is the holder's to prove: ${own.text}`);
  });
});

void describe('an approved mint collected by another session', () => {
  void test('a decision that finds the row pending but no flow for it (the moment before the mint starts it) is 503 "send it again", not 410; the row stays pending', async () => {
    const holder = await holderLogin(stack);
    const agent: WalletSession = await walletLogin(stack);
    await bindAgentWithApproval(stack, holder, agent);
    const { approval_id: id } = await requestMint(stack, agent);
    const decision = await signedDecision(stack, holder, id, 'deny');
    // No flow for the pending row: what a decision meets before the mint has started the flow.
    await stack.temporal.workflow.getHandle(`approval/${id}`).terminate('stands for a flow not started yet');
    const r = await decision.send();
    assert.equal(r.status, 503, r.text);
    assert.equal((r.body as { error: string }).error, 'unavailable');
    assert.match((r.body as { message: string }).message, /still being opened; nothing was decided: send the decision again/);
    assert.equal(r.headers.get('retry-after'), '1');
    assert.equal((await approvalRow(stack, id))?.status, 'pending', 'nothing was decided');
  });

  void test('the hand-out rows name the session and request that collected it, and the opener as requested_by_*', async () => {
    const holder = await holderLogin(stack);
    const opener: WalletSession = await walletLogin(stack);
    await bindAgentWithApproval(stack, holder, opener);
    const opened = await stack.request('POST', '/v1/mint-oidc-jwt', { token: opener.token, body: { reason: 'collected elsewhere' } });
    assert.equal(opened.status, 202, opened.text);
    const approvalId = (opened.body as { approval_id: string }).approval_id;
    assert.equal((await stack.request('POST', '/v1/session/logout', { token: opener.token })).status, 204);
    assert.equal((await (await signedDecision(stack, holder, approvalId, 'approve')).send()).status, 200);

    const collector = await walletLogin(stack, opener.wallet);
    assert.equal(collector.omni_account, opener.omni_account);
    const got = await poll(stack, collector.token, approvalId);
    assert.equal(got.status, 200, got.text);
    assert.equal((got.body as { status: string }).status, 'approved');

    const rows = await stack.db.query<{ event: string; outcome: string; details: Record<string, unknown> }>(
      `SELECT event, outcome, details FROM audit_log WHERE event LIKE 'mint.oidc%' AND details->>'approval_id' = $1 ORDER BY seq`,
      [approvalId],
    );
    // The intent row names who minted (the ok row, committed with it, names what was minted); both name the opener.
    assert.deepEqual(
      rows.rows.map((r) => [r.event, r.outcome]),
      [
        ['mint.oidc.intent', 'ok'],
        ['mint.oidc', 'ok'],
      ],
    );
    const [intent, ok] = rows.rows;
    assert.equal(intent?.details.bearer_hash, bearerHashOf(collector.token), 'the hand-out is recorded as the collecting session’s');
    assert.notEqual(bearerHashOf(collector.token), bearerHashOf(opener.token));
    assert.equal(intent?.details.http_request_id, got.headers.get('x-request-id'));
    for (const r of [intent, ok]) {
      assert.equal(r?.details.requested_by_bearer_hash, bearerHashOf(opener.token), `${r?.event}`);
      assert.equal(r?.details.requested_by_http_request_id, opened.headers.get('x-request-id'), `${r?.event}`);
    }
  });
});

void describe('approval requests opened per client address', () => {
  const LIMIT = 2;

  /** The API again with a small BROKER_RATE_LIMIT_APPROVAL_OPEN_PER_IP_PER_MINUTE (its own limits), on the stack's database and Temporal. */
  const withLimit = <T>(run: (request: ApiRequest) => Promise<T>): Promise<T> =>
    withApiUnder(stack, { BROKER_RATE_LIMIT_APPROVAL_OPEN_PER_IP_PER_MINUTE: String(LIMIT) }, (url) => run(apiRequest(url)));

  const counts = async (agentAccount: string) =>
    (
      await stack.db.query<{ approvals: number; audit: number }>(
        `SELECT (SELECT count(*) FROM approvals WHERE agent_account = $1)::int AS approvals,
                (SELECT count(*) FROM audit_log WHERE omni_account = $1 OR event = 'approval.request')::int AS audit`,
        [agentAccount],
      )
    ).rows[0];

  void test(`past ${LIMIT} opened requests a minute from one address: 429 before anything opens (no row, no audit row, no workflow)`, async () => {
    const [holder, agent] = await Promise.all([holderLogin(stack), walletLogin(stack)]);
    await bindAgentWithApproval(stack, holder, agent);
    await withLimit(async (request) => {
      for (let i = 0; i < LIMIT; i++) {
        const res = await request('POST', '/v1/mint-oidc-jwt', { token: agent.token });
        assert.equal(res.status, 202, res.text);
      }
      const before = await counts(agent.omni_account);
      const started = starts.count();
      const refused = await request('POST', '/v1/mint-oidc-jwt', { token: agent.token });
      assert.equal(refused.status, 429, refused.text);
      assert.equal((refused.body as { error: string }).error, 'rate_limited');
      assert.ok(Number(refused.headers.get('retry-after')) > 0, 'Retry-After');
      assert.equal(starts.count(), started, 'a refused open started a workflow');
      assert.deepEqual(await counts(agent.omni_account), before, 'a refused open wrote a row');
      // A mint by an account with no wallet (it never opens a request) is not held by it.
      const email = await emailLogin(stack);
      assert.equal((await request('POST', '/v1/mint-oidc-jwt', { token: email.token })).status, 200);
      // Nor is a wallet from the same address that mints for itself, or under a grant that asks for no approval:
      // whoever opens requests from an address cannot stop the others' mints there.
      const [self, otherHolder, freeAgent] = await Promise.all([walletLogin(stack), holderLogin(stack), walletLogin(stack)]);
      await bindAgent(stack, otherHolder.token, freeAgent.wallet);
      assert.equal((await request('POST', '/v1/mint-oidc-jwt', { token: self.token })).status, 200);
      assert.equal((await request('POST', '/v1/mint-oidc-jwt', { token: freeAgent.token })).status, 200);
    });
    // Another API process (the stack's own) keeps its own count.
    assert.equal((await stack.request('POST', '/v1/mint-oidc-jwt', { token: agent.token })).status, 202);
  });

  void test(`a burst of mints that may open requests opens at most ${LIMIT}`, async () => {
    const [holder, agent] = await Promise.all([holderLogin(stack), walletLogin(stack)]);
    await bindAgentWithApproval(stack, holder, agent);
    await withLimit(async (request) => {
      const statuses = (await Promise.all(Array.from({ length: LIMIT + 4 }, () => request('POST', '/v1/mint-oidc-jwt', { token: agent.token })))).map(
        (r) => r.status,
      );
      assert.equal(statuses.filter((x) => x === 202).length, LIMIT, statuses.join(','));
      assert.equal(statuses.filter((x) => x === 429).length, 4, statuses.join(','));
      assert.equal((await counts(agent.omni_account))?.approvals, LIMIT);
    });
  });

  void test('plain mints do not spend the budget of opened requests', async () => {
    const [holder, agent, plain] = await Promise.all([holderLogin(stack), walletLogin(stack), walletLogin(stack)]);
    await bindAgentWithApproval(stack, holder, agent);
    await withLimit(async (request) => {
      for (let i = 0; i < LIMIT * 3; i++) assert.equal((await request('POST', '/v1/mint-oidc-jwt', { token: plain.token })).status, 200);
      for (let i = 0; i < LIMIT; i++) assert.equal((await request('POST', '/v1/mint-oidc-jwt', { token: agent.token })).status, 202);
      assert.equal((await request('POST', '/v1/mint-oidc-jwt', { token: agent.token })).status, 429);
    });
  });
});
