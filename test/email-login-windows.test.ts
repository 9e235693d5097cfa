import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { temporal } from '@temporalio/proto';
import { emailKey } from '../lib/email-login-code';
import type { EmailCodeLoginInput } from '../workflows/email-login.definitions';
import { AkOutcome } from '../lib/search-attributes';
import {
  codeFromMail,
  devMail,
  latestCode,
  requestCode,
  rowCounts,
  submitCode,
  uniqueEmail,
  workflowIdOf,
  wrongCode,
  type CodeDispatchedBody,
} from './email-login-client';
import { assertRefused, assertUnchanged, dbSnapshot, spyWorkflowStarts, type HttpAnswer } from './adversarial-probes';
import { startStack, type TestStack } from './harness';

// Short, configured windows: codes live 3 s, a resend is accepted 1 s after the previous send.
const TTL_SECONDS = 3;
const COOLDOWN_SECONDS = 1;

let stack: TestStack;
/**
 * The two requests whose code windows the last tests wait out, opened (and the locked one locked)
 * before the first test, so that their TTL runs out while the other tests run.
 */
let locked: { sent: CodeDispatchedBody; code: string; wrong: HttpAnswer[]; right: HttpAnswer };
let late: { t0: number; sent: CodeDispatchedBody; code: string };
before(async () => {
  stack = await startStack({
    env: { BROKER_EMAIL_CODE_TTL_SECONDS: String(TTL_SECONDS), BROKER_EMAIL_RESEND_COOLDOWN_SECONDS: String(COOLDOWN_SECONDS) },
  });
  const lockedEmail = uniqueEmail('LockedUntil');
  const sent = await requestCode(stack, lockedEmail);
  const code = await latestCode(stack, lockedEmail);
  const wrong: HttpAnswer[] = [];
  for (let i = 0; i < 5; i++) wrong.push(await submitCode(stack, sent.request_id, wrongCode(code)));
  locked = { sent, code, wrong, right: await submitCode(stack, sent.request_id, code) };
  const lateEmail = uniqueEmail('Late');
  const t0 = Date.now();
  const lateSent = await requestCode(stack, lateEmail);
  late = { t0, sent: lateSent, code: await latestCode(stack, lateEmail) };
});
after(async () => {
  await stack?.stop();
});

/** Waits for a time the broker promised (unix seconds), e.g. resend_after: the window itself is under test. */
async function waitUntil(unixSeconds: number): Promise<void> {
  const wait = unixSeconds * 1000 - Date.now();
  if (wait > 0) await delay(wait);
}

const EventType = temporal.api.enums.v1.EventType;

/** The TimerStarted durations of a run, in seconds. */
async function timerSeconds(workflowId: string): Promise<number[]> {
  const history = await stack.temporal.workflow.getHandle(workflowId).fetchHistory();
  return (history.events ?? [])
    .filter((e) => e.eventType === EventType.EVENT_TYPE_TIMER_STARTED)
    .map(
      (e) => Number(e.timerStartedEventAttributes?.startToFireTimeout?.seconds ?? 0) + (e.timerStartedEventAttributes?.startToFireTimeout?.nanos ?? 0) / 1e9,
    );
}

