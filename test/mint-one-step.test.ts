import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { temporal } from '@temporalio/proto';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { createMintActivities } from '../activities/mint';
import { createSealKeyPair } from '../lib/seal';
import { FailureType } from '../workflows/definitions';
import { brokerDataConverter } from '../adapters/temporal-options';
import { MINT_ID_PREFIX, type MintOutcome, type MintRequest } from '../workflows/mint.definitions';
import { startStack, testWorkflowBundle, type TestStack } from './harness';
import { lastMintRows, mintAws, mintOidc, walletLogin, type WalletSession } from './mint-client';

/**
 * A mint, whatever its target, is one local activity (authorise + decision row, exchange + outcome
 * row): one marker in its history, one patch marker (mint-approval, the 1.x change that lets a mint wait for
 * approval: docs/versioning.md), the same audit rows; its history replays against the
 * current workflow code.
 */

let stack: TestStack;
let main: WalletSession;

before(async () => {
  stack = await startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000', BROKER_DATA_ROLE_ARN: 'arn:aws:iam::123456789012:role/agentkeys-data' } });
  stack.sts.setJwksUrl(`${stack.url}/.well-known/jwks.json`);
  main = await walletLogin(stack);
});
after(async () => {
  await stack?.stop();
});

type History = temporal.api.history.v1.IHistory;

async function historyOfLastMint(): Promise<{ workflowId: string; history: History; rows: string[][] }> {
  const rows = await lastMintRows(stack, main.omni_account);
  const workflowId = MINT_ID_PREFIX + (rows[0]?.request_id ?? '');
  const history = await stack.temporal.workflow.getHandle(workflowId).fetchHistory();
  return { workflowId, history, rows: rows.map((r) => [r.event, r.outcome]) };
}

function markers(history: History, name: string): number {
  return (history.events ?? []).filter((e) => e.markerRecordedEventAttributes?.markerName === name).length;
}

/** Replays one history through the current workflow bundle; throws on nondeterminism. */
async function assertReplays(workflowId: string, history: History): Promise<void> {
  await Worker.runReplayHistory(
    { workflowBundle: await testWorkflowBundle(), dataConverter: brokerDataConverter(stack.secrets), replayName: 'mint-one-step' },
    history,
    workflowId,
  );
}

void describe('a mint runs one local activity', () => {
  for (const [kind, mint, event] of [
    ['OIDC', () => mintOidc(stack, main.token), 'mint.oidc'],
    ['AWS', () => mintAws(stack, main.token), 'mint.aws'],
  ] as const) {
    void test(`${kind}: one local-activity marker, the mint-approval patch marker, the intent and ok rows; the history replays`, async () => {
      await mint();
      const { workflowId, history, rows } = await historyOfLastMint();
      assert.equal(markers(history, 'core_local_activity'), 1);
      assert.equal(markers(history, 'core_patch'), 1);
      assert.deepEqual(rows, [
        [`${event}.intent`, 'ok'],
        [event, 'ok'],
      ]);
      await assertReplays(workflowId, history);
    });
  }

  void test('a denied mint: one local activity, the denied row, 403; the history replays', async () => {
    const res = await stack.request('POST', '/v1/mint-oidc-jwt', { token: main.token, body: { grant_id: `grt_${'0'.repeat(32)}` } });
    assert.equal(res.status, 403, res.text);
    const { workflowId, history, rows } = await historyOfLastMint();
    assert.equal(markers(history, 'core_local_activity'), 1);
    assert.deepEqual(rows, [['mint.oidc', 'denied']]);
    await assertReplays(workflowId, history);
  });

  void test('a final STS error: one local activity, the failed row with its code written by it, 502', async () => {
    stack.sts.clear();
    stack.sts.failNext(1, 'AccessDenied');
    const res = await stack.request('POST', '/v1/mint-aws-creds', { token: main.token });
    assert.equal(res.status, 502, res.text);
    const { workflowId, history, rows } = await historyOfLastMint();
    assert.equal(markers(history, 'core_local_activity'), 1);
    assert.deepEqual(rows, [
      ['mint.aws.intent', 'ok'],
      ['mint.aws', 'failed'],
    ]);
    assert.equal((await lastMintRows(stack, main.omni_account))[1]?.details.sts_code, 'AccessDenied');
    await assertReplays(workflowId, history);
  });
});

void describe('a mint activity run again after its outcome was recorded', () => {
  void test("hands nothing out: the ok row names the first try's credential, not the second's", async () => {
    const activities = createMintActivities(stack.activityDeps);
    const requestId = randomBytes(16).toString('hex');
    const req: MintRequest = {
      requestId,
      target: 'oidc',
      params: {},
      caller: { omniAccount: main.omni_account, authKind: 'session', method: 'wallet', wallet: main.wallet.lower, bearerHash: 'b'.repeat(32) },
      sealTo: (await createSealKeyPair()).publicJwk,
    };
    // The same run, as a worker that died before recording the first answer would run it again.
    const run = (): Promise<MintOutcome> =>
      new MockActivityEnvironment({ workflowExecution: { workflowId: MINT_ID_PREFIX + requestId, runId: 'run-1' }, isLocal: true }).run(
        (r: MintRequest) => activities.mint(r),
        req,
      );
    const first = await run();
    assert.ok('minted' in first && first.minted, 'the first try mints');
    await assert.rejects(run(), (e: unknown) => e instanceof ApplicationFailure && e.type === FailureType.auditError && /earlier try/.test(e.message));
    const rows = await stack.db.query<{ outcome: string }>("SELECT outcome FROM audit_log WHERE request_id = $1 AND event = 'mint.oidc'", [requestId]);
    assert.deepEqual(
      rows.rows.map((r) => r.outcome),
      ['ok'],
      "one outcome row, the first try's",
    );
  });
});
