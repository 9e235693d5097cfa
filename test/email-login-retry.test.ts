/**
 * email_code and email_login are safe to repeat under an Idempotency-Key (issue 14): a client
 * whose answer was lost repeats the same call with the same key. A repeated email_code gets the
 * first answer (no new mail, no 429 from the cooldown); a repeated email_login with the same code,
 * within the retry window after the success, gets a fresh session for the same account, recorded
 * and audited as a retry. Another key, another code, a stranger or a late repeat gets what it got
 * before (410), concurrent repeats consume the code once and share one retry session, and neither
 * the key, the code nor a token is stored anywhere readable.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { collectPayloads, decodeThroughCodec } from './codec-client';
import { devMail, latestCode, uniqueEmail, workflowIdOf, wrongCode, type CodeDispatchedBody, type LoginSessionBody } from './email-login-client';
import { Worker } from '@temporalio/worker';
import { brokerDataConverter } from '../adapters/temporal-options';
import { jtiOf } from './refresh-client';
import { startStack, testWorkflowBundle, type TestStack } from './harness';
import { assertRefused, assertUnchanged, dbSnapshot, spyWorkflowStarts, type HttpAnswer } from './adversarial-probes';

/**
 * Short, so it runs out while this file's other tests run (the expiry test's login is taken before
 * them and the test is the file's last); long enough for ten concurrent repeats on a busy machine.
 */
const RETRY_WINDOW_SECONDS = 2;
/** Long enough that a repeat right after the first try is inside it; short enough to wait out once. */
const COOLDOWN_SECONDS = 6;

let stack: TestStack;
/** The expiry test's login, taken before the first test so that its retry window runs out meanwhile. */
let lateLogin: { requestId: string; code: string; key: string; first: HttpAnswer };
before(async () => {
  // The resend cooldown stays on: a repeated email_code without the key is refused by it.
  stack = await startStack({
    env: {
      BROKER_RATE_LIMIT_IP_PER_MINUTE: '1000',
      BROKER_EMAIL_RESEND_COOLDOWN_SECONDS: String(COOLDOWN_SECONDS),
      BROKER_EMAIL_RETRY_WINDOW_SECONDS: String(RETRY_WINDOW_SECONDS),
      // The test client is the trusted balancer: X-Forwarded-For presents another requester network.
      BROKER_TRUST_PROXY: '127.0.0.1/32',
    },
  });
  const { requestId, code } = await openRequest('login-late');
  const key = newKey('late');
  lateLogin = { requestId, code, key, first: await exchange(requestId, code, key) };
});
after(async () => {
  await stack?.stop();
});

const newKey = (label: string) => `${label}-${randomBytes(16).toString('hex')}`;

const askCode = (email: string, key?: string, requestId?: string, from?: string) =>
  stack.request('POST', '/v1/session/email_code', {
    body: requestId === undefined ? { email } : { email, request_id: requestId },
    headers: { ...(key === undefined ? {} : { 'idempotency-key': key }), ...(from === undefined ? {} : { 'x-forwarded-for': from }) },
  });

const exchange = (requestId: string, code: string, key?: string) =>
  stack.request('POST', '/v1/session/email_login', {
    body: { request_id: requestId, code },
    headers: key === undefined ? {} : { 'idempotency-key': key },
  });

/** A login request with its code in hand (asked without a key). */
async function openRequest(label: string): Promise<{ email: string; requestId: string; code: string }> {
  const email = uniqueEmail(label);
  const res = await askCode(email);
  assert.equal(res.status, 202, res.text);
  return { email, requestId: (res.body as CodeDispatchedBody).request_id, code: await latestCode(stack, email) };
}

/** The session's jti, from the token's payload. */

/** The sessions and email-login audit rows of one account. */
async function loginRecords(omni: string): Promise<{ sessions: number; audits: { retry: boolean }[] }> {
  const s = await stack.db.query<{ n: string }>('SELECT count(*) AS n FROM sessions WHERE omni_account = $1', [omni]);
  const a = await stack.db.query<{ details: Record<string, unknown> }>(
    "SELECT details FROM audit_log WHERE omni_account = $1 AND event = 'login.email' ORDER BY seq",
    [omni],
  );
  return { sessions: Number(s.rows[0]?.n), audits: a.rows.map((r) => ({ retry: r.details.retry === true })) };
}

