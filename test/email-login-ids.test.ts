import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { emailKey } from '../lib/email-login-code';
import { LOGIN_METHODS } from '../lib/login-methods';
import { EMAIL_LOGIN_ID_PREFIX, type EmailLoginRequestInput } from '../workflows/email-login.definitions';
import { devMail, latestCode, requestCode, submitCode, uniqueEmail, workflowIdOf, type LoginSessionBody } from './email-login-client';
import { startStack, type TestStack } from './harness';

/**
 * An email login's request id is what its requester holds, and alone it spends the request's
 * attempts; the flow is known to Temporal by a keyed digest of it, so whoever can list the
 * namespace's workflows (without the payload key) learns nothing to submit with.
 */
let stack: TestStack;
before(async () => {
  stack = await startStack({ env: { BROKER_EMAIL_MAX_ATTEMPTS: '2', BROKER_EMAIL_RESEND_COOLDOWN_SECONDS: '0' } });
});
after(async () => {
  await stack?.stop();
});

/** The email-login workflow ids the namespace lists: what an operator without the codec key sees. */
async function listedEmailFlowIds(mustInclude: string): Promise<string[]> {
  for (let i = 0; ; i++) {
    const ids: string[] = [];
    for await (const wf of stack.temporal.workflow.list({ query: `WorkflowType = '${LOGIN_METHODS.email.workflowType}'` })) ids.push(wf.workflowId);
    if (ids.includes(mustInclude) || i >= 50) return ids;
    await delay(100); // visibility is eventually consistent
  }
}

void describe('email login request ids stay out of Temporal ids', () => {
  void test('a listed workflow id names no request id, and what it names cannot be submitted or resent to', async () => {
    const email = uniqueEmail('Listed');
    const sent = await requestCode(stack, email);
    const code = await latestCode(stack, email);
    const ownId = workflowIdOf(stack, sent.request_id);
    const listed = await listedEmailFlowIds(ownId);
    assert.ok(listed.includes(ownId), 'the flow is listed under the digest of its request id');
    assert.ok(
      listed.every((id) => !id.includes(sent.request_id)),
      'no listed id carries the request id',
    );

    // A stranger tries what the listing shows: the id's suffix, and its first 32 hex (a request id's shape).
    const suffix = ownId.slice(EMAIL_LOGIN_ID_PREFIX.length);
    const mailsBefore = (await devMail(stack, email.toLowerCase())).length;
    assert.equal((await submitCode(stack, suffix, code)).status, 400, 'a 64-hex id is not a request id');
    for (let i = 0; i < 3; i++) assert.equal((await submitCode(stack, suffix.slice(0, 32), '000000')).status, 410);
    const resend = await stack.request('POST', '/v1/session/email_code', { body: { email, request_id: suffix.slice(0, 32) } });
    assert.equal(resend.status, 410, resend.text);
    assert.equal((await devMail(stack, email.toLowerCase())).length, mailsBefore, 'nothing mailed');

    // The owner's two attempts are untouched: its code still logs in.
    const login = await submitCode(stack, sent.request_id, code);
    assert.equal(login.status, 200, login.text);
    assert.equal((login.body as LoginSessionBody).identity.value, email.toLowerCase());
  });

  void test('a request opened before the change (the retired type, its id the request id) is still resent to and logged in', async () => {
    // As a 1.1.0 API started it: workflow id email-login/<request id>, no request id in the input.
    const email = uniqueEmail('Retired').toLowerCase();
    const requestId = randomBytes(16).toString('hex');
    const input: EmailLoginRequestInput = {
      email,
      email_key: emailKey(stack.secrets.hmacSecret, email),
      code_salt: randomBytes(16).toString('hex'),
      settings: { ttlSeconds: 60, maxAttempts: 2, resendCooldownSeconds: 0, maxSends: 3, firstDispatchSeconds: 60, retryWindowSeconds: 1 },
    };
    const handle = await stack.temporal.workflow.start('emailLoginRequestWorkflow', {
      workflowId: EMAIL_LOGIN_ID_PREFIX + requestId,
      taskQueue: stack.config.BROKER_TASK_QUEUE,
      args: [input],
    });
    const sent = await requestCode(stack, email, requestId);
    assert.equal(sent.request_id, requestId);
    const code = await latestCode(stack, email);
    assert.equal((await submitCode(stack, requestId, code === '000000' ? '000001' : '000000')).status, 401, 'a wrong code is its own refusal');
    const login = await submitCode(stack, requestId, code);
    assert.equal(login.status, 200, login.text);
    assert.equal(await handle.result(), 'succeeded');
  });
});
