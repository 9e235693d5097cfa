/**
 * Issue 23: a Temporal call that fails as unavailable is retried within the request's deadline
 * before the API answers 503 (adapters/temporal-retry.ts). The API reaches the real dev server
 * through a proxy that drops every connection for a while (a node gone: resets, refusals); the
 * worker keeps its direct connection. An outage shorter than the deadline costs the caller
 * latency and the call runs once; one that outlasts it is a 503 saying so, near the deadline.
 */
import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import { WorkflowUpdateFailedError } from '@temporalio/client';
import { after, before, describe, test } from 'node:test';
import { startHangProxy, type HangProxy } from '../scripts/cluster/hang-proxy';
import {
  RETRY_LAST_TRY_MS,
  RETRY_MAX_DELAY_MS,
  SAFE_TO_RESEND,
  TemporalRetryScope,
  methodName,
  reSendUnlessClosed,
  resendUnprocessedUpdate,
  retryDelayMs,
  UNPROCESSED_UPDATE_SENDS,
} from '../adapters/temporal-retry';
import { uniqueEmail } from './email-login-client';
import { startStack, testTemporalAddress, type TestStack } from './harness';
import { emailLogin } from './mint-client';

const DEADLINE_MS = 4500;
/** How long the short outage lasts; how long the lost replies are held before their connection is reset. */
const OUTAGE_MS = 1200;
const HOLD_MS = 1000;

interface Timed {
  status: number;
  body: Record<string, unknown>;
  ms: number;
}