async function me(token: string): Promise<number> {
  return (await stack.request('GET', '/v1/session/me', { token })).status;
}

void describe('email_code under an Idempotency-Key', () => {
  void test('a repeat answers the first answer: same request, no new mail, no 429 from the cooldown', async () => {
    const email = uniqueEmail('code-retry');
    const key = newKey('code');
    const first = await askCode(email, key);
    assert.equal(first.status, 202, first.text);
    const again = await askCode(email, key);
    assert.equal(again.status, 202, again.text);
    assert.deepEqual(again.body, first.body);
    // Without the key, or with another one, it is what it was: the cooldown refuses.
    assert.equal((await askCode(email)).status, 429);
    assert.equal((await askCode(email, newKey('other'))).status, 429);
    assert.equal((await devMail(stack, email.toLowerCase())).length, 1, 'one mail');
    // The code of that one mail logs in on the request both answers named.
    const login = await exchange((first.body as CodeDispatchedBody).request_id, await latestCode(stack, email));
    assert.equal(login.status, 200, login.text);
  });

  void test('a keyed resend that never went through, inside the cooldown, is the cooldown 429 at once', async () => {
    const { email, requestId } = await openRequest('resend-new-key');
    const t = performance.now();
    const res = await askCode(email, newKey('resend'), requestId);
    assert.equal(res.status, 429, res.text);
    assert.equal((res.body as { error: string }).error, 'rate_limited');
    assert.ok(performance.now() - t < 2000, `answered after ${(performance.now() - t).toFixed(0)} ms`);
    assert.equal((await devMail(stack, email.toLowerCase())).length, 1);
  });

  void test('ten concurrent tries with one key open one request and send one mail', async () => {
    const email = uniqueEmail('code-concurrent');
    const key = newKey('code10');
    const answers = await Promise.all(Array.from({ length: 10 }, () => askCode(email, key)));
    for (const a of answers) assert.equal(a.status, 202, a.text);
    assert.equal(new Set(answers.map((a) => (a.body as CodeDispatchedBody).request_id)).size, 1);
    assert.equal((await devMail(stack, email.toLowerCase())).length, 1);
  });

  void test('a repeat after its login request ended is 409 conflict, as documented, not the old 202: no mail, no row, no flow', async () => {
    const email = uniqueEmail('code-ended');
    const key = newKey('ended');
    const first = await askCode(email, key);
    assert.equal(first.status, 202, first.text);
    const { request_id } = first.body as CodeDispatchedBody;
    // A login without a key ends the request at once.
    assert.equal((await exchange(request_id, await latestCode(stack, email))).status, 200);
    assert.equal(await stack.temporal.workflow.getHandle(workflowIdOf(stack, request_id)).result(), 'succeeded');

    const starts = spyWorkflowStarts(stack.temporal);
    const rows = await dbSnapshot(stack.db);
    const mails = (await devMail(stack, email.toLowerCase())).length;
    try {
      // Inside the cooldown of this network (the API's budget check finds the earlier try), and
      // from another network, where the budget lets it through to the start of the keyed request.
      assertRefused(await askCode(email, key), 409, 'conflict', /has ended; use a new key/, 'inside the cooldown');
      assertRefused(await askCode(email, key, undefined, '198.51.100.60'), 409, 'conflict', /has ended; use a new key/, 'another network');
      assert.equal(starts.count(), 0, 'no flow started');
    } finally {
      starts.restore();
    }
    await assertUnchanged(stack.db, rows, 'a spent key');
    assert.equal((await devMail(stack, email.toLowerCase())).length, mails, 'nothing mailed');
  });

  void test('a malformed key is a 400 and sends nothing', async () => {
    const email = uniqueEmail('code-badkey');
    // A key shorter than 32 characters is refused too: whoever repeats an email_code key gets its request id.
    for (const bad of ['has space', 'x'.repeat(129), 'semi;colon', '1', 'a'.repeat(31)]) {
      const res = await askCode(email, bad);
      assert.equal(res.status, 400, res.text);
      assert.match(String((res.body as { message: string }).message), /Idempotency-Key/);
    }
    assert.equal((await devMail(stack, email.toLowerCase())).length, 0);
  });
});

