/**
 * Temporal user metadata (docs/operations.md): every broker workflow starts with a fixed summary
 * and details the Web UI lists, and says its stage as current details — none of it personal data.
 */
import { mintTarget } from '../activities/mint-targets';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import type { WorkflowHandle } from '@temporalio/client';
import { workflowMetadataQuery } from '@temporalio/workflow';
import { FLOW_METADATA, type FlowMetadata } from '../lib/flow-metadata';
import { requestCode, uniqueEmail, workflowIdOf } from './email-login-client';
import { startStack, type TestStack } from './harness';
import { mintOidc, walletLogin } from './mint-client';
import { newWallet, walletWorkflowIdOf } from './wallet-client';

let stack: TestStack;

before(async () => {
  stack = await startStack();
  stack.sts.setJwksUrl(`${stack.url}/.well-known/jwks.json`);
});
after(async () => {
  await stack?.stop();
});

/** The run's user metadata and current details, as the UI reads them (describe, then the metadata query). */
async function metadataOf(handle: WorkflowHandle): Promise<{ summary?: string; details?: string; current: string }> {
  const d = await handle.describe();
  const [summary, details] = await Promise.all([d.staticSummary(), d.staticDetails()]);
  const meta = await handle.query(workflowMetadataQuery);
  return { summary, details, current: meta.currentDetails ?? '' };
}

function assertNoPersonalData(texts: (string | undefined)[], personal: string[]): void {
  for (const text of texts) {
    for (const p of personal) assert.ok(!(text ?? '').toLowerCase().includes(p.toLowerCase()), `"${text}" carries ${p}`);
  }
}

void describe('workflow summaries', () => {
  void test('an email login starts with its summary and says its stage, without the address', async () => {
    const email = uniqueEmail('Summary');
    const { request_id } = await requestCode(stack, email);
    const m = await metadataOf(stack.temporal.workflow.getHandle(workflowIdOf(stack, request_id)));
    const expected: FlowMetadata = FLOW_METADATA.email_login;
    assert.equal(m.summary, expected.staticSummary);
    assert.equal(m.details, expected.staticDetails);
    assert.equal(m.current, 'Stage: code_sent');
    assertNoPersonalData([m.summary, m.details, m.current], [email, email.split('@')[0] ?? email, request_id]);
  });

  void test('a wallet challenge starts with its summary, without the wallet address', async () => {
    const w = newWallet();
    const res = await stack.request('POST', '/v1/session/wallet_challenge', { body: { address: w.address, format: 'eip191' } });
    assert.equal(res.status, 200, res.text);
    const { request_id } = res.body as { request_id: string };
    const m = await metadataOf(stack.temporal.workflow.getHandle(walletWorkflowIdOf(stack, request_id)));
    assert.equal(m.summary, FLOW_METADATA.wallet_login.staticSummary);
    assert.equal(m.current, 'Stage: challenge_issued');
    assertNoPersonalData([m.summary, m.details, m.current], [w.lower, w.lower.slice(2), request_id]);
  });

  void test('a mint starts with its summary and ends saying its outcome, without the account', async () => {
    const session = await walletLogin(stack);
    await mintOidc(stack, session.token);
    const query = `WorkflowType="mintWorkflow" AND TaskQueue="${stack.config.BROKER_TASK_QUEUE}"`;
    let id: string | undefined;
    for (let i = 0; i < 100 && !id; i++) {
      for await (const wf of stack.temporal.workflow.list({ query })) id = wf.workflowId;
      if (!id) await delay(100);
    }
    assert.ok(id, 'the mint workflow is not listed');
    const m = await metadataOf(stack.temporal.workflow.getHandle(id));
    assert.equal(m.summary, mintTarget('oidc')?.summary);
    assert.equal(m.current, 'Done: ok');
    assertNoPersonalData([m.summary, m.details, m.current], [session.omni_account, session.wallet.lower]);
  });

  void test('no summary or details names a person: fixed words only', () => {
    for (const [flow, meta] of Object.entries(FLOW_METADATA)) {
      for (const text of [meta.staticSummary, meta.staticDetails]) {
        assert.doesNotMatch(text, /@|0x[0-9a-f]{6,}|\$\{/i, `${flow}: ${text}`);
        assert.ok(!text.includes('\n'), `${flow}: one line`);
      }
    }
  });

  void test('docs/operations.md names every AkFlow value an operator can filter by', () => {
    const ops = readFileSync(join(__dirname, '..', 'docs', 'operations.md'), 'utf8');
    const row = /^\| `AkFlow` \|[^\n]*$/m.exec(ops)?.[0] ?? '';
    const listed = [...row.matchAll(/`([a-z_]+)`/g)].map((m) => m[1]);
    // Every flow with fixed metadata, and the mint (whose summary is its target's).
    assert.deepEqual(listed.sort(), [...Object.keys(FLOW_METADATA), 'mint'].sort());
  });
});
