/**
 * Google login's bad input, each through real HTTP against the loopback OpenID provider: a 4xx or a
 * failed flow, and never a session, a user or an audit row.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { Payload } from '@temporalio/common';
import { assertUnchanged, dbSnapshot, spyWorkflowStarts } from './adversarial-probes';
import { identityForHint } from '../fixtures/google-oidc';
import { AesGcmPayloadCodec } from '../lib/codec';
import { pkceS256Challenge } from '../lib/digest';
import { GOOGLE_LOGIN_ID_PREFIX } from '../workflows/google-login.definitions';
import {
  browserStart,
  browserStartUrl,
  callback,
  cliCallback,
  cliStart,
  consent,
  exchange,
  loginRows,
  pkcePair,
  poll,
  RETURN_ORIGIN,
  startGoogleStack,
  uniqueHint,
  type CliStart,
  type GoogleStack,
} from './google-login-client';

const MAX_ATTEMPTS = 2;
let g: GoogleStack;
/** The API's log lines (pino JSON), for what a refusal must not log at error level. */
const logLines: string[] = [];
before(async () => {
  // Short provider timeout and two tries, so the 5xx and hanging cases end in seconds.
  g = await startGoogleStack(
    { BROKER_GOOGLE_HTTP_TIMEOUT_SECONDS: '1', BROKER_GOOGLE_MAX_ATTEMPTS: String(MAX_ATTEMPTS) },
    { logStream: { write: (line: string) => void logLines.push(line) } },
  );
});
after(async () => {
  await g?.stop();
});

/** Runs `fn` and asserts it left no Google user, session or audit row behind. */
async function noRows(fn: () => Promise<void>): Promise<void> {
  const before = await loginRows(g.stack.db);
  await fn();
  assert.deepEqual(await loginRows(g.stack.db), before, 'a refused sign-in wrote rows');
}

/** A CLI sign-in up to the provider's redirect back: the start and the callback URL, not yet followed. */
async function upToCallback(hint = uniqueHint('input')): Promise<{ start: CliStart; callbackUrl: string }> {
  const start = await cliStart(g.stack);
  return { start, callbackUrl: await consent(start.authorize_url, hint) };
}

const workflowIdOf = (start: CliStart) => GOOGLE_LOGIN_ID_PREFIX + start.request_id;
const result = (start: CliStart) => g.stack.temporal.workflow.getHandle(workflowIdOf(start)).result() as Promise<string>;

/** A refused callback: the status, and that the flow failed without a session and polling says 410. */
async function refused(start: CliStart, callbackUrl: string, status: number, outcome = 'failed'): Promise<string> {
  const back = await callback(callbackUrl);
  assert.equal(back.status, status, back.text);
  assert.equal(await result(start), outcome);
  assert.equal((await poll(g.stack, start)).status, 410);
  return back.text;
}

void describe('callback: state', () => {
  void test('missing → 400, malformed → 400, unknown → 410', async () => {
    await noRows(async () => {
      const { callbackUrl } = await upToCallback();
      const url = new URL(callbackUrl);
      url.searchParams.delete('state');
      assert.equal((await callback(url.href)).status, 400);
      url.searchParams.set('state', '');
      assert.equal((await callback(url.href)).status, 400);
      url.searchParams.set('state', 'not a state!');
      assert.equal((await callback(url.href)).status, 400);
      url.searchParams.set('state', randomBytes(32).toString('base64url'));
      const unknown = await callback(url.href);
      assert.equal(unknown.status, 410, unknown.text);
    });
  });

  void test('reused: the second callback changes nothing (409), the session is the first one', async () => {
    const before = await loginRows(g.stack.db);
    const { start, callbackUrl } = await upToCallback();
    const code = await cliCallback(callbackUrl);
    const second = await callback(callbackUrl);
    assert.equal(second.status, 409, second.text);
    assert.equal(second.code, undefined, 'a refused callback shows no code');
    const got = await poll(g.stack, start, code);
    assert.equal(got.status, 200, got.text);
    const rows = await loginRows(g.stack.db);
    assert.equal(rows.sessions, before.sessions + 1);
    assert.equal(rows.audit, before.audit + 1);
  });

  void test("from another flow: flow A's state with flow B's code fails A (PKCE), no session for anyone", async () => {
    await noRows(async () => {
      const a = await upToCallback();
      const b = await upToCallback();
      const mixed = new URL(b.callbackUrl);
      mixed.searchParams.set('state', new URL(a.callbackUrl).searchParams.get('state') as string);
      await refused(a.start, mixed.href, 401);
    });
  });

  void test('a callback after the flow has finished is 410 and changes nothing', async () => {
    const { start, callbackUrl } = await upToCallback();
    const code = await cliCallback(callbackUrl);
    assert.equal((await poll(g.stack, start, code)).status, 200);
    assert.equal(await result(start), 'succeeded');
    await noRows(async () => {
      assert.equal((await callback(callbackUrl)).status, 410);
    });
  });
});

