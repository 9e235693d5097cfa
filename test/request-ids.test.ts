import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { WithStartWorkflowOperation } from '@temporalio/client';
import { getAddress } from 'viem';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { emailKey } from '../lib/email-login-code';
import { LOGIN_METHODS } from '../lib/login-methods';
import { EMAIL_LOGIN_ID_PREFIX, type EmailLoginRequestInput } from '../workflows/email-login.definitions';
import { issueWalletChallengeUpdate, WALLET_LOGIN_ID_PREFIX, type WalletLoginInput } from '../workflows/wallet-login.definitions';
import { devMail, latestCode, requestCode, submitCode, uniqueEmail, workflowIdOf, type LoginSessionBody } from './email-login-client';
import { startStack, type TestStack } from './harness';
import { newWallet, walletWorkflowIdOf } from './wallet-client';

/**
 * A login request's id is what its requester holds: an email login's alone spends the request's
 * attempts, a wallet challenge's lets a stranger keep it busy with junk signatures. Each flow is
 * known to Temporal by a keyed digest of it, so whoever can list the namespace's workflows
 * (without the payload key) learns nothing to submit with.
 */
let stack: TestStack;
before(async () => {
  stack = await startStack({ env: { BROKER_EMAIL_MAX_ATTEMPTS: '2', BROKER_EMAIL_RESEND_COOLDOWN_SECONDS: '0' } });
});
after(async () => {
  await stack?.stop();
});

/** The workflow ids of one type the namespace lists: what an operator without the codec key sees. */
async function listedFlowIds(workflowType: string, mustInclude: string): Promise<string[]> {
  for (let i = 0; ; i++) {
    const ids: string[] = [];
    for await (const wf of stack.temporal.workflow.list({ query: `WorkflowType = '${workflowType}'` })) ids.push(wf.workflowId);
    if (ids.includes(mustInclude) || i >= 50) return ids;
    await delay(100); // visibility is eventually consistent
  }
}

/** A flow is listed under the digest of its request id (ownId), and no listed id of its type carries a request id. */
async function assertListedByDigestOnly(workflowType: string, ownId: string, requestId: string): Promise<void> {
  const listed = await listedFlowIds(workflowType, ownId);
  assert.ok(listed.includes(ownId), 'the flow is listed under the digest of its request id');
  assert.ok(
    listed.every((id) => !id.includes(requestId)),
    'no listed id carries the request id',
  );
}

void describe('login request ids stay out of Temporal ids', () => {
  void test('a listed workflow id names no request id, and what it names cannot be submitted or resent to', async () => {
    const email = uniqueEmail('Listed');
    const sent = await requestCode(stack, email);
    const code = await latestCode(stack, email);
    const ownId = workflowIdOf(stack, sent.request_id);
    await assertListedByDigestOnly(LOGIN_METHODS.email.workflowType, ownId, sent.request_id);

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

  void test('a wallet challenge is listed under the digest of its request id, which cannot be submitted to', async () => {
    const w = newWallet();
    const res = await stack.request('POST', '/v1/session/wallet_challenge', { body: { address: w.address, format: 'siwe' } });
    assert.equal(res.status, 200, res.text);
    const c = res.body as { request_id: string; message: string };
    const ownId = walletWorkflowIdOf(stack, c.request_id);
    await assertListedByDigestOnly(LOGIN_METHODS.wallet.workflowType, ownId, c.request_id);
    const signature = await w.sign(c.message);
    const suffix = ownId.slice(WALLET_LOGIN_ID_PREFIX.length);
    const forged = (request_id: string) => stack.request('POST', '/v1/session/wallet_login', { body: { request_id, signature } });
    assert.equal((await forged(suffix)).status, 400, 'a 64-hex id is not a request id');
    assert.equal((await forged(suffix.slice(0, 32))).status, 410);
    const login = await forged(c.request_id);
    assert.equal(login.status, 200, login.text);
  });

  void test('a challenge issued before the change (its workflow id the request id) still logs in', async () => {
    // As a 1.1.0 API issued it: workflow id wallet-login/<request id>.
    const w = newWallet();
    const requestId = randomBytes(16).toString('hex');
    const input: WalletLoginInput = {
      kind: 'challenge',
      requestId,
      format: 'eip191',
      address: w.lower,
      checksumAddress: getAddress(w.lower),
      chainId: 1,
      domain: new URL(stack.config.publicUrl).host,
      uri: stack.config.publicUrl,
      settings: { windowSeconds: stack.config.BROKER_WALLET_WINDOW_SECONDS, contractWallets: false },
    };
    const startWorkflowOperation = new WithStartWorkflowOperation('walletLoginWorkflow', {
      workflowId: WALLET_LOGIN_ID_PREFIX + requestId,
      taskQueue: stack.config.BROKER_TASK_QUEUE,
      args: [input],
      workflowIdConflictPolicy: 'USE_EXISTING',
    });
    const c = await stack.temporal.workflow.executeUpdateWithStart(issueWalletChallengeUpdate, { startWorkflowOperation });
    assert.equal(c.request_id, requestId);
    const login = await stack.request('POST', '/v1/session/wallet_login', { body: { request_id: requestId, signature: await w.sign(c.message) } });
    assert.equal(login.status, 200, login.text);
    assert.equal(await (await startWorkflowOperation.workflowHandle()).result(), 'succeeded');
  });
});
