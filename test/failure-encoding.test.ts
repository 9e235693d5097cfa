import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { temporal } from '@temporalio/proto';
import { latestCode, requestCode, submitCode, uniqueEmail, workflowIdOf, wrongCode } from './email-login-client';
import { startStack, type TestStack } from './harness';

/**
 * Failures in Temporal's history carry their message and stack trace encoded and encrypted
 * (lib/failure-converter.ts): whoever reads the namespace without the payload key sees
 * `Encoded failure`, while the API, which has the key, still answers the flow's own words.
 */
let stack: TestStack;
before(async () => {
  stack = await startStack({ env: { BROKER_EMAIL_MAX_ATTEMPTS: '2' } });
});
after(async () => {
  await stack?.stop();
});

/** Every failure object in a history (update outcomes, markers, the run's own), found by shape. */
function failuresIn(node: unknown, out: Array<Record<string, unknown>> = []): Array<Record<string, unknown>> {
  if (Array.isArray(node)) for (const v of node) failuresIn(v, out);
  else if (node && typeof node === 'object') {
    const o = node as Record<string, unknown>;
    if ('message' in o && ('stackTrace' in o || 'applicationFailureInfo' in o || 'encodedAttributes' in o)) out.push(o);
    for (const v of Object.values(o)) failuresIn(v, out);
  }
  return out;
}

void describe('failures in history', () => {
  void test("a flow's refusals are answered in its words over HTTP and stored only encrypted", async () => {
    const email = uniqueEmail('EncodedFailure');
    const sent = await requestCode(stack, email);
    const code = await latestCode(stack, email);
    const first = await submitCode(stack, sent.request_id, wrongCode(code));
    assert.equal(first.status, 401);
    assert.deepEqual(
      { error: (first.body as { error: string }).error, attempts_left: (first.body as { attempts_left: number }).attempts_left },
      { error: 'invalid_code', attempts_left: 1 },
    );
    assert.match((first.body as { message: string }).message, /code is not correct/);
    const second = await submitCode(stack, sent.request_id, wrongCode(code));
    assert.equal(second.status, 429);
    assert.match((second.body as { message: string }).message, /too many wrong codes/);

    // The run stays open, locked, until its code would have expired: its history already holds both refusals.
    const handle = stack.temporal.workflow.getHandle(workflowIdOf(stack, sent.request_id));
    const History = temporal.api.history.v1.History;
    const history = History.toObject(History.decode(History.encode(await handle.fetchHistory()).finish()), { bytes: String, longs: String, enums: String });
    const json = JSON.stringify(history);
    for (const words of ['code is not correct', 'too many wrong codes', 'attempts_left', 'at emailLogin', '.ts:']) {
      assert.ok(!json.includes(words), `history holds ${words} in clear`);
    }
    const failures = failuresIn(history);
    assert.ok(failures.length >= 2, `the two refusals are in history (${failures.length} failures)`);
    for (const f of failures) {
      assert.equal(f.message, 'Encoded failure');
      assert.ok(!f.stackTrace, 'no stack trace in clear');
      const encoded = f.encodedAttributes as { metadata?: Record<string, string> } | undefined;
      assert.equal(Buffer.from(encoded?.metadata?.encoding ?? '', 'base64').toString(), 'binary/encrypted');
    }
  });
});
