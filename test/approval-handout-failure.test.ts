/**
 * A hand-out of an approved mint whose exchange fails is tried again at the agent's next poll, in
 * the same approval/<id> workflow run: each try is its own STS attempt and leaves its own intent
 * and failed rows on the audit log (activities/mint.ts writeAudit: the key names the activity).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { bindAgentWithApproval, holderLogin, poll, requestMint, signedDecision, type Holder } from './approval-client';
import { markApprovalCollected } from '../db/approvals';
import { startStack, type TestStack } from './harness';
import { walletLogin, type WalletSession } from './mint-client';

let stack: TestStack;
let holder: Holder;
let agent: WalletSession;

before(async () => {
  stack = await startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000' } });
  stack.sts.setJwksUrl(`${stack.url}/.well-known/jwks.json`);
  [holder, agent] = await Promise.all([holderLogin(stack), walletLogin(stack)]);
  await bindAgentWithApproval(stack, holder, agent);
});
after(async () => {
  stack?.sts.failAlways(null);
  await stack?.stop();
});

interface MintRow {
  event: string;
  outcome: string;
  idem_key: string;
  details: Record<string, unknown>;
}

/** The mint.aws rows (intent and outcome) of the request behind `approvalId` (its id is apr_<request id>), oldest first. */
async function mintRows(approvalId: string): Promise<MintRow[]> {
  const r = await stack.db.query<MintRow>(
    `SELECT event, outcome, idem_key, details FROM audit_log
      WHERE event IN ('mint.aws', 'mint.aws.intent') AND request_id = $1 ORDER BY seq`,
    [approvalId.replace(/^apr_/, '')],
  );
  return r.rows;
}

const count = (rows: MintRow[], event: string, outcome: string) => rows.filter((r) => r.event === event && r.outcome === outcome).length;

/** An AWS mint by the agent, approved by the holder: the hand-out now waits for the agent's poll. */
async function approvedAwsRequest(): Promise<string> {
  const p = await requestMint(stack, agent, { reason: 'hand-out failure' }, '/v1/mint-aws-creds');
  const res = await (await signedDecision(stack, holder, p.approval_id, 'approve')).send();
  assert.equal(res.status, 200, res.text);
  return p.approval_id;
}

void describe('a failed hand-out of an approved mint', () => {
  void test('each refused try is its own intent and failed row; the try that works collects with one ok row', async () => {
    const id = await approvedAwsRequest();
    stack.sts.clear();
    stack.sts.failAlways('AccessDenied');
    try {
      for (let i = 1; i <= 2; i++) {
        const res = await poll(stack, agent.token, id);
        assert.equal(res.status, 502, res.text);
        assert.equal((res.body as { error: string }).error, 'sts_error', res.text);
      }
    } finally {
      stack.sts.failAlways(null);
    }
    const stsTries = stack.sts.calls().filter((c) => c.action === 'AssumeRoleWithWebIdentity').length;
    assert.equal(stsTries, 2, 'AccessDenied is not retried: one STS call per poll');
    const failed = await mintRows(id);
    assert.equal(count(failed, 'mint.aws.intent', 'ok'), 2, `two intents expected: ${JSON.stringify(failed)}`);
    assert.equal(count(failed, 'mint.aws', 'failed'), 2, `two failed rows expected: ${JSON.stringify(failed)}`);
    assert.equal(new Set(failed.map((r) => r.idem_key)).size, failed.length, 'two rows share an idem key');
    // Both rows of one try carry that try's key: its run, then the activity (the same for a retry of it).
    const tries = new Map<string, string[]>();
    for (const r of failed) {
      const m = /^mint:approval\/(apr_[0-9a-f]{32}):[^:]+:(handout-[^:]+):(intent|failed)$/.exec(r.idem_key);
      assert.ok(m && m[1] === id, `unexpected idem key ${r.idem_key}`);
      tries.set(m[2]!, [...(tries.get(m[2]!) ?? []), m[3]!].sort());
    }
    assert.deepEqual(
      [...tries.values()],
      [
        ['failed', 'intent'],
        ['failed', 'intent'],
      ],
    );
    for (const r of failed) assert.equal(r.details.approval_id, id, `${r.event} ${r.outcome} does not name its approval`);
    for (const r of failed.filter((row) => row.outcome === 'failed')) assert.match(String(r.details.error), /AccessDenied|denied/i);

    const got = await poll(stack, agent.token, id);
    assert.equal(got.status, 200, got.text);
    const body = got.body as { status: string; access_key_id: string };
    assert.equal(body.status, 'approved');
    assert.ok(body.access_key_id, got.text);
    const rows = await mintRows(id);
    assert.equal(count(rows, 'mint.aws.intent', 'ok'), 3, JSON.stringify(rows));
    assert.equal(count(rows, 'mint.aws', 'failed'), 2, JSON.stringify(rows));
    assert.equal(count(rows, 'mint.aws', 'ok'), 1, JSON.stringify(rows));
    assert.equal(rows.length, 6, JSON.stringify(rows));
    const again = await poll(stack, agent.token, id);
    assert.equal(again.status, 409, again.text);
    assert.equal((await mintRows(id)).length, 6, 'a poll after the hand-out wrote mint rows');
  });

  void test('a throttled STS given up on after its retries is one failed row per poll, not one per STS try', async () => {
    const id = await approvedAwsRequest();
    stack.sts.clear();
    stack.sts.failAlways('Throttling');
    try {
      for (let i = 1; i <= 2; i++) {
        const res = await poll(stack, agent.token, id);
        assert.equal(res.status, 502, res.text);
      }
    } finally {
      stack.sts.failAlways(null);
    }
    // The target tries 3 times per hand-out (activities/mint-targets/aws.ts attempts).
    assert.equal(stack.sts.calls().filter((c) => c.action === 'AssumeRoleWithWebIdentity').length, 6);
    const rows = await mintRows(id);
    assert.equal(count(rows, 'mint.aws.intent', 'ok'), 2, JSON.stringify(rows));
    assert.equal(count(rows, 'mint.aws', 'failed'), 2, JSON.stringify(rows));
    for (const r of rows.filter((row) => row.outcome === 'failed')) assert.match(String(r.details.error), /gave up after retrying/);
    const got = await poll(stack, agent.token, id);
    assert.equal(got.status, 200, got.text);
    assert.equal(count(await mintRows(id), 'mint.aws', 'ok'), 1);
  });
});

void describe('marking an approved request handed out', () => {
  void test('under another grant: nothing marked, the approval is not used up; under its own grant: marked once', async () => {
    const id = await approvedAwsRequest();
    const collectedAt = async () =>
      (await stack.db.query<{ collected_at: Date | null }>('SELECT collected_at FROM approvals WHERE approval_id = $1', [id])).rows[0]?.collected_at;
    const own = (await stack.db.query<{ grant_id: string }>('SELECT grant_id FROM approvals WHERE approval_id = $1', [id])).rows[0]?.grant_id ?? '';
    assert.equal(await markApprovalCollected(stack.db, id, `grt_${'0'.repeat(32)}`, new Date()), undefined);
    assert.equal(await collectedAt(), null, 'a refused hand-out leaves the approval as it was');
    assert.equal((await markApprovalCollected(stack.db, id, own, new Date()))?.approval_id, id);
    assert.ok(await collectedAt());
  });
});