void describe('the resend cooldown is the requester network’s (issue 21, item 4)', () => {
  void test('a stranger’s code does not start the cooldown for the owner on another network: 429 for the stranger’s /24, 202 for the owner', async () => {
    const email = uniqueEmail('net-cooldown');
    assert.equal((await askCode(email, undefined, undefined, '198.51.100.31')).status, 202, 'the stranger');
    // Another address of the stranger's /24 is the same requester network: inside its cooldown.
    const starts = spyWorkflowStarts(stack.temporal);
    const rows = await dbSnapshot(stack.db);
    try {
      const tooSoon = await askCode(email, undefined, undefined, '198.51.100.32');
      assertRefused(tooSoon, 429, 'rate_limited', /from your network moments ago/);
      const retryAfter = Number(tooSoon.headers.get('retry-after'));
      assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= COOLDOWN_SECONDS, `Retry-After ${retryAfter}`);
      assert.equal(starts.count(), 0, 'a refused request started a flow');
    } finally {
      starts.restore();
    }
    await assertUnchanged(stack.db, rows, 'refused inside the network cooldown');
    // The owner, at once, from their own network.
    const owner = await askCode(email, undefined, undefined, '203.0.113.31');
    assert.equal(owner.status, 202, owner.text);
    assert.equal((await exchange((owner.body as CodeDispatchedBody).request_id, await latestCode(stack, email))).status, 200);
  });
});

