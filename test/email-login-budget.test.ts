import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { WithStartWorkflowOperation, WorkflowUpdateFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { emailKey } from '../lib/email-login-code';
import { AkOutcome } from '../lib/search-attributes';
import { FailureType } from '../workflows/definitions';
import { requestCodeUpdate, type EmailLoginRequestInput } from '../workflows/email-login.definitions';
import type { emailLoginRequestWorkflow } from '../workflows/email-login';
import type { purgeExpiredWorkflow } from '../workflows/maintenance';
import { assertRefused, assertUnchanged, dbSnapshot, spyWorkflowStarts } from './adversarial-probes';
import { devMail, latestCode, requestCode, submitCode, uniqueEmail } from './email-login-client';
import { startStack, type TestStack } from './harness';

// Two codes per address per hour and no cooldown, so the hourly budget is what refuses.
const PER_HOUR = 2;

let stack: TestStack;
before(async () => {
  stack = await startStack({
    env: { BROKER_RATE_LIMIT_EMAIL_PER_HOUR: String(PER_HOUR), BROKER_EMAIL_RESEND_COOLDOWN_SECONDS: '0', BROKER_RATE_LIMIT_IP_PER_MINUTE: '1000' },
  });
});
after(async () => {
  await stack?.stop();
});

const sendsOf = async (email: string) =>
  (await stack.db.query<{ n: number }>('SELECT count(*)::int AS n FROM email_sends WHERE address_key = $1', [emailKey(stack.secrets.hmacSecret, email)]))
    .rows[0]?.n;

void describe('email login: the per-address send budget holds across requests', () => {
  void test('new requests and resends share the budget: 429 rate_limited with Retry-After, nothing mailed, no flow started, the earlier codes still work', async () => {
    const email = uniqueEmail('Budget');
    const a = await requestCode(stack, email);
    const aCode = await latestCode(stack, email);
    const b = await requestCode(stack, email);
    const bCode = await latestCode(stack, email);
    assert.equal(await sendsOf(email), PER_HOUR);

    const starts = spyWorkflowStarts(stack.temporal);
    const rows = await dbSnapshot(stack.db);
    const ses = stack.ses.requestCount();
    try {
      for (const body of [{ email }, { email: email.toUpperCase() }, { email, request_id: a.request_id }, { email, request_id: b.request_id }]) {
        const res = await stack.request('POST', '/v1/session/email_code', { body });
        assertRefused(res, 429, 'rate_limited', /too many codes/, JSON.stringify(body));
        const retryAfter = Number(res.headers.get('retry-after'));
        // The hour is what is waited out, not a cooldown.
        assert.ok(Number.isInteger(retryAfter) && retryAfter > 3500 && retryAfter <= 3600, `Retry-After ${retryAfter}`);
      }
      assert.equal(starts.count(), 0, 'a refused request started a flow');
    } finally {
      starts.restore();
    }
    await assertUnchanged(stack.db, rows, 'budget refusals');
    assert.equal(stack.ses.requestCount(), ses, 'nothing mailed');
    assert.equal((await devMail(stack, email.toLowerCase())).length, PER_HOUR);

    // Another address is not affected.
    await requestCode(stack, uniqueEmail('Neighbour'));

    // The refusals did not touch the requests already mailed.
    assert.equal((await submitCode(stack, a.request_id, aCode)).status, 200);
    assert.equal((await submitCode(stack, b.request_id, bCode)).status, 200);
  });

  void test('concurrent requests for one address cannot overdraw the budget: exactly the budget is mailed', async () => {
    const email = uniqueEmail('Overdraw');
    const results = await Promise.all(Array.from({ length: 8 }, () => stack.request('POST', '/v1/session/email_code', { body: { email } })));
    const accepted = results.filter((r) => r.status === 202);
    assert.equal(accepted.length, PER_HOUR, results.map((r) => `${r.status} ${r.text}`).join('\n'));
    for (const r of results.filter((x) => x.status !== 202)) {
      assertRefused(r, 429, 'rate_limited', /too many codes/);
      assert.match(r.headers.get('retry-after') ?? '', /^\d+$/);
    }
    assert.equal((await devMail(stack, email.toLowerCase())).length, PER_HOUR);
    assert.equal(await sendsOf(email), PER_HOUR);
  });

  void test('the send activity is the authority: a flow started past the API check mails nothing and ends rate_limited', async () => {
    const email = uniqueEmail('Authority').toLowerCase();
    const key = emailKey(stack.secrets.hmacSecret, email);
    // The budget is spent (by flows the API check did not see yet).
    for (let i = 0; i < PER_HOUR; i++) {
      await stack.db.query('INSERT INTO email_sends (dispatch_key, address_key, sent_at) VALUES ($1, $2, now())', [randomBytes(16).toString('hex'), key]);
    }
    const input: EmailLoginRequestInput = {
      email,
      email_key: key,
      code_salt: randomBytes(16).toString('hex'),
      settings: { ttlSeconds: 60, maxAttempts: 5, resendCooldownSeconds: 0, maxSends: 5 },
    };
    const startWorkflowOperation = new WithStartWorkflowOperation<typeof emailLoginRequestWorkflow>('emailLoginRequestWorkflow', {
      workflowId: `email-login/${randomBytes(16).toString('hex')}`,
      taskQueue: stack.config.BROKER_TASK_QUEUE,
      args: [input],
      workflowIdConflictPolicy: 'FAIL',
    });
    const ses = stack.ses.requestCount();
    const refused = await stack.temporal.workflow.executeUpdateWithStart(requestCodeUpdate, { args: [{ email_key: key }], startWorkflowOperation }).then(
      () => assert.fail('the update was accepted'),
      (e: unknown) => e,
    );
    assert.ok(refused instanceof WorkflowUpdateFailedError, String(refused));
    assert.ok(refused.cause instanceof ApplicationFailure && refused.cause.type === FailureType.rateLimited, String(refused.cause));
    assert.equal(stack.ses.requestCount(), ses, 'nothing mailed');
    const handle = await startWorkflowOperation.workflowHandle();
    assert.equal(await handle.result(), 'rate_limited');
    assert.equal((await handle.describe()).typedSearchAttributes.get(AkOutcome), 'rate_limited');
    assert.equal(await sendsOf(email), PER_HOUR, 'a refusal reserves nothing');
  });

  void test('the ledger holds keyed digests only, and the hourly purge drops what can no longer decide anything', async () => {
    const email = uniqueEmail('Ledger');
    await requestCode(stack, email);
    const rows = (await stack.db.query<{ dispatch_key: string; address_key: string }>('SELECT dispatch_key, address_key FROM email_sends')).rows;
    const text = JSON.stringify(rows).toLowerCase();
    assert.ok(!text.includes(email.toLowerCase()) && !text.includes(email.split('@')[0]?.toLowerCase() ?? email), 'no address in the ledger');
    for (const r of rows) assert.match(`${r.dispatch_key} ${r.address_key}`, /^[0-9a-f]{32} [0-9a-f]{32}$/);

    const stale = randomBytes(16).toString('hex');
    await stack.db.query("INSERT INTO email_sends (dispatch_key, address_key, sent_at) VALUES ($1, $2, now() - interval '61 minutes')", [stale, stale]);
    const result = await stack.temporal.workflow.execute<typeof purgeExpiredWorkflow>('purgeExpiredWorkflow', {
      workflowId: `maintenance/purge-test-${randomBytes(4).toString('hex')}`,
      taskQueue: stack.config.BROKER_TASK_QUEUE,
    });
    assert.ok(result.emailSends >= 1, JSON.stringify(result));
    const left = await stack.db.query('SELECT 1 FROM email_sends WHERE dispatch_key = $1', [stale]);
    assert.equal(left.rowCount, 0, 'the stale row is purged');
    assert.equal(await sendsOf(email), 1, 'the live row stays');
  });
});