void describe('email code login windows', () => {
  void test('a run whose first dispatch never comes ends expired after its wait, having mailed nothing', async () => {
    // Only a start without its Update-with-Start dispatch (an API that died in between) gets here:
    // start the run as such an API would have, with a 1-second wait.
    const email = uniqueEmail('NeverDispatched').toLowerCase();
    const request_id = randomBytes(16).toString('hex');
    const workflowId = workflowIdOf(stack, request_id);
    const input: EmailCodeLoginInput = {
      request_id,
      email,
      email_key: emailKey(stack.secrets.hmacSecret, email),
      code_salt: randomBytes(16).toString('hex'),
      settings: {
        ttlSeconds: TTL_SECONDS,
        maxAttempts: 5,
        resendCooldownSeconds: COOLDOWN_SECONDS,
        maxSends: 3,
        firstDispatchSeconds: 1,
        retryWindowSeconds: 120,
      },
    };
    const sesBefore = stack.ses.requestCount();
    const t0 = Date.now();
    const handle = await stack.temporal.workflow.start('emailCodeLoginWorkflow', { workflowId, taskQueue: stack.config.BROKER_TASK_QUEUE, args: [input] });
    assert.equal(await handle.result(), 'expired');
    assert.ok(Date.now() - t0 >= 1000 - 50, 'it waited for its first dispatch');
    assert.deepEqual(await timerSeconds(workflowId), [1], 'one timer: the first-dispatch wait, as configured');
    assert.equal(stack.ses.requestCount(), sesBefore, 'nothing mailed');
    assert.equal((await handle.describe()).typedSearchAttributes.get(AkOutcome), 'expired');
  });

  void test('cooldown per address (from one network), across requests: 429 with Retry-After, nothing mailed, no flow started; after it the owner resends on their request', async () => {
    const email = uniqueEmail('Resend');
    const lower = email.toLowerCase();
    const first = await requestCode(stack, email);
    const firstCode = await latestCode(stack, email);
    const sesAfterFirst = stack.ses.requestCount();

    // Too soon: a new request (anyone's) and a resend on the owner's request alike.
    const starts = spyWorkflowStarts(stack.temporal);
    const rows = await dbSnapshot(stack.db);
    try {
      for (const body of [{ email }, { email, request_id: first.request_id }]) {
        const tooSoon = await stack.request('POST', '/v1/session/email_code', { body });
        assertRefused(tooSoon, 429, 'rate_limited', /moments ago/);
        const retryAfter = Number(tooSoon.headers.get('retry-after'));
        assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= COOLDOWN_SECONDS, `Retry-After ${retryAfter}`);
        assert.equal((tooSoon.body as { retry_after: number }).retry_after, retryAfter);
      }
      assert.equal(starts.count(), 0, 'a refused request started a flow');
    } finally {
      starts.restore();
    }
    await assertUnchanged(stack.db, rows, 'refused inside the cooldown');
    assert.equal(stack.ses.requestCount(), sesAfterFirst, 'no second send');
    assert.equal((await devMail(stack, lower)).length, 1, 'no second mail');

    // resend_after is a promise: a client that waits until then is served.
    await waitUntil(first.resend_after);
    const second = await requestCode(stack, email, first.request_id);
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

  void test('a stranger asking for the address after the cooldown does not kill the code the owner is about to type', async () => {
    const email = uniqueEmail('About-to-type');
    const owner = await requestCode(stack, email);
    const ownerCode = await latestCode(stack, email);
    await waitUntil(owner.resend_after);
    const stranger = await requestCode(stack, email);
    assert.notEqual(stranger.request_id, owner.request_id);
    assert.notEqual(await latestCode(stack, email), ownerCode, "the stranger's request mailed another code");
    const login = await submitCode(stack, owner.request_id, ownerCode);
    assert.equal(login.status, 200, login.text);
  });
});

void describe('email code login windows that run out (their requests opened before the first test)', () => {
  void test('a locked request keeps refusing even the right code until its window ends, then closes too_many_attempts', async () => {
    const { sent, code, wrong, right } = locked;
    assert.equal(wrong.at(-1)?.status, 429, wrong.at(-1)?.text);
    assertRefused(right, 429, 'too_many_attempts', /locked/);
    const handle = stack.temporal.workflow.getHandle(workflowIdOf(stack, sent.request_id));
    assert.equal(await handle.result(), 'too_many_attempts');
    // It stayed open (answering 429) until the code would have expired, not a moment less.
    const closed = (await handle.describe()).closeTime?.getTime() ?? 0;
    assert.ok(closed >= sent.expires_at * 1000 - 1000, `closed at ${closed}, the window ended at ${sent.expires_at * 1000}`);
    const timers = await timerSeconds(handle.workflowId);
    assert.ok(timers.length >= 2 && (timers.at(-1) ?? 0) > 0 && (timers.at(-1) ?? 99) <= TTL_SECONDS, `the lock sleep is the last timer: ${timers.join(', ')}`);
    const after = await submitCode(stack, sent.request_id, code);
    assert.equal(after.status, 410, after.text);
  });

  void test('a code past its TTL is refused with 410 expired', async () => {
    const { t0, sent, code } = late;
    assert.ok(sent.expires_at <= Math.ceil(t0 / 1000) + TTL_SECONDS + 1, 'expires_at follows the configured TTL');

    // The flow's own timer ends it: await that instead of guessing a sleep.
    const handle = stack.temporal.workflow.getHandle(workflowIdOf(stack, sent.request_id));
    assert.equal(await handle.result(), 'expired');
    const closed = (await handle.describe()).closeTime?.getTime() ?? 0;
    assert.ok(closed - t0 >= TTL_SECONDS * 1000 - 50, `the flow lived for its TTL: closed ${closed - t0} ms after the request`);

    const rowsBefore = await rowCounts(stack.db);
    const refused = await submitCode(stack, sent.request_id, code);
    assert.equal(refused.status, 410, refused.text);
    assert.equal((refused.body as { error: string }).error, 'expired');
    assert.deepEqual(await rowCounts(stack.db), rowsBefore, 'nothing written');
    assert.equal((await handle.describe()).typedSearchAttributes.get(AkOutcome), 'expired');
  });
});
