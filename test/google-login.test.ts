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
  type GoogleStack,
} from './google-login-client';
import type { LoginSessionBody } from './email-login-client';

let g: GoogleStack;
before(async () => {
  g = await startGoogleStack();
});
after(async () => {
  await g?.stop();
});

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
    assert.match(back.text, /close this tab/);

    const got = await poll(stack, start);
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

    const again = await poll(stack, start);
    assert.equal(again.status, 410, again.text);
    const rows = await loginRows(stack.db);
    assert.deepEqual(rows, { users: before.users + 1, sessions: before.sessions + 1, audit: before.audit + 1 });
    const user = await stack.db.query<{ email: string }>('SELECT email FROM users WHERE omni_account = $1', [session.omni_account]);
    assert.equal(user.rows[0]?.email, person.email);
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
    try {
      const r = await fetch(`${v.url}/v1/session/google_oauth_login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"format":"cli"}',
      });
      assert.equal(r.status, 503, await r.text());
      const browser = await fetch(browserStartUrl(v, `${RETURN_ORIGIN}/`, pkcePair().challenge), { redirect: 'manual' });
      assert.equal(browser.status, 503);
    } finally {
      await v.close();
    }
  });
});