void describe('provider refusals and bad tokens', () => {
  void test('error=access_denied → 403, flow denied', async () => {
    await noRows(async () => {
      const { start, callbackUrl } = await upToCallback('deny');
      assert.equal(new URL(callbackUrl).searchParams.get('error'), 'access_denied');
      await refused(start, callbackUrl, 403, 'denied');
    });
  });

  void test("a made-up error on a callback link (the query is anyone's to write) is named neither on the page nor in history", async () => {
    await noRows(async () => {
      const start = await cliStart(g.stack);
      const state = new URL(start.authorize_url).searchParams.get('state') as string;
      const spoof = 'Your account is locked. Call +1 555 0100 and read out the code below';
      const url = new URL(g.stack.config.googleRedirectUri);
      url.searchParams.set('state', state);
      url.searchParams.set('error', spoof);
      const text = await refused(start, url.href, 401);
      assert.doesNotMatch(text, /Call|555|locked/);
      assert.match(text, /an error code that is not OAuth/);
      const history = JSON.stringify(await g.stack.temporal.workflow.getHandle(workflowIdOf(start)).fetchHistory());
      assert.doesNotMatch(history, /555 0100/);
    });
  });

  const badTokens: [string, Parameters<GoogleStack['provider']['replaceIdToken']>[0]][] = [
    ['wrong aud', (c, t) => t.sign({ ...c, aud: 'someone-else.apps.googleusercontent.com' })],
    ['wrong iss', (c, t) => t.sign({ ...c, iss: 'https://accounts.evil.example' })],
    ['wrong nonce', (c, t) => t.sign({ ...c, nonce: randomBytes(16).toString('base64url') })],
    ['no nonce', (c, t) => t.sign({ ...c, nonce: undefined })],
    ['expired', (c, t) => t.sign({ ...c, iat: Math.floor(Date.now() / 1000) - 7200, exp: Math.floor(Date.now() / 1000) - 3600 })],
    ['alg none', (c, t) => t.unsigned(c)],
    ['signed by a key not in the JWKS', (c, t) => t.signWithForeignKey(c)],
  ];
  for (const [name, build] of badTokens) {
    void test(`id_token ${name} → 401, no retry of the exchange`, async () => {
      await noRows(async () => {
        const { start, callbackUrl } = await upToCallback();
        g.provider.replaceIdToken(build);
        const calls = g.provider.tokenCalls;
        const text = await refused(start, callbackUrl, 401);
        assert.match(text, /unauthorized/);
        assert.equal(g.provider.tokenCalls, calls + 1, 'a refused token is final');
      });
    });
  }

  void test('the honest token through the replacing path is accepted (the cases above fail for their one change)', async () => {
    const { start, callbackUrl } = await upToCallback();
    g.provider.replaceIdToken((c, t) => t.sign(c));
    const code = await cliCallback(callbackUrl);
    assert.equal((await poll(g.stack, start, code)).status, 200);
  });

  void test('email_verified false → 403, no user', async () => {
    await noRows(async () => {
      const { start, callbackUrl } = await upToCallback(`unverified:${uniqueHint('unverified')}`);
      const text = await refused(start, callbackUrl, 403);
      assert.match(text, /not verified/);
    });
  });
});

