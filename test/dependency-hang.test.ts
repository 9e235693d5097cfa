/**
 * Issue 14: while Postgres or the Temporal frontend hangs (connections accepted, bytes never
 * answered), the API answers 503 `unavailable` with Retry-After within 2 s instead of holding the
 * caller, /readyz names the part, and once it answers again the same calls succeed without a
 * restart and nothing is half-written. The API reaches the part through a hang proxy
 * (scripts/cluster/hang-proxy.ts); the worker keeps its direct connection.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startHangProxy, type HangProxy } from '../scripts/cluster/hang-proxy';
import { requestCode, uniqueEmail } from './email-login-client';
import { startStack, testTemporalAddress, type StartStackOptions, type TestStack } from './harness';
import { emailLogin, mintOidc, type Session } from './mint-client';

/** The promised answer time while a dependency hangs. */
const ANSWER_WITHIN_MS = 2000;

interface Timed {
  status: number;
  body: Record<string, unknown>;
  retryAfter: string | null;
  ms: number;
}

/** One call, given up by the client after 5 s (status 0): a hang fails the test instead of holding it. */
async function timed(stack: TestStack, method: string, path: string, opts: { body?: unknown; token?: string } = {}): Promise<Timed> {
  const t = performance.now();
  const headers: Record<string, string> = {};
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  try {
    const res = await fetch(stack.url + path, {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      signal: AbortSignal.timeout(ANSWER_WITHIN_MS + 3000),
    });
    const body = (await res.json()) as Record<string, unknown>;
    return { status: res.status, body, retryAfter: res.headers.get('retry-after'), ms: performance.now() - t };
  } catch (e) {
    return { status: 0, body: { client: (e as Error).message }, retryAfter: null, ms: performance.now() - t };
  }
}

/** The measured answers, in the test's output. */
const report = (t: { diagnostic(m: string): void }, answers: Record<string, Timed>) => {
  for (const [call, r] of Object.entries(answers)) t.diagnostic(`${call} -> ${r.status} in ${r.ms.toFixed(0)} ms`);
};

function assertUnavailable(what: string, r: Timed): void {
  assert.equal(r.status, 503, `${what}: ${JSON.stringify(r.body)}`);
  assert.equal(r.body.error, 'unavailable', what);
  assert.equal(typeof r.body.message, 'string', what);
  assert.ok(Number(r.retryAfter) >= 1, `${what}: Retry-After ${r.retryAfter}`);
  assert.ok(r.ms < ANSWER_WITHIN_MS, `${what}: answered after ${r.ms.toFixed(0)} ms`);
}

/** Mint intents without their outcome row (a mint half-done), and all intents. */
async function mintRowCounts(stack: TestStack): Promise<{ intents: number; orphans: number }> {
  const r = await stack.db.query<{ intents: string; orphans: string }>(
    `SELECT (SELECT count(*) FROM audit_log WHERE event = 'mint.oidc.intent') AS intents,
            (SELECT count(*) FROM audit_log i WHERE i.event = 'mint.oidc.intent'
               AND NOT EXISTS (SELECT 1 FROM audit_log o WHERE o.event = 'mint.oidc' AND o.request_id = i.request_id)) AS orphans`,
  );
  return { intents: Number(r.rows[0]?.intents), orphans: Number(r.rows[0]?.orphans) };
}

/** Waits until every mint intent has its outcome (a flow the API gave up on finishes on its own). */
async function settledMints(stack: TestStack): Promise<{ intents: number; orphans: number }> {
  let counts = await mintRowCounts(stack);
  for (let i = 0; i < 100 && counts.orphans > 0; i++) {
    await new Promise((r) => setTimeout(r, 200));
    counts = await mintRowCounts(stack);
  }
  return counts;
}

/** The ops view of /readyz: status and parts. */
async function readyz(stack: TestStack): Promise<Timed & { parts: Record<string, { ok: boolean; detail?: string }> }> {
  const r = await timed(stack, 'GET', '/readyz', { token: stack.config.BROKER_OPS_TOKEN });
  return { ...r, parts: (r.body.parts ?? {}) as Record<string, { ok: boolean; detail?: string }> };
}

/** The calls after the dependency is back: what hung now succeeds, on the same processes. */
async function assertRecovered(stack: TestStack, session: Session): Promise<void> {
  const me = await timed(stack, 'GET', '/v1/session/me', { token: session.token });
  assert.equal(me.status, 200, JSON.stringify(me.body));
  assert.equal(me.body.omni_account, session.omni_account);
  await requestCode(stack, uniqueEmail('hang-after'));
  const minted = await mintOidc(stack, session.token);
  assert.ok(minted.jwt.split('.').length === 3);
  const ready = await readyz(stack);
  assert.equal(ready.status, 200, JSON.stringify(ready.body));
}

/**
 * A stack for one describe whose API reaches `target` through a hang proxy (`through` says how:
 * its database URL or its Temporal address); the worker keeps its direct connections.
 */
function stackBehindHangProxy(
  target: () => Promise<{ host: string; port: number }>,
  through: (proxyPort: number) => StartStackOptions,
): { stack: () => TestStack; proxy: () => HangProxy } {
  let stack: TestStack | undefined;
  let proxy: HangProxy | undefined;
  before(async () => {
    const p = await startHangProxy(await target());
    proxy = p;
    stack = await startStack({
      env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '1000', BROKER_EMAIL_RESEND_COOLDOWN_SECONDS: '0', BROKER_RATE_LIMIT_EMAIL_PER_NETWORK_PER_HOUR: '100' },
      ...through(p.port),
    });
  });
  after(async () => {
    proxy?.restore();
    await stack?.stop();
    await proxy?.close();
  });
  const defined = <T>(v: T | undefined, what: string): T => {
    assert.ok(v, `${what} did not start`);
    return v;
  };
  return { stack: () => defined(stack, 'the stack'), proxy: () => defined(proxy, 'the hang proxy') };
}