void describe('email_login under an Idempotency-Key', () => {
  void test('a repeat with the same key and code gets a fresh session for the same account, audited as a retry', async () => {
    const { requestId, code } = await openRequest('login-retry');
    const key = newKey('login');
    const first = await exchange(requestId, code, key);
    assert.equal(first.status, 200, first.text);
    const firstBody = first.body as LoginSessionBody;
    // The first answer is "lost"; the client repeats the call as it was.
    const again = await exchange(requestId, code, key);
    assert.equal(again.status, 200, again.text);
    const againBody = again.body as LoginSessionBody;
    assert.equal(againBody.omni_account, firstBody.omni_account);
    assert.equal(againBody.user_id, firstBody.user_id);
    assert.deepEqual(againBody.identity, firstBody.identity);
    assert.notEqual(jtiOf(againBody.token), jtiOf(firstBody.token), 'a session of its own');
    assert.equal(await me(againBody.token), 200);
    assert.equal(await me(firstBody.token), 200);
    const records = await loginRecords(firstBody.omni_account);
    assert.equal(records.sessions, 2);
    assert.deepEqual(records.audits, [{ retry: false }, { retry: true }]);
    // A third repeat (that answer lost too) gets the same retry session again: nothing more is consumed.
    const third = await exchange(requestId, code, key);
    assert.equal(third.status, 200, third.text);
    assert.equal(jtiOf((third.body as LoginSessionBody).token), jtiOf(againBody.token));
    assert.equal((await loginRecords(firstBody.omni_account)).sessions, 2);
  });

  void test('another key, no key, another code or another request: 410 as before, nothing recorded', async () => {
    const { requestId, code } = await openRequest('login-other');
    const key = newKey('login');
    const first = await exchange(requestId, code, key);
    assert.equal(first.status, 200, first.text);
    const omni = (first.body as LoginSessionBody).omni_account;
    for (const [what, res] of [
      ['another key', await exchange(requestId, code, newKey('stranger'))],
      ['no key', await exchange(requestId, code)],
      ['another code', await exchange(requestId, wrongCode(code), key)],
    ] as const) {
      assert.equal(res.status, 410, `${what}: ${res.text}`);
      assert.equal((res.body as { error: string }).error, 'expired', what);
    }
    // The same key and code on a stranger's own request do not reach this login.
    const stranger = await openRequest('login-stranger');
    const res = await exchange(stranger.requestId, code, key);
    assert.ok([401, 200].includes(res.status), res.text);
    if (res.status === 200)
      assert.notEqual((res.body as LoginSessionBody).omni_account, omni, 'the codes happened to match: the stranger logs in as the stranger');
    assert.deepEqual(await loginRecords(omni), { sessions: 1, audits: [{ retry: false }] });
  });

  void test('wrong codes under the right key spend the attempt budget: then the window is closed for the right code too', async () => {
    const { requestId, code } = await openRequest('login-guess');
    const key = newKey('guess');
    const first = await exchange(requestId, code, key);
    assert.equal(first.status, 200, first.text);
    for (let i = 0; i < stack.config.BROKER_EMAIL_MAX_ATTEMPTS; i++) assert.equal((await exchange(requestId, wrongCode(code), key)).status, 410);
    const after = await exchange(requestId, code, key);
    assert.equal(after.status, 410, after.text);
    assert.equal((await loginRecords((first.body as LoginSessionBody).omni_account)).sessions, 1);
  });

  void test('ten concurrent tries of one keyed exchange: the code is consumed once, the repeats share one retry session', async () => {
    const { requestId, code } = await openRequest('login-concurrent');
    const key = newKey('login10');
    const answers = await Promise.all(Array.from({ length: 10 }, () => exchange(requestId, code, key)));
    for (const a of answers) assert.equal(a.status, 200, a.text);
    const bodies = answers.map((a) => a.body as LoginSessionBody);
    const omni = bodies[0]?.omni_account ?? '';
    assert.ok(bodies.every((b) => b.omni_account === omni));
    assert.equal(new Set(bodies.map((b) => jtiOf(b.token))).size, 2, 'the first try’s session and one retry session');
    const records = await loginRecords(omni);
    assert.equal(records.sessions, 2);
    assert.deepEqual(records.audits, [{ retry: false }, { retry: true }]);
  });

  void test('neither the key, the code nor a token is stored: not in the flow’s history (decoded), not in any table', async () => {
    const email = uniqueEmail('login-secrets');
    const codeKey = newKey('secret-code-key');
    const asked = await askCode(email, codeKey);
    assert.equal(asked.status, 202, asked.text);
    const requestId = (asked.body as CodeDispatchedBody).request_id;
    const code = await latestCode(stack, email);
    const loginKey = newKey('secret-login-key');
    const tokens: string[] = [];
    for (let i = 0; i < 2; i++) {
      const res = await exchange(requestId, code, loginKey);
      assert.equal(res.status, 200, res.text);
      tokens.push((res.body as LoginSessionBody).token);
    }
    const history = await stack.temporal.workflow.getHandle(workflowIdOf(stack, requestId)).fetchHistory();
    const texts = await decodeThroughCodec(stack, stack.config.BROKER_OPS_TOKEN ?? '', collectPayloads(history.events));
    assert.ok(
      texts.some((t) => t.includes('retry_key_digest')),
      'the scan read the decoded submissions',
    );
    const tables = await stack.db.query<{ name: string }>("SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public'");
    const rows: string[] = [];
    for (const { name } of tables.rows) {
      const r = await stack.db.query<{ row: string }>(`SELECT row_to_json(t)::text AS row FROM "${name}" t`);
      rows.push(...r.rows.map((x) => `${name}: ${x.row}`));
    }
    for (const secret of [codeKey, loginKey, ...tokens, ...tokens.map((t) => t.split('.')[2] ?? '')]) {
      for (const text of [...texts, ...rows]) assert.ok(!text.includes(secret), `${secret.slice(0, 20)}… found in ${text.slice(0, 200)}`);
    }
    for (const text of texts) assert.doesNotMatch(text, new RegExp(`"${code}"`), 'the code, as a value, in the history');
    for (const row of rows) assert.doesNotMatch(row, new RegExp(`"${code}"`), `the code in ${row.slice(0, 200)}`);
  });
});

void describe('email_login after its retry window', () => {
  void test('after the retry window the repeat is 410 and nothing is recorded', async () => {
    const { requestId, code, key, first } = lateLogin;
    assert.equal(first.status, 200, first.text);
    // The run stays open for the retry window and closes when its timer fires: await that, not a sleep.
    const handle = stack.temporal.workflow.getHandle(workflowIdOf(stack, requestId));
    assert.equal(await handle.result(), 'succeeded');
    const late = await exchange(requestId, code, key);
    assert.equal(late.status, 410, late.text);
    assert.equal((await loginRecords((first.body as LoginSessionBody).omni_account)).sessions, 1);

    // The run, window timer included, replays against the workflow code.
    const history = await handle.fetchHistory();
    await Worker.runReplayHistory(
      { workflowBundle: await testWorkflowBundle(), dataConverter: brokerDataConverter(stack.secrets) },
      history,
      handle.workflowId,
    );
  });
});