void describe('provider failures: retried, then a clean failure', () => {
  void test('token endpoint 500 once → retried, signed in', async () => {
    const { start, callbackUrl } = await upToCallback();
    const calls = g.provider.tokenCalls;
    g.provider.failToken(500, 1);
    const code = await cliCallback(callbackUrl);
    assert.equal(g.provider.tokenCalls, calls + 2);
    assert.equal((await poll(g.stack, start, code)).status, 200);
  });

  void test('token endpoint 500 every time → retried, then 503 and a failed flow', async () => {
    await noRows(async () => {
      const { start, callbackUrl } = await upToCallback();
      const calls = g.provider.tokenCalls;
      g.provider.failToken(500, MAX_ATTEMPTS);
      await refused(start, callbackUrl, 503);
      assert.equal(g.provider.tokenCalls, calls + MAX_ATTEMPTS);
    });
  });

  void test('token endpoint 400 → final at once (401)', async () => {
    await noRows(async () => {
      const { start, callbackUrl } = await upToCallback();
      const calls = g.provider.tokenCalls;
      g.provider.failToken(400, 1);
      await refused(start, callbackUrl, 401);
      assert.equal(g.provider.tokenCalls, calls + 1);
    });
  });

  void test('token endpoint hanging → timed out, retried, then 503', async () => {
    await noRows(async () => {
      const { start, callbackUrl } = await upToCallback();
      const calls = g.provider.tokenCalls;
      g.provider.hangToken(MAX_ATTEMPTS);
      const t0 = Date.now();
      await refused(start, callbackUrl, 503);
      assert.equal(g.provider.tokenCalls, calls + MAX_ATTEMPTS);
      assert.ok(Date.now() - t0 < 15_000, `took ${Date.now() - t0} ms`);
    });
  });

  void test('userinfo 503 once → retried without a second code exchange', async () => {
    const { start, callbackUrl } = await upToCallback();
    const calls = g.provider.tokenCalls;
    g.provider.failUserinfo(503, 1);
    const code = await cliCallback(callbackUrl);
    assert.equal(g.provider.tokenCalls, calls + 1);
    assert.equal((await poll(g.stack, start, code)).status, 200);
  });
});

void describe('browser form: return_to', () => {
  for (const bad of [
    'https://evil.example/x',
    'https://app.example.com.evil.example/',
    'http://app.example.com/',
    'https://user:pw@app.example.com/',
    'javascript:alert(1)',
    '/relative',
    '',
  ]) {
    void test(`return_to ${JSON.stringify(bad)} → 400, no flow`, async () => {
      const before = await dbSnapshot(g.stack.db);
      const starts = spyWorkflowStarts(g.stack.temporal);
      try {
        const r = await fetch(browserStartUrl(g.stack, bad, pkcePair().challenge), { redirect: 'manual' });
        const text = await r.text();
        assert.equal(r.status, 400, text);
        assert.match(text, /return_to/);
        assert.equal(r.headers.get('set-cookie'), null, 'a refused start set the sign-in cookie');
        assert.equal(starts.count(), 0, 'a refused start started a workflow');
        await assertUnchanged(g.stack.db, before, 'after the refused start');
      } finally {
        starts.restore();
      }
    });
  }
  void test('no return_to → 400', async () => {
    const r = await fetch(`${g.stack.url}/v1/session/google_oauth_login`, { redirect: 'manual' });
    assert.equal(r.status, 400);
  });
  void test('an exchange code with the wrong secret → 403; the right one still works once', async () => {
    const start = await browserStart(g.stack, `${RETURN_ORIGIN}/`);
    const back = await callback(await consent(start.authorizeUrl, uniqueHint('exchange')), start.cookie);
    assert.equal(back.status, 302);
    const code = new URL(back.location as string).searchParams.get('exchange_code') as string;
    const wrong = `${code.split('.')[0]}.${randomBytes(32).toString('base64url')}`;
    assert.equal((await exchange(g.stack, wrong, start.verifier)).status, 403);
    assert.equal((await exchange(g.stack, 'nonsense', start.verifier)).status, 400);
    assert.equal((await exchange(g.stack, code, start.verifier)).status, 200);
    assert.equal((await exchange(g.stack, code, start.verifier)).status, 410);
  });
});

void describe('CLI form: polling', () => {
  void test('a wrong poll_secret → 403 before and after the sign-in; the right one still gets the session', async () => {
    const { start, callbackUrl } = await upToCallback();
    const wrong = { request_id: start.request_id, poll_secret: randomBytes(32).toString('base64url') };
    assert.equal((await poll(g.stack, wrong)).status, 403);
    const code = await cliCallback(callbackUrl);
    assert.equal((await poll(g.stack, wrong)).status, 403);
    assert.equal((await poll(g.stack, wrong, code)).status, 403, 'the code without the poll secret is nothing');
    assert.equal((await poll(g.stack, start, code)).status, 200);
    assert.equal((await poll(g.stack, start, code)).status, 410, 'handed out once');
    assert.equal((await poll(g.stack, { request_id: 'x', poll_secret: 'y' })).status, 400);
    assert.equal((await poll(g.stack, { request_id: randomBytes(16).toString('hex'), poll_secret: 'y' })).status, 410);
  });

  void test('16 concurrent polls of a finished sign-in → exactly one session', async () => {
    const { start, callbackUrl } = await upToCallback();
    const code = await cliCallback(callbackUrl);
    const answers = await Promise.all(Array.from({ length: 16 }, () => poll(g.stack, start, code)));
    const statuses = answers.map((a) => a.status).sort();
    assert.equal(statuses.filter((s) => s === 200).length, 1, statuses.join(','));
    assert.equal(statuses.filter((s) => s === 410).length, 15, statuses.join(','));
  });

  void test('{"format":"browser"} or no format on POST → 400', async () => {
    assert.equal((await g.stack.request('POST', '/v1/session/google_oauth_login', { body: { format: 'browser' } })).status, 400);
    assert.equal((await g.stack.request('POST', '/v1/session/google_oauth_login', { body: {} })).status, 400);
  });
});

