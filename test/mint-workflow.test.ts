/**
 * The mint workflow alone, with its one activity mocked, on a local dev server started from the
 * temporal CLI the project already has (TestWorkflowEnvironment.createLocal with an existing
 * executable; no Postgres, no HTTP): one activity call per mint, whatever its target; a refusal
 * is `forbidden`, an unwritable audit log `audit_error`, a target's failure keeps its type, and
 * the answer is the activity's sealed result as is.
 */
import assert from 'node:assert/strict';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { AkAccount, AkFlow, AkOutcome, AkStage } from '../lib/search-attributes';
import { FailureType } from '../workflows/definitions';
import type { MintOutcome, MintRequest } from '../workflows/mint.definitions';
import { testWorkflowBundle } from './harness';

const TEMPORAL = process.env.TEMPORAL_CLI ?? join(homedir(), 'go', 'bin', 'temporal');

let env: TestWorkflowEnvironment;
before(async () => {
  env = await TestWorkflowEnvironment.createLocal({
    server: { executable: { type: 'existing-path', path: TEMPORAL }, searchAttributes: [AkFlow, AkAccount, AkStage, AkOutcome] },
  });
});
after(async () => {
  await env?.teardown();
});

const request = (target: string): MintRequest => ({
  requestId: Math.random().toString(16).slice(2),
  target,
  params: target === 'gcp' ? { audience: '//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/pool/providers/prov' } : {},
  caller: { omniAccount: '0xabc', authKind: 'session', bearerHash: 'h' },
  sealTo: { kty: 'EC', crv: 'P-256', x: 'x', y: 'y' },
});

/** Runs one mint with `mint` as its activity; the calls it received and the workflow's result or failure. */
async function run(mint: (req: MintRequest) => Promise<MintOutcome>, req = request('aws')) {
  const calls: MintRequest[] = [];
  const taskQueue = `mint-wf-${Math.random().toString(16).slice(2)}`;
  const worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: await testWorkflowBundle(),
    activities: {
      mint: async (r: MintRequest) => {
        calls.push(r);
        return mint(r);
      },
    },
  });
  const result = await worker.runUntil(
    env.client.workflow.execute('mintWorkflow', { taskQueue, workflowId: `mint/${req.requestId}`, args: [req], workflowExecutionTimeout: '30 seconds' }).then(
      (v: unknown) => ({ ok: v }),
      (e: unknown) => ({ err: e }),
    ),
  );
  return { calls, ...result } as { calls: MintRequest[]; ok?: unknown; err?: unknown };
}

function failure(r: { err?: unknown }): ApplicationFailure {
  assert.ok(r.err instanceof WorkflowFailedError, String(r.err));
  assert.ok(r.err.cause instanceof ApplicationFailure, String(r.err.cause));
  return r.err.cause;
}

void describe('mintWorkflow with a mocked activity', () => {
  void test('one activity call with the request as given (marked as able to wait for approval); the sealed answer comes back as is', async () => {
    const minted = { sealed: 'a.b.c.d.e', public: { access_key_id: 'ASIA' }, wallet: '0xabc', expiration: 1 };
    for (const target of ['aws', 'gcp', 'oidc']) {
      const req = request(target);
      const r = await run(async () => ({ denied: false, minted }), req);
      assert.deepEqual(r.ok, minted);
      assert.equal(r.calls.length, 1);
      // Since the mint-approval patch the flow tells the activity it can open an approval request (docs/approvals.md).
      assert.deepEqual(r.calls[0], { ...req, approvals: true });
    }
  });

  void test('a refusal is Forbidden with its reason, after one call', async () => {
    const r = await run(async () => ({ denied: true, reason: 'grant grt_x does not allow the audience' }));
    const f = failure(r);
    assert.equal(f.type, FailureType.forbidden);
    assert.match(f.message, /does not allow the audience/);
    assert.equal(r.calls.length, 1);
  });

  void test("a target's final failure keeps its type and message; not retried", async () => {
    const r = await run(async () => {
      throw ApplicationFailure.create({ type: FailureType.stsError, message: 'STS denied', nonRetryable: true, details: [{ outcome: 'sts_error' }] });
    });
    const f = failure(r);
    assert.equal(f.type, FailureType.stsError);
    assert.equal(f.message, 'STS denied');
    assert.equal(r.calls.length, 1);
  });

  void test('an unwritable audit log: retried, then AuditFailed and no credential', async () => {
    const r = await run(async () => {
      throw ApplicationFailure.retryable('could not write the audit row', FailureType.auditError);
    });
    assert.equal(failure(r).type, FailureType.auditError);
    assert.equal(r.calls.length, 3, 'the retry policy: three tries');
  });

  void test('a failure before the exchange is retried, and a later success answers', async () => {
    let n = 0;
    const minted = { sealed: 's', public: {}, wallet: 'w', expiration: 2 };
    const r = await run(async () => {
      if (++n === 1) throw ApplicationFailure.retryable('grants unreadable', 'MintAuthoriseFailed');
      return { denied: false, minted };
    });
    assert.deepEqual(r.ok, minted);
    assert.equal(r.calls.length, 2);
  });
});
