/** Test helpers for Google login: a stack wired to the loopback OpenID provider, and the person's side of the consent over HTTP. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { pkceS256Challenge } from '../lib/digest';
import { startGoogleOidcFixture, type GoogleOidcFixture } from '../fixtures/google-oidc';
import type { Db } from '../db/pool';
import { startStack, type StartStackOptions, type TestStack } from './harness';

export const RETURN_ORIGIN = 'https://app.example.com';
export const CLIENT_ID = 'agentkeys-test-client';

export interface GoogleStack {
  stack: TestStack;
  provider: GoogleOidcFixture;
  stop(): Promise<void>;
}

export async function startGoogleStack(env: Record<string, string> = {}, opts: Pick<StartStackOptions, 'logStream'> = {}): Promise<GoogleStack> {
  const provider = await startGoogleOidcFixture();
  try {
    const stack = await startStack({
      ...opts,
      env: {
        BROKER_GOOGLE_ISSUER: provider.url,
        BROKER_GOOGLE_CLIENT_ID: CLIENT_ID,
        BROKER_GOOGLE_CLIENT_SECRET: 'test-client-secret',
        BROKER_GOOGLE_RETURN_ORIGINS: `${RETURN_ORIGIN},http://127.0.0.1:5173`,
        BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000',
        ...env,
      },
    });
    return {
      stack,
      provider,
      async stop() {
        await stack.stop();
        await provider.close();
      },
    };
  } catch (e) {
    await provider.close();
    throw e;
  }
}

export interface CliStart {
  request_id: string;
  authorize_url: string;
  poll_secret: string;
  expires_at: number;
}

export async function cliStart(stack: TestStack): Promise<CliStart> {
  const r = await stack.request('POST', '/v1/session/google_oauth_login', { body: { format: 'cli' } });
  assert.equal(r.status, 200, r.text);
  return r.body as CliStart;
}

/**
 * The person at the provider: opens the authorize URL (login_hint picks the account, "deny"
 * refuses) and answers the callback URL the provider redirects the browser to.
 */
export async function consent(authorizeUrl: string, hint?: string): Promise<string> {
  const url = new URL(authorizeUrl);
  if (hint !== undefined) url.searchParams.set('login_hint', hint);
  const r = await fetch(url, { redirect: 'manual' });
  assert.equal(r.status, 302, `authorize answered ${r.status}: ${await r.text()}`);
  const location = r.headers.get('location');
  assert.ok(location, 'the provider redirected nowhere');
  return location;
}

/**
 * The browser following the provider's redirect back to the broker (with the cookie the browser
 * form's start set, if any); `code` is the confirmation code a CLI sign-in's page shows.
 */
export async function callback(url: string, cookie?: string): Promise<{ status: number; location: string | null; text: string; code?: string }> {
  const r = await fetch(url, { redirect: 'manual', headers: cookie ? { cookie } : {} });
  const text = await r.text();
  const code = /<code id="confirmation-code">([A-Z]{4}-[A-Z]{4})<\/code>/.exec(text)?.[1];
  return { status: r.status, location: r.headers.get('location'), text, ...(code !== undefined ? { code } : {}) };
}

/** A CLI sign-in's callback that succeeds: the confirmation code its page shows. */
export async function cliCallback(url: string): Promise<string> {
  const back = await callback(url);
  assert.equal(back.status, 200, back.text);
  assert.ok(back.code, `the page shows no confirmation code: ${back.text}`);
  return back.code;
}

/** A browser app's PKCE pair for one sign-in: the verifier it keeps, the S256 challenge it sends at the start. */
export function pkcePair(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: pkceS256Challenge(verifier) };
}

/** The start URL of the browser form (what the app sends the person to). */
export function browserStartUrl(stack: Pick<TestStack, 'url'>, returnTo: string, challenge: string): string {
  return `${stack.url}/v1/session/google_oauth_login?return_to=${encodeURIComponent(returnTo)}&code_challenge=${challenge}&code_challenge_method=S256`;
}

/**
 * The browser form's start: the provider URL it is sent to, the binding cookie the browser now
 * holds (`name=value`), and the code verifier the app that started it keeps for the exchange.
 */
export async function browserStart(stack: TestStack, returnTo: string): Promise<{ authorizeUrl: string; cookie: string; setCookie: string; verifier: string }> {
  const { verifier, challenge } = pkcePair();
  const r = await fetch(browserStartUrl(stack, returnTo, challenge), { redirect: 'manual' });
  assert.equal(r.status, 302, await r.text());
  const setCookie = r.headers.get('set-cookie') ?? '';
  const cookie = setCookie.split(';')[0] ?? '';
  assert.match(cookie, /^ak_google_[0-9a-f]{32}=[\w-]{43}$/);
  return { authorizeUrl: r.headers.get('location') as string, cookie, setCookie, verifier };
}

/** The app's exchange of the code from the redirect, with the verifier it holds (or none). */
export function exchange(stack: Pick<TestStack, 'request'>, exchangeCode: string, verifier?: string): ReturnType<TestStack['request']> {
  return stack.request('POST', '/v1/session/google_oauth_exchange', {
    body: { exchange_code: exchangeCode, ...(verifier !== undefined ? { code_verifier: verifier } : {}) },
  });
}

/** The CLI's poll: the secret from the start and, once the person has signed in, the code their page showed. */
export function poll(stack: Pick<TestStack, 'request'>, start: Pick<CliStart, 'request_id' | 'poll_secret'>, code?: string): ReturnType<TestStack['request']> {
  return stack.request('POST', '/v1/session/google_oauth_poll', {
    body: { request_id: start.request_id, poll_secret: start.poll_secret, ...(code !== undefined ? { confirmation_code: code } : {}) },
  });
}

export async function loginRows(db: Db): Promise<{ users: number; sessions: number; audit: number }> {
  const r = await db.query<{ users: string; sessions: string; audit: string }>(
    `SELECT (SELECT count(*) FROM users WHERE identity_type = 'google') AS users,
            (SELECT count(*) FROM sessions WHERE method IN ('google', 'google_cli')) AS sessions,
            (SELECT count(*) FROM audit_log WHERE event = 'login.google') AS audit`,
  );
  const row = r.rows[0];
  assert.ok(row);
  return { users: Number(row.users), sessions: Number(row.sessions), audit: Number(row.audit) };
}

/** A unique person at the provider. */
export function uniqueHint(label: string): string {
  return `${label}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}@example.com`;
}
