import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { AkOutcome } from '../lib/search-attributes';
import { codeFromMail, devMail, latestCode, requestCode, rowCounts, submitCode, uniqueEmail, workflowIdOf } from './email-login-client';
import { startStack, type TestStack } from './harness';

// Short, configured windows: codes live 3 s, a resend is accepted 1 s after the previous send.
const TTL_SECONDS = 3;
const COOLDOWN_SECONDS = 1;

let stack: TestStack;
before(async () => {
  stack = await startStack({
    env: { BROKER_EMAIL_CODE_TTL_SECONDS: String(TTL_SECONDS), BROKER_EMAIL_RESEND_COOLDOWN_SECONDS: String(COOLDOWN_SECONDS) },
  });
});
after(async () => {
  await stack?.stop();
});

void describe('email code login windows', () => {
  void test('a code past its TTL is refused with 410 expired', async () => {
    const email = uniqueEmail('Late');
    const t0 = Date.now();
    const sent = await requestCode(stack, email);
    assert.ok(sent.expires_at <= Math.ceil(t0 / 1000) + TTL_SECONDS + 1, 'expires_at follows the configured TTL');
    const code = await latestCode(stack, email);
    const rowsBefore = await rowCounts(stack.db);

    // The flow's own timer ends it: await that instead of guessing a sleep.
    const handle = stack.temporal.workflow.getHandle(workflowIdOf(sent.request_id));
    assert.equal(await handle.result(), 'expired');
    assert.ok(Date.now() - t0 >= TTL_SECONDS * 1000 - 50, 'the flow lived for its TTL');

    const late = await submitCode(stack, sent.request_id, code);
    assert.equal(late.status, 410, late.text);
    assert.equal((late.body as { error: string }).error, 'expired');
    assert.deepEqual(await rowCounts(stack.db), rowsBefore, 'nothing written');
    assert.equal((await handle.describe()).typedSearchAttributes.get(AkOutcome), 'expired');
  });

  void test('resend cooldown: 429 with Retry-After and no mail; after it a new code replaces the old', async () => {
    const email = uniqueEmail('Resend');
    const lower = email.toLowerCase();
    const first = await requestCode(stack, email);
    const firstCode = await latestCode(stack, email);
    const sesAfterFirst = stack.ses.requestCount();

    const tooSoon = await stack.request('POST', '/v1/session/email_code', { body: { email } });
    assert.equal(tooSoon.status, 429, tooSoon.text);
    assert.equal((tooSoon.body as { error: string }).error, 'rate_limited');
    const retryAfter = Number(tooSoon.headers.get('retry-after'));
    assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= COOLDOWN_SECONDS, `Retry-After ${retryAfter}`);
    assert.equal((tooSoon.body as { retry_after: number }).retry_after, retryAfter);
    assert.equal(stack.ses.requestCount(), sesAfterFirst, 'no second send');
    assert.equal((await devMail(stack, lower)).length, 1, 'no second mail');

    // resend_after is a promise: a client that waits until then is served.
    const wait = first.resend_after * 1000 - Date.now();
    if (wait > 0) await delay(wait);
    const second = await requestCode(stack, email);
    assert.equal(second.request_id, first.request_id, 'a resend continues the same request');
    const mails = await devMail(stack, lower);
    assert.equal(mails.length, 2, 'a second mail');
    const secondCode = codeFromMail(mails[0]?.text ?? '');
    assert.equal(codeFromMail(mails[1]?.text ?? ''), firstCode, 'newest first');
    assert.notEqual(secondCode, firstCode, 'a different code');

    const old = await submitCode(stack, first.request_id, firstCode);
    assert.equal(old.status, 401, old.text);
    assert.equal((old.body as { error: string }).error, 'invalid_code');
    const fresh = await submitCode(stack, first.request_id, secondCode);
    assert.equal(fresh.status, 200, fresh.text);
  });
});