void describe('history', () => {
  void test('no state, nonce, verifier, poll secret or bearer readable in history; decoded, still no bearer', async () => {
    const { start, callbackUrl } = await upToCallback();
    const authorize = new URL(start.authorize_url);
    const code = await cliCallback(callbackUrl);
    const got = await poll(g.stack, start, code);
    assert.equal(got.status, 200);
    const token = (got.body as { token: string }).token;
    assert.equal(await result(start), 'succeeded');
    const history = await g.stack.temporal.workflow.getHandle(workflowIdOf(start)).fetchHistory();
    const raw = JSON.stringify(history, (_k, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString('latin1') : v));
    for (const secret of [
      authorize.searchParams.get('state') as string,
      authorize.searchParams.get('nonce') as string,
      start.poll_secret,
      code,
      code.replace('-', ''),
      token,
      token.split('.')[2] as string,
    ]) {
      assert.ok(!raw.includes(secret), 'a secret is readable in history');
    }
    // Decoded with the payload key (what an operator with the ops token sees): the flow's secrets are there, the bearer is not.
    const codec = new AesGcmPayloadCodec(g.stack.secrets.payloadKey);
    const payloads: Payload[] = [];
    const walk = (v: unknown): void => {
      if (!v || typeof v !== 'object') return;
      if (v instanceof Uint8Array) return;
      const o = v as Record<string, unknown>;
      if (o.metadata && typeof o.metadata === 'object' && o.data instanceof Uint8Array) payloads.push(o);
      for (const x of Object.values(o)) walk(x);
    };
    walk(history);
    const decoded = (await codec.decode(payloads)).map((p) => Buffer.from(p.data ?? new Uint8Array()).toString('utf8')).join('\n');
    assert.ok(decoded.includes(authorize.searchParams.get('state') as string), 'the decoder sees the flow input (sanity check of the walk)');
    assert.ok(!decoded.includes(token.split('.')[2] as string), 'the bearer is in decoded history');
    assert.doesNotMatch(decoded, /eyJ[\w-]+\.eyJ[\w-]+\.[\w-]{20,}/, 'a signed JWT is in decoded history');
  });
});

