import assert from 'node:assert/strict';
import { decodeJwt } from 'jose';
import { after, before, describe, test } from 'node:test';
import { buildApp } from '../api/app';
import { deriveOmniAccount } from '../lib/omni';
import { identityForHint } from '../fixtures/google-oidc';
import {
  browserStart,
  browserStartUrl,
  callback,
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
import { GOOGLE_LOGIN_ID_PREFIX } from '../workflows/google-login.definitions';
import { spyWorkflowStarts } from './adversarial-probes';
import type { LoginSessionBody } from './email-login-client';

let g: GoogleStack;
before(async () => {
  g = await startGoogleStack();
});
after(async () => {
  await g?.stop();
});

/** Every Google user, login session and login.google audit row, as rows. */
async function loginState() {
  const [users, sessions, audit] = await Promise.all([
    g.stack.db.query<Record<string, unknown>>(`SELECT * FROM users WHERE identity_type = 'google' ORDER BY user_id`),
    g.stack.db.query<Record<string, unknown>>(`SELECT * FROM sessions WHERE method IN ('google', 'google_cli') ORDER BY jti`),
    g.stack.db.query<Record<string, unknown>>(`SELECT seq::text, omni_account, outcome, details FROM audit_log WHERE event = 'login.google' ORDER BY seq`),
  ]);
  return { users: users.rows, sessions: sessions.rows, audit: audit.rows };
}

void describe('Google login, CLI form', () => {
  void test('start → pending → consent → callback page → one session, then 410', async () => {
    const { stack } = g;
    const before = await loginRows(stack.db);
    const start = await cliStart(stack);
    assert.match(start.request_id, /^[0-9a-f]{32}$/);
    const authorize = new URL(start.authorize_url);
    assert.equal(authorize.searchParams.get('code_challenge_method'), 'S256');
    assert.ok(authorize.searchParams.get('state'));
    assert.ok(authorize.searchParams.get('nonce'));
    assert.equal(authorize.searchParams.get('redirect_uri'), stack.config.googleRedirectUri);
    assert.equal(authorize.searchParams.get('prompt'), 'select_account', 'a CLI sign-in never completes in a browser without the account chooser');

    assert.equal((await poll(stack, start)).status, 202);
    const hint = uniqueHint('cli');
    const back = await callback(await consent(start.authorize_url, hint));
    assert.equal(back.status, 200, back.text);
    assert.match(back.text, /Type this code where you ran agentkeys init google/);
    assert.match(back.code ?? '', /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);

    const got = await poll(stack, start, back.code);
    assert.equal(got.status, 200, got.text);
    const session = got.body as LoginSessionBody;
    const person = identityForHint(hint);
    assert.deepEqual(session.identity, { type: 'google', value: person.sub });
    assert.equal(session.omni_account, deriveOmniAccount('agentkeys', { type: 'google', value: person.sub }));
    const me = await stack.request('GET', '/v1/session/me', { token: session.token });
    assert.equal(me.status, 200, me.text);
    // Whoever held the poll secret got the session of whoever finished in the browser: it is a
    // login another browser completed, never a recent login made here.
    assert.equal(decodeJwt(session.token).amr, 'google_cli');
    const method = await stack.db.query<{ method: string }>('SELECT method FROM sessions WHERE omni_account = $1', [session.omni_account]);
    assert.deepEqual(
      method.rows.map((r) => r.method),
      ['google_cli'],
    );
    const passkey = await stack.request('POST', '/v1/passkeys/registration/options', { token: session.token });
    assert.equal(passkey.status, 403, passkey.text);
    assert.match((passkey.body as { message: string }).message, /Google sign-in started from a CLI/);

    const again = await poll(stack, start, back.code);
    assert.equal(again.status, 410, again.text);
    const rows = await loginRows(stack.db);
    assert.deepEqual(rows, { users: before.users + 1, sessions: before.sessions + 1, audit: before.audit + 1 });
    const user = await stack.db.query<{ email: string }>('SELECT email FROM users WHERE omni_account = $1', [session.omni_account]);
    assert.equal(user.rows[0]?.email, person.email);
  });
});

void describe('Google login, CLI form: the confirmation code', () => {
  const workflowResult = (start: CliStart) => g.stack.temporal.workflow.getHandle(GOOGLE_LOGIN_ID_PREFIX + start.request_id).result();

  void test("a stranger's CLI sign-in finished by a person gets the stranger nothing without the code on the person's page", async () => {
    const { stack } = g;
    const before = await loginRows(stack.db);
    // The stranger starts a sign-in and gets a person to open its authorize URL; the person signs in.
    const stranger = await cliStart(stack);
    const page = await callback(await consent(stranger.authorize_url, uniqueHint('victim')));
    assert.equal(page.status, 200, page.text);
    assert.match(page.text, /Never give it to anyone else/);
    // The poll secret alone, the way every CLI collected before: refused, and it says what is missing.
    const bare = await poll(stack, stranger);
    assert.equal(bare.status, 400, bare.text);
    assert.match((bare.body as { message: string }).message, /confirmation_code/);
    // Guessing: every wrong code is counted; the fifth ends the sign-in for good, the right code too.
    const wrong = ['BBBB-BBBB', 'CCCC-CCCC', 'DDDD-DDDD', 'FFFF-FFFF'].filter((c) => c !== page.code);
    for (const [i, code] of wrong.entries()) {
      const r = await poll(stack, stranger, code);
      assert.equal(r.status, 401, r.text);
      assert.deepEqual([(r.body as { error: string }).error, (r.body as { attempts_left: number }).attempts_left], ['invalid_code', 4 - i]);
    }
    const last = await poll(stack, stranger, 'GGGG-GGGG' === page.code ? 'HHHH-HHHH' : 'GGGG-GGGG');
    assert.equal(last.status, 429, last.text);
    assert.equal((last.body as { error: string }).error, 'too_many_attempts');
    const late = await poll(stack, stranger, page.code);
    assert.ok([429, 410].includes(late.status), `${late.status} ${late.text}`);
    assert.equal(await workflowResult(stranger), 'failed', 'refused for good: the flow ends, it does not wait out its window');
    assert.equal((await poll(stack, stranger, page.code)).status, 410);
    // The login row exists (the person did sign in); no bearer for it was ever handed out.
    const rows = await loginRows(stack.db);
    assert.equal(rows.sessions, before.sessions + 1);
  });

  void test('the code is one code however it is typed; a string that is no code is 400 and costs no attempt', async () => {
    const { stack } = g;
    const start = await cliStart(stack);
    const page = await callback(await consent(start.authorize_url, uniqueHint('respelled')));
    assert.ok(page.code);
    for (const malformed of ['1234-5678', 'AEIO-UAEI', 'BCD', 'x'.repeat(65)]) {
      const r = await poll(stack, start, malformed);
      assert.equal(r.status, 400, `${malformed}: ${r.text}`);
    }
    const wrong = await poll(stack, start, page.code === 'BBBB-BBBB' ? 'CCCC-CCCC' : 'BBBB-BBBB');
    assert.equal((wrong.body as { attempts_left: number }).attempts_left, 4, 'only the wrong code counted');
    const respelled = ` ${page.code.replace('-', '').toLowerCase()} `;
    const got = await poll(stack, start, respelled);
    assert.equal(got.status, 200, got.text);
    assert.equal(decodeJwt((got.body as LoginSessionBody).token).amr, 'google_cli');
  });

  void test('16 concurrent wrong codes are 16 attempts: four 401s, then 429s, and no session', async () => {
    const { stack } = g;
    const start = await cliStart(stack);
    const page = await callback(await consent(start.authorize_url, uniqueHint('concurrent-codes')));
    assert.equal(page.status, 200, page.text);
    // The person's login is recorded when the callback finishes; the guesses must add nothing to it.
    const before = await loginState();
    const starts = spyWorkflowStarts(stack.temporal);
    try {
      const guess = page.code === 'BBBB-BBBB' ? 'CCCC-CCCC' : 'BBBB-BBBB';
      const answers = await Promise.all(Array.from({ length: 16 }, () => poll(stack, start, guess)));
      const statuses = answers.map((a) => a.status).sort();
      assert.equal(statuses.filter((s) => s === 401).length, 4, statuses.join(','));
      assert.equal(statuses.filter((s) => s !== 401 && s !== 429 && s !== 410).length, 0, statuses.join(','));
      for (const a of answers) assert.doesNotMatch(a.text, /eyJ/, 'a token in a refused poll');
      assert.equal(await workflowResult(start), 'failed');
      assert.equal((await poll(stack, start, page.code)).status, 410);
      assert.equal(starts.count(), 0, 'a poll started a workflow');
    } finally {
      starts.restore();
    }
    assert.deepEqual(await loginState(), before, 'the refused polls changed login rows');
  });
});

void describe('Google login, browser form', () => {
  void test('302 to the provider → callback 302 to return_to with a one-time exchange code → session once', async () => {
    const { stack } = g;
    const returnTo = `${RETURN_ORIGIN}/after-login?tab=2`;
    const { authorizeUrl, cookie, setCookie, verifier } = await browserStart(stack, returnTo);
    assert.match(setCookie, /HttpOnly/);
    assert.match(setCookie, /SameSite=Lax/);
    assert.match(setCookie, /Path=\/v1\/session\/google_oauth_callback/);
    assert.ok(authorizeUrl.startsWith(g.provider.url));
    assert.equal(new URL(authorizeUrl).searchParams.get('prompt'), null, 'bound to this browser: no account chooser forced');
    const callbackUrl = await consent(authorizeUrl, uniqueHint('browser'));
    // Login CSRF: the callback URL opened in another browser (no cookie, or another sign-in's) is refused and changes nothing.
    assert.equal((await callback(callbackUrl)).status, 403);
    const other = await browserStart(stack, returnTo);
    assert.equal((await callback(callbackUrl, other.cookie.replace(/^[^=]+/, cookie.split('=')[0] as string))).status, 403);
    const back = await callback(callbackUrl, cookie);
    assert.equal(back.status, 302, back.text);
    const target = new URL(back.location as string);
    assert.equal(target.origin, RETURN_ORIGIN);
    assert.equal(target.searchParams.get('tab'), '2');
    const code = target.searchParams.get('exchange_code') as string;
    assert.ok(code);
    assert.doesNotMatch(back.location as string, /eyJ/, 'no token in the redirect');
    const ex = await exchange(stack, code, verifier);
    assert.equal(ex.status, 200, ex.text);
    // Finished in the browser that started it: a login made here.
    const token = (ex.body as { token: string }).token;
    assert.equal(decodeJwt(token).amr, 'google');
    assert.equal((await stack.request('POST', '/v1/passkeys/registration/options', { token })).status, 200);
    const again = await exchange(stack, code, verifier);
    assert.equal(again.status, 410, again.text);
  });
});

void describe('Google login, configuration', () => {
  /** The same broker with other Google settings, on its own loopback port (shares the stack's database and Temporal). */
  async function variant(config: Partial<typeof g.stack.config>): Promise<{ url: string; close: () => Promise<unknown> }> {
    const app = await buildApp({ ...g.stack.deps, config: { ...g.stack.config, ...config } }, { logLevel: 'silent' });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    if (!address || typeof address === 'string') throw new Error('no port');
    return { url: `http://127.0.0.1:${address.port}`, close: () => app.close() };
  }

  void test('without a client id the Google routes are 404 (the CLI says the broker offers no Google login)', async () => {
    const v = await variant({ BROKER_GOOGLE_CLIENT_ID: undefined });
    try {
      const r = await fetch(`${v.url}/v1/session/google_oauth_login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"format":"cli"}',
      });
      assert.equal(r.status, 404);
      assert.equal((await fetch(`${v.url}/v1/session/google_oauth_callback?state=x&code=y`)).status, 404);
    } finally {
      await v.close();
    }
  });

  void test('a provider that cannot be discovered: the start is 503 unavailable and no flow begins', async () => {
    const v = await variant({ BROKER_GOOGLE_ISSUER: 'http://127.0.0.1:9/', BROKER_GOOGLE_HTTP_TIMEOUT_SECONDS: 1 });
    // The variant shares the stack's Temporal client: its starts are counted here.
    const starts = spyWorkflowStarts(g.stack.temporal);
    const before = await loginState();
    try {
      const r = await fetch(`${v.url}/v1/session/google_oauth_login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"format":"cli"}',
      });
      assert.equal(r.status, 503, await r.text());
      const browser = await fetch(browserStartUrl(v, `${RETURN_ORIGIN}/`, pkcePair().challenge), { redirect: 'manual' });
      assert.equal(browser.status, 503);
      assert.equal(starts.count(), 0, 'a start the provider could not serve started a workflow');
      assert.deepEqual(await loginState(), before, 'a refused start changed login rows');
    } finally {
      starts.restore();
      await v.close();
    }
  });
});
