/** Google login's time windows, shortened: no callback ends the flow `expired`; a session nobody collects is dropped. */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { AkOutcome } from '../lib/search-attributes';
import { GOOGLE_LOGIN_ID_PREFIX } from '../workflows/google-login.definitions';
import { assertUnchanged, dbSnapshot, spyWorkflowStarts } from './adversarial-probes';
import { callback, cliStart, consent, loginRows, poll, startGoogleStack, uniqueHint, type GoogleStack } from './google-login-client';

let g: GoogleStack;
before(async () => {
  g = await startGoogleStack({ BROKER_GOOGLE_LOGIN_TTL_SECONDS: '2', BROKER_RATE_LIMIT_IP_PER_MINUTE: '3' });
});
after(async () => {
  await g?.stop();
});

void test('no callback within the window → expired; a late callback and a poll are 410 and write nothing', async () => {
  const start = await cliStart(g.stack);
  assert.ok(start.expires_at - Date.now() / 1000 <= 2.5);
  const callbackUrl = await consent(start.authorize_url, uniqueHint('late'));
  const handle = g.stack.temporal.workflow.getHandle(GOOGLE_LOGIN_ID_PREFIX + start.request_id);
  assert.equal(await handle.result(), 'expired');
  const before = await loginRows(g.stack.db);
  assert.equal((await callback(callbackUrl)).status, 410);
  assert.equal((await poll(g.stack, start)).status, 410);
  assert.deepEqual(await loginRows(g.stack.db), before);
  const described = await handle.describe();
  assert.deepEqual(described.typedSearchAttributes.get(AkOutcome), 'expired');
});

void test('a session nobody collects within the window → uncollected, then 410', async () => {
  const start = await cliStart(g.stack);
  assert.equal((await callback(await consent(start.authorize_url, uniqueHint('uncollected')))).status, 200);
  const handle = g.stack.temporal.workflow.getHandle(GOOGLE_LOGIN_ID_PREFIX + start.request_id);
  assert.equal(await handle.result(), 'uncollected');
  assert.equal((await poll(g.stack, start)).status, 410);
});

void test('starts past BROKER_RATE_LIMIT_IP_PER_MINUTE from one address → 429 with Retry-After, no flow', async () => {
  // The other tests here spent part of this minute's budget (3): a refusal comes within four tries.
  let refused: Awaited<ReturnType<typeof g.stack.request>> | undefined;
  const starts = spyWorkflowStarts(g.stack.temporal);
  try {
    for (let i = 0; i < 4 && !refused; i++) {
      // What stood before this start: a refused one must leave both as they were.
      const [started, before] = [starts.count(), await dbSnapshot(g.stack.db)];
      const r = await g.stack.request('POST', '/v1/session/google_oauth_login', { body: { format: 'cli' } });
      if (r.status === 429) {
        refused = r;
        assert.equal(starts.count(), started, 'the refused start started a workflow');
        await assertUnchanged(g.stack.db, before, 'after the refused start');
      } else {
        assert.equal(r.status, 200, r.text);
        assert.equal(starts.count(), started + 1, 'an accepted start is one workflow start');
      }
    }
  } finally {
    starts.restore();
  }
  assert.ok(refused, 'no 429 within four starts');
  assert.equal((refused.body as { error: string }).error, 'rate_limited');
  assert.ok(Number(refused.headers.get('retry-after')) >= 1);
});