async function timed(stack: TestStack, path: string, opts: { body?: unknown; token?: string } = {}): Promise<Timed> {
  const t = performance.now();
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  const res = await fetch(stack.url + path, {
    method: 'POST',
    headers,
    body: JSON.stringify(opts.body ?? {}),
    signal: AbortSignal.timeout(DEADLINE_MS + 10_000),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown>, ms: performance.now() - t };
}

async function mintRows(stack: TestStack): Promise<{ intents: number; outcomes: number }> {
  const r = await stack.db.query<{ intents: string; outcomes: string }>(
    `SELECT (SELECT count(*) FROM audit_log WHERE event = 'mint.oidc.intent') AS intents,
            (SELECT count(*) FROM audit_log WHERE event = 'mint.oidc' AND outcome = 'ok') AS outcomes`,
  );
  return { intents: Number(r.rows[0]?.intents), outcomes: Number(r.rows[0]?.outcomes) };
}

void describe('the retry rule', () => {
  void test('an Update the worker never processed is sent again, a few times at most; any other failure at once', async () => {
    const unprocessed = () => new WorkflowUpdateFailedError('Update failed', new Error("Workflow Update wasn't processed by worker. Try again."));
    let sends = 0;
    const answer = await resendUnprocessedUpdate(async () => {
      if (++sends < 3) throw unprocessed();
      return 'decided';
    });
    assert.deepEqual([answer, sends], ['decided', 3]);
    sends = 0;
    await assert.rejects(
      resendUnprocessedUpdate(async () => {
        sends++;
        throw unprocessed();
      }),
      WorkflowUpdateFailedError,
    );
    assert.equal(sends, UNPROCESSED_UPDATE_SENDS);
    sends = 0;
    const refused = new WorkflowUpdateFailedError('Update failed', new Error('this code was already used'));
    await assert.rejects(
      resendUnprocessedUpdate(async () => {
        sends++;
        throw refused;
      }),
      (e) => e === refused,
    );
    assert.equal(sends, 1, "a handler's own refusal is the answer, never re-sent");
  });

  void test('a re-send after the connection closed is dropped; the first send and other errors still throw', () => {
    const closed = new Error('Channel has been shut down');
    type Next = Parameters<typeof reSendUnlessClosed>[0];
    const throwing =
      (e: Error): Next =>
      () => {
        throw e;
      };
    assert.throws(() => reSendUnlessClosed(throwing(closed))({} as never), /shut down/, 'the first send throws to its caller');
    let n = 0;
    const live = { start: () => undefined };
    const next = (() => {
      if (n++ === 0) return live;
      throw closed;
    }) as unknown as Next;
    const guarded = reSendUnlessClosed(next);
    assert.equal(guarded({} as never), live);
    const dropped = guarded({} as never) as unknown as { start: (...a: unknown[]) => unknown; halfClose: () => unknown };
    assert.notEqual(dropped, live);
    assert.equal(dropped.start({}, {}), undefined);
    assert.equal(dropped.halfClose(), undefined);
    let m = 0;
    const other = reSendUnlessClosed((() => {
      if (m++ === 0) return live;
      throw new Error('bad metadata');
    }) as unknown as Next);
    other({} as never);
    assert.throws(() => other({} as never), /bad metadata/);
  });

  void test('re-sends only methods whose repeat is the same call on the server', () => {
    assert.equal(methodName('/temporal.api.workflowservice.v1.WorkflowService/ExecuteMultiOperation'), 'ExecuteMultiOperation');
    for (const m of ['StartWorkflowExecution', 'ExecuteMultiOperation', 'UpdateWorkflowExecution', 'GetWorkflowExecutionHistory', 'QueryWorkflow'])
      assert.ok(SAFE_TO_RESEND.has(m), m);
    for (const m of ['TerminateWorkflowExecution', 'ResetWorkflowExecution', 'CreateSchedule', 'UpdateNamespace']) assert.ok(!SAFE_TO_RESEND.has(m), m);
  });

  void test('backs off with jitter up to 1 s and never past the deadline', () => {
    assert.equal(
      retryDelayMs(1, () => 0),
      50,
    );
    assert.equal(
      retryDelayMs(1, () => 1),
      100,
    );
    assert.equal(
      retryDelayMs(20, () => 1),
      RETRY_MAX_DELAY_MS,
    );
    assert.equal(
      retryDelayMs(20, () => 0),
      RETRY_MAX_DELAY_MS / 2,
    );
    let now = 0;
    const scope = new TemporalRetryScope(3000, undefined, () => now);
    const unavailable = { code: 14, details: 'connection reset', metadata: undefined as never };
    assert.ok((scope.nextDelay('ExecuteMultiOperation', 1, unavailable) ?? -1) >= 50);
    assert.equal(scope.nextDelay('TerminateWorkflowExecution', 1, unavailable), undefined, 'not a safe method');
    assert.equal(scope.nextDelay('StartWorkflowExecution', 1, { ...unavailable, code: 3 }), undefined, 'INVALID_ARGUMENT is an answer');
    now = 3000 - RETRY_LAST_TRY_MS - 40;
    assert.equal(scope.nextDelay('StartWorkflowExecution', 9, unavailable), undefined, 'no try that cannot finish before the deadline');
    assert.ok(scope.covers('temporal: no answer within 800 ms'));
    assert.ok(!scope.covers('database: no answer within 800 ms'), 'a database outage is not covered');
    now += 2500;
    assert.ok(!scope.covers('temporal: no answer within 800 ms'), 'a hang after the resets is cut as before');
    const aborted = new AbortController();
    aborted.abort();
    assert.equal(new TemporalRetryScope(60_000, aborted.signal, () => 0).nextDelay('QueryWorkflow', 1, unavailable), undefined);
  });
});

void describe('Temporal drops every connection for a while (the API reaches it through a proxy)', () => {
  let stack: TestStack | undefined;
  let proxy: HangProxy | undefined;
  before(async () => {
    const [host = '127.0.0.1', port = '7233'] = (await testTemporalAddress()).split(':');
    proxy = await startHangProxy({ host, port: Number(port) });
    stack = await startStack({
      env: { BROKER_FLOW_DEADLINE_MS: String(DEADLINE_MS), BROKER_RATE_LIMIT_IP_PER_MINUTE: '1000' },
      apiTemporalAddress: `127.0.0.1:${proxy.port}`,
    });
  });
  after(async () => {
    proxy?.restore();
    await stack?.stop();
    await proxy?.close();
  });

  void test('an outage shorter than the deadline: Update-with-Start and a mint answer once it is over, each run once', async (t) => {
    assert.ok(stack && proxy);
    const session = await emailLogin(stack);
    const before = await mintRows(stack);
    const email = uniqueEmail('outage');
    proxy.drop();
    const outage = setTimeout(() => proxy?.restore(), OUTAGE_MS);
    try {
      const [code, mint] = await Promise.all([
        timed(stack, '/v1/session/email_code', { body: { email } }),
        timed(stack, '/v1/mint-oidc-jwt', { token: session.token }),
      ]);
      t.diagnostic(`email_code -> ${code.status} in ${code.ms.toFixed(0)} ms; mint -> ${mint.status} in ${mint.ms.toFixed(0)} ms`);
      assert.equal(code.status, 202, JSON.stringify(code.body));
      assert.equal(mint.status, 200, JSON.stringify(mint.body));
      assert.equal(String(mint.body.jwt).split('.').length, 3);
      // They waited out the outage (not answered before it ended) and well within the deadline.
      for (const r of [code, mint]) assert.ok(r.ms > OUTAGE_MS - 100 && r.ms < DEADLINE_MS, `${r.ms.toFixed(0)} ms`);
    } finally {
      clearTimeout(outage);
      proxy.restore();
    }
    // One code mailed, one mint audited: no retried call ran twice.
    assert.equal(((await stack.request('GET', `/_dev/mail?to=${encodeURIComponent(email)}`)).body as unknown[]).length, 1);
    const afterRows = await mintRows(stack);
    assert.equal(afterRows.intents, before.intents + 1);
    assert.equal(afterRows.outcomes, before.outcomes + 1);
  });

  void test('a reply lost after Temporal did the work: the re-sent request is the same call (one run, one mail, one mint)', async (t) => {
    assert.ok(stack && proxy);
    const session = await emailLogin(stack);
    const before = await mintRows(stack);
    const email = uniqueEmail('lost-reply');
    // The API's open connection carries both requests; their answers are held HOLD_MS, then the
    // connection is reset: the server started the flows (and ran the Update) but the API never heard.
    const lost = proxy.loseReplies(HOLD_MS);
    const s = stack;
    const expected = { mails: 1, intents: before.intents + 1, outcomes: before.outcomes + 1 };
    /** What the first tries did while their answers were held: read until both took effect, or until the hold is nearly over. */
    const observe = async () => {
      const until = performance.now() + HOLD_MS - 200;
      for (;;) {
        const mails = (await s.request('GET', `/_dev/mail?to=${encodeURIComponent(email)}`)).body as unknown[];
        const seen = { mails: mails.length, ...(await mintRows(s)) };
        if (isDeepStrictEqual(seen, expected) || performance.now() > until) return seen;
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    const [code, mint, during] = await Promise.all([
      timed(stack, '/v1/session/email_code', { body: { email } }),
      timed(stack, '/v1/mint-oidc-jwt', { token: session.token }),
      observe(),
    ]);
    await lost;
    // While the answers were held, the first tries had done their work: the code was mailed, the mint audited.
    assert.deepEqual(during, expected);
    t.diagnostic(`email_code -> ${code.status} in ${code.ms.toFixed(0)} ms; mint -> ${mint.status} in ${mint.ms.toFixed(0)} ms`);
    // A re-run of the route's call would carry a new request id and Update id: the start would meet
    // its own run (WorkflowExecutionAlreadyStarted, a 500) and the Update would mail a second code.
    assert.equal(code.status, 202, JSON.stringify(code.body));
    assert.equal(mint.status, 200, JSON.stringify(mint.body));
    for (const r of [code, mint]) assert.ok(r.ms > HOLD_MS - 100, `answered after ${r.ms.toFixed(0)} ms: the reply was not lost`);
    assert.equal(((await stack.request('GET', `/_dev/mail?to=${encodeURIComponent(email)}`)).body as unknown[]).length, 1);
    const afterRows = await mintRows(stack);
    assert.equal(afterRows.intents, before.intents + 1);
    assert.equal(afterRows.outcomes, before.outcomes + 1);
  });

  void test('an outage that outlasts the deadline: 503 unavailable near the deadline, naming the unreachable workflow service', async (t) => {
    assert.ok(stack && proxy);
    const session = await emailLogin(stack);
    const email = uniqueEmail('long-outage');
    proxy.drop();
    let mint: Timed;
    let code: Timed;
    try {
      [mint, code] = await Promise.all([
        timed(stack, '/v1/mint-oidc-jwt', { token: session.token }),
        timed(stack, '/v1/session/email_code', { body: { email } }),
      ]);
    } finally {
      proxy.restore();
    }
    for (const [call, r] of [
      ['mint', mint],
      ['email_code', code],
    ] as const) {
      t.diagnostic(`${call} -> ${r.status} in ${r.ms.toFixed(0)} ms: ${String(r.body.message)}`);
      assert.equal(r.status, 503, `${call}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error, 'unavailable');
      assert.match(String(r.body.message), /workflow service stayed unreachable for \d+\.\d s \(\d+ tries/);
      // It kept trying until shortly before the deadline, then answered.
      assert.ok(r.ms > DEADLINE_MS - 1500 && r.ms < DEADLINE_MS + 1000, `${call}: ${r.ms.toFixed(0)} ms`);
    }
    assert.equal(mint.body.jwt, undefined);
    // And the same process serves again once Temporal is back.
    const again = await timed(stack, '/v1/mint-oidc-jwt', { token: session.token });
    assert.equal(again.status, 200, JSON.stringify(again.body));
  });
});
