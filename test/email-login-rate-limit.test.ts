import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { randomBytes } from 'node:crypto';
import { devMail, requestCode, rowCounts, submitCode, uniqueEmail } from './email-login-client';
import { startStack, type TestStack } from './harness';

// Three requests per minute per client IP (per route), one code request per hour per address.
let stack: TestStack;
before(async () => {
  stack = await startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '3', BROKER_RATE_LIMIT_EMAIL_PER_HOUR: '1' } });
});
after(async () => {
  await stack?.stop();
});

const assertRateLimited = (res: Awaited<ReturnType<TestStack['request']>>, maxSeconds: number) => {
  assert.equal(res.status, 429, res.text);
  assert.equal((res.body as { error: string }).error, 'rate_limited');
  const retryAfter = Number(res.headers.get('retry-after'));
  assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= maxSeconds, `Retry-After ${res.headers.get('retry-after')}`);
  assert.equal((res.body as { retry_after: number }).retry_after, retryAfter);
};

void describe('email login rate limits', () => {
  void test('per address, then per client IP: 429 with Retry-After, nothing mailed', async () => {
    const a = uniqueEmail('LimitA');
    await requestCode(stack, a); // ip 1/3, address 1/1
    const sesAfterFirst = stack.ses.requestCount();

    // A second code for the same address within the hour trips the per-address limit before the flow is asked.
    assertRateLimited(await stack.request('POST', '/v1/session/email_code', { body: { email: a } }), 3600); // ip 2/3
    assert.equal((await devMail(stack, a.toLowerCase())).length, 1);

    await requestCode(stack, uniqueEmail('LimitB')); // ip 3/3
    const c = uniqueEmail('LimitC');
    const sesBefore = stack.ses.requestCount();
    assertRateLimited(await stack.request('POST', '/v1/session/email_code', { body: { email: c } }), 60); // ip 4/3
    assert.equal(stack.ses.requestCount(), sesBefore, 'no send for a limited request');
    assert.equal(sesBefore - sesAfterFirst, 1, 'only B was sent after A');
    assert.equal((await devMail(stack, c.toLowerCase())).length, 0);
  });

  void test('code submissions are limited per client IP too', async () => {
    const rows = await rowCounts(stack.db);
    const unknown = () => randomBytes(16).toString('hex');
    for (let i = 0; i < 3; i++) {
      const res = await submitCode(stack, unknown(), '123456');
      assert.equal(res.status, 410, res.text);
    }
    assertRateLimited(await submitCode(stack, unknown(), '123456'), 60);
    assert.deepEqual(await rowCounts(stack.db), rows);
  });
});
