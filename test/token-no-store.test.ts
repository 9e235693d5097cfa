/**
 * Every answer that carries a bearer, a refresh token, a one-time code or a minted credential is
 * `Cache-Control: no-store` (RFC 6749 §5.1, RFC 8628 §3.5): no browser, proxy or CDN keeps it. The
 * header comes from one app-wide onSend hook (api/app.ts), and a route-level onSend runs after it
 * (the console's files and the audit heads set their own): this pins it on each token-bearing
 * answer, so a route that sets its own caching cannot drop it unnoticed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { buildStatelessWalletMessage } from '../lib/wallet-message';
import { pollToken, verify, type DeviceCodeBody } from './device-client';
import { latestCode, requestCode, submitCode, uniqueEmail } from './email-login-client';
import { browserStart, cliStart, consent, exchange, poll, RETURN_ORIGIN, startGoogleStack, uniqueHint, type GoogleStack } from './google-login-client';
import type { TestStack } from './harness';
import { SoftAuthenticator, type CreationOptions, type Issued, type RequestOptions } from './passkey-client';
import { newWallet, nowSeconds } from './wallet-client';

let g: GoogleStack;
let stack: TestStack;
before(async () => {
  g = await startGoogleStack();
  stack = g.stack;
});
after(async () => {
  await g?.stop();
});

/** What one answer carried, and where from. */
interface Seen {
  what: string;
  status: number;
  headers: Headers;
}
const seen: Seen[] = [];

async function expect<T>(what: string, status: number, res: Promise<{ status: number; headers: Headers; body: unknown; text: string }>): Promise<T> {
  const r = await res;
  assert.equal(r.status, status, `${what}: ${r.text.slice(0, 300)}`);
  seen.push({ what, status: r.status, headers: r.headers });
  return r.body as T;
}

/** A GET of an absolute URL without following a redirect (the browser's hop back from the provider). */
async function hop(what: string, url: string, status: number, cookie?: string): Promise<Response> {
  const r = await fetch(url, { redirect: 'manual', headers: cookie ? { cookie } : {} });
  assert.equal(r.status, status, `${what}: ${(await r.clone().text()).slice(0, 300)}`);
  seen.push({ what, status: r.status, headers: r.headers });
  return r;
}

void describe('Cache-Control: no-store on every answer that carries a token', () => {
  void test('logins, the Google callback hops and exchange, the device token, refresh, passkeys, mints, /v1/session/me', async () => {
    // Email code login.
    const email = uniqueEmail('no-store');
    const { request_id } = await requestCode(stack, email);
    const emailSession = await expect<{ token: string }>('POST /v1/session/email_login', 200, submitCode(stack, request_id, await latestCode(stack, email)));

    // Wallet login (stateless EIP-191).
    const wallet = newWallet();
    const t = nowSeconds();
    const walletSession = await expect<{ token: string }>(
      'POST /v1/session/wallet_login',
      200,
      stack.request('POST', '/v1/session/wallet_login', {
        body: { address: wallet.address, signature: await wallet.sign(buildStatelessWalletMessage(wallet.lower, t)), timestamp: t },
      }),
    );

    // Google, browser form: the callback's 302 carries the one-time exchange code; the exchange the session.
    const browser = await browserStart(stack, `${RETURN_ORIGIN}/done`);
    const back = await hop(
      'GET /v1/session/google_oauth_callback (302 with exchange_code)',
      await consent(browser.authorizeUrl, uniqueHint('no-store')),
      302,
      browser.cookie,
    );
    const exchangeCode = new URL(back.headers.get('location') ?? '').searchParams.get('exchange_code') ?? '';
    assert.ok(exchangeCode, 'no exchange code on the redirect');
    await expect('POST /v1/session/google_oauth_exchange', 200, exchange(stack, exchangeCode, browser.verifier));

    // Google, CLI form: the callback page shows the confirmation code; the poll hands out the session.
    const cli = await cliStart(stack);
    const page = await hop(
      'GET /v1/session/google_oauth_callback (page with the confirmation code)',
      await consent(cli.authorize_url, uniqueHint('no-store-cli')),
      200,
    );
    const code = /<code id="confirmation-code">([A-Z]{4}-[A-Z]{4})<\/code>/.exec(await page.text())?.[1];
    assert.ok(code, 'no confirmation code on the page');
    await expect('POST /v1/session/google_oauth_poll', 200, poll(stack, cli, code));

    // Device flow: the device collects its session at the token endpoint.
    // The code answer carries the device_code, the device's secret.
    const dc = await expect<DeviceCodeBody>('POST /v1/device/code', 200, stack.request('POST', '/v1/device/code', { body: { client_id: 'agentkeys-cli' } }));
    assert.equal((await verify(stack, walletSession.token, dc.user_code)).status, 200);
    await expect('POST /v1/device/token', 200, pollToken(stack, dc.device_code));

    // Refresh: the refresh token, then the new session and the next refresh token.
    const claimed = await expect<{ refresh_token: string }>(
      'POST /v1/session/refresh_token',
      201,
      stack.request('POST', '/v1/session/refresh_token', { token: emailSession.token }),
    );
    await expect('POST /v1/session/refresh', 200, stack.request('POST', '/v1/session/refresh', { body: { refresh_token: claimed.refresh_token } }));

    // Passkeys: sign up, then sign in.
    const origin = new URL(stack.url).origin;
    const authenticator = new SoftAuthenticator();
    const signup = await expect<Issued<CreationOptions>>(
      'POST /v1/session/passkey/options (signup)',
      200,
      stack.request('POST', '/v1/session/passkey/options', { body: { mode: 'signup' } }),
    );
    await expect(
      'POST /v1/session/passkey (signup)',
      200,
      stack.request('POST', '/v1/session/passkey', { body: { response: authenticator.register(signup.options, { origin }) } }),
    );
    const login = await expect<Issued<RequestOptions>>(
      'POST /v1/session/passkey/options',
      200,
      stack.request('POST', '/v1/session/passkey/options', { body: {} }),
    );
    await expect(
      'POST /v1/session/passkey',
      200,
      stack.request('POST', '/v1/session/passkey', { body: { response: authenticator.assert(login.options, { origin }) } }),
    );

    // Mints: a signed JWT, AWS credentials.
    await expect('POST /v1/mint-oidc-jwt', 200, stack.request('POST', '/v1/mint-oidc-jwt', { token: walletSession.token }));
    await expect('POST /v1/mint-aws-creds', 200, stack.request('POST', '/v1/mint-aws-creds', { token: walletSession.token }));

    // The session's own view.
    await expect('GET /v1/session/me', 200, stack.request('GET', '/v1/session/me', { token: walletSession.token }));

    const stored = seen.filter((s) => s.headers.get('cache-control') !== 'no-store').map((s) => `${s.what} (${s.status}): ${s.headers.get('cache-control')}`);
    assert.deepEqual(stored, [], 'answers that carry a token without Cache-Control: no-store');
    assert.ok(seen.length >= 17, String(seen.length));
  });
});