void describe('Postgres hangs (the API reaches it through a hang proxy)', () => {
  const { stack: stackOf, proxy: proxyOf } = stackBehindHangProxy(
    async () => ({ host: '127.0.0.1', port: 5432 }),
    (port) => ({
      apiDatabaseUrl: (url) => {
        const u = new URL(url);
        u.port = String(port);
        return u.toString();
      },
    }),
  );

  void test('me, email_code and a mint answer 503 within 2 s, /readyz names the database; all recover without a restart', async (t) => {
    const stack = stackOf();
    const proxy = proxyOf();
    const session = await emailLogin(stack);
    await mintOidc(stack, session.token);
    const before = await settledMints(stack);
    const hangEmail = uniqueEmail('hang');

    proxy.hang();
    try {
      const [me, code, mint, ready] = await Promise.all([
        timed(stack, 'GET', '/v1/session/me', { token: session.token }),
        timed(stack, 'POST', '/v1/session/email_code', { body: { email: hangEmail } }),
        timed(stack, 'POST', '/v1/mint-oidc-jwt', { token: session.token }),
        readyz(stack),
      ]);
      report(t, { me, email_code: code, mint, readyz: ready });
      assertUnavailable('GET /v1/session/me', me);
      assertUnavailable('POST /v1/session/email_code', code);
      assertUnavailable('POST /v1/mint-oidc-jwt', mint);
      assert.equal(mint.body.jwt, undefined);
      assert.equal(ready.status, 503);
      assert.ok(ready.ms < ANSWER_WITHIN_MS, `/readyz after ${ready.ms.toFixed(0)} ms`);
      assert.equal(ready.parts.database?.ok, false);
      // Our own timer, or the pool's connect timeout when the check had to open a connection and
      // that attempt (started earlier by another call) gave up first: both say the database did not answer.
      assert.match(ready.parts.database?.detail ?? '', /no answer within \d+ ms|connection timeout/);
      assert.equal(ready.parts.temporal?.ok, true, 'only the database is down');
      // A second round on the same pool: the clients whose statements timed out were dropped, not reused.
      assertUnavailable('GET /v1/session/me again', await timed(stack, 'GET', '/v1/session/me', { token: session.token }));
    } finally {
      proxy.restore();
    }

    await assertRecovered(stack, session);
    // Nothing half-written: the refused email_code started no flow and mailed nothing; the refused
    // mint never reached its flow (no intent without an outcome, one intent more: the one after).
    assert.deepEqual((await stack.request('GET', `/_dev/mail?to=${encodeURIComponent(hangEmail)}`)).body, []);
    const afterCounts = await settledMints(stack);
    assert.equal(afterCounts.orphans, 0);
    assert.equal(afterCounts.intents, before.intents + 1);
  });
});

void describe('the Temporal frontend hangs (the API reaches it through a hang proxy)', () => {
  const { stack: stackOf, proxy: proxyOf } = stackBehindHangProxy(
    async () => {
      const [host = '127.0.0.1', port = '7233'] = (await testTemporalAddress()).split(':');
      return { host, port: Number(port) };
    },
    (port) => ({ apiTemporalAddress: `127.0.0.1:${port}` }),
  );

  void test('email_code and a mint answer 503 within 2 s, me still 200, /readyz names temporal; all recover without a restart', async (t) => {
    const stack = stackOf();
    const proxy = proxyOf();
    const session = await emailLogin(stack);
    const before = await settledMints(stack);

    proxy.hang();
    let mintReachedFlow = false;
    try {
      const [me, code, mint, ready] = await Promise.all([
        timed(stack, 'GET', '/v1/session/me', { token: session.token }),
        timed(stack, 'POST', '/v1/session/email_code', { body: { email: uniqueEmail('hang') } }),
        timed(stack, 'POST', '/v1/mint-oidc-jwt', { token: session.token }),
        readyz(stack),
      ]);
      report(t, { me, email_code: code, mint, readyz: ready });
      assert.equal(me.status, 200, 'GET /v1/session/me needs no Temporal');
      assert.ok(me.ms < ANSWER_WITHIN_MS);
      assertUnavailable('POST /v1/session/email_code', code);
      assertUnavailable('POST /v1/mint-oidc-jwt', mint);
      assert.equal(mint.body.jwt, undefined, 'a mint given up on hands nothing out');
      assert.equal(ready.status, 503);
      assert.ok(ready.ms < ANSWER_WITHIN_MS, `/readyz after ${ready.ms.toFixed(0)} ms`);
      assert.equal(ready.parts.temporal?.ok, false);
      assert.match(ready.parts.temporal?.detail ?? '', /no answer within \d+ ms|deadline/i);
      assert.equal(ready.parts.database?.ok, true, 'only Temporal is down');
      mintReachedFlow = (await mintRowCounts(stack)).intents > before.intents;
    } finally {
      proxy.restore();
    }
    assert.equal(mintReachedFlow, false, 'the start was held by the proxy: no intent while it hung');

    await assertRecovered(stack, session);
    // The given-up start may reach the server once the held bytes go through: then its flow runs
    // to the end (intent and outcome audited) and its credential, sealed to a key the API has
    // dropped, is never handed out. Either way no intent is left without its outcome.
    const afterCounts = await settledMints(stack);
    assert.equal(afterCounts.orphans, 0);
    assert.ok(afterCounts.intents === before.intents + 1 || afterCounts.intents === before.intents + 2, `intents ${before.intents} → ${afterCounts.intents}`);
  });
});