void describe('login CSRF through the exchange code (second review, item 3)', () => {
  void test("an attacker's exchange code posted by another app (another verifier, or none) → 4xx, no session, nothing changed; with its own verifier → 200", async () => {
    // The attacker signs in through the browser form in their own browser and stops at return_to?exchange_code=….
    const attacker = await browserStart(g.stack, `${RETURN_ORIGIN}/`);
    const attackerHint = uniqueHint('csrf-attacker');
    const back = await callback(await consent(attacker.authorizeUrl, attackerHint), attacker.cookie);
    assert.equal(back.status, 302, back.text);
    const code = new URL(back.location as string).searchParams.get('exchange_code') as string;
    assert.match(code, /^[0-9a-f]{32}\./);

    // The victim's app gets that link: it holds the verifier of its own sign-in, or none at all.
    const victimApp = pkcePair();
    const before = await dbSnapshot(g.stack.db);
    const starts = spyWorkflowStarts(g.stack.temporal);
    try {
      const other = await exchange(g.stack, code, victimApp.verifier);
      assert.equal(other.status, 403, other.text);
      assert.deepEqual(Object.keys(other.body as object).sort(), ['error', 'message']);
      assert.equal((other.body as { error: string }).error, 'forbidden');
      const none = await exchange(g.stack, code);
      assert.equal(none.status, 400, none.text);
      assert.match((none.body as { message: string }).message, /code_verifier/);
      // The challenge itself is not a verifier (nor is anything short of one).
      const asChallenge = await exchange(g.stack, code, pkceS256Challenge(attacker.verifier));
      assert.equal(asChallenge.status, 403, asChallenge.text);
      for (const r of [other, none, asChallenge]) assert.doesNotMatch(r.text, /eyJ/, 'no token in a refusal');
      await assertUnchanged(g.stack.db, before, 'after the refused exchanges');
      assert.equal(starts.count(), 0, 'a refused exchange started a workflow');
    } finally {
      starts.restore();
    }

    // The refusals spent nothing: the app that started the sign-in, with its verifier, gets the session once.
    const own = await exchange(g.stack, code, attacker.verifier);
    assert.equal(own.status, 200, own.text);
    assert.equal((own.body as { identity: { value: string } }).identity.value, identityForHint(attackerHint).sub);
    assert.equal((await exchange(g.stack, code, attacker.verifier)).status, 410);
  });

  /** A challenge whose last base64url character has its two unused bits set: the same bytes as a real one, another spelling. */
  const respelledChallenge = (): string => {
    for (;;) {
      const c = pkcePair().challenge;
      const last = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.indexOf(c.slice(-1));
      if ((last & 3) === 0) return c.slice(0, -1) + 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'[last | 1];
    }
  };

  void test('a browser start without an S256 code challenge → 400, no flow; the state carries the challenge and cannot be edited', async () => {
    const starts = spyWorkflowStarts(g.stack.temporal);
    try {
      const returnTo = encodeURIComponent(`${RETURN_ORIGIN}/`);
      for (const query of [
        `return_to=${returnTo}`,
        `return_to=${returnTo}&code_challenge=short`,
        `return_to=${returnTo}&code_challenge=${pkcePair().challenge}&code_challenge_method=plain`,
        // The same 32 bytes with the last character's unused bits set: no verifier's S256 is spelled so.
        `return_to=${returnTo}&code_challenge=${respelledChallenge()}&code_challenge_method=S256`,
      ]) {
        const r = await fetch(`${g.stack.url}/v1/session/google_oauth_login?${query}`, { redirect: 'manual' });
        const text = await r.text();
        assert.equal(r.status, 400, `${query}: ${text}`);
        assert.match(text, /code_challenge/);
      }
      assert.equal(starts.count(), 0, 'a refused start started a workflow');
    } finally {
      starts.restore();
    }
    // The attacker's callback with the victim app's challenge put in the state finds no sign-in.
    const attacker = await browserStart(g.stack, `${RETURN_ORIGIN}/`);
    const callbackUrl = new URL(await consent(attacker.authorizeUrl, uniqueHint('csrf-state')));
    const state = callbackUrl.searchParams.get('state') as string;
    assert.equal(state.split('.')[1], pkceS256Challenge(attacker.verifier), 'the state ends with the challenge');
    callbackUrl.searchParams.set('state', `${state.split('.')[0] as string}.${pkcePair().challenge}`);
    await noRows(async () => {
      assert.equal((await callback(callbackUrl.href, attacker.cookie)).status, 410);
    });
  });
});

void describe('callback: repeated or over-long query values (second review, item 5)', () => {
  void test('state=…&state=x, a 4097-character code → 400 page, no error log, the sign-in still open', async () => {
    const { start, callbackUrl } = await upToCallback();
    const before = await dbSnapshot(g.stack.db);
    const logged = logLines.length;
    const repeated = new URL(callbackUrl);
    repeated.searchParams.append('state', 'x');
    const long = new URL(callbackUrl);
    long.searchParams.set('code', 'a'.repeat(4097));
    const repeatedCode = new URL(callbackUrl);
    repeatedCode.searchParams.append('code', 'x');
    for (const url of [repeated, long, repeatedCode]) {
      const r = await callback(url.href);
      assert.equal(r.status, 400, r.text);
      assert.match(r.text, /^<!doctype html>/);
      assert.match(r.text, /bad_request: each query parameter must appear once and be at most 4096 characters long/);
    }
    const lines = logLines.slice(logged).map((l) => JSON.parse(l) as { level: number; msg: string });
    assert.deepEqual(
      lines.filter((l) => l.level >= 50),
      [],
      'a refused callback logged at error level',
    );
    assert.ok(
      lines.some((l) => l.msg === 'google callback refused'),
      'the refusals are logged at info level',
    );
    await assertUnchanged(g.stack.db, before, 'after the malformed callbacks');
    // Nothing was acted on: the real callback still signs the person in.
    const code = await cliCallback(callbackUrl);
    assert.equal((await poll(g.stack, start, code)).status, 200);
  });
});
