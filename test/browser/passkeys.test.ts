/**
 * Passkeys in the console, in Debian's Chromium with a virtual WebAuthn authenticator (DevTools
 * protocol: WebAuthn.enable, WebAuthn.addVirtualAuthenticator with a resident key and user
 * verification): add a passkey on the account page, sign out, sign in with it, remove it; sign up
 * with a passkey alone; and the refusal a browser can meet, a page served from an origin the
 * broker does not accept (the authenticator signs, the broker refuses, nothing is written).
 *
 * The broker's public URL is http://localhost:<port>: WebAuthn needs a secure context and a
 * domain as rp id (localhost is both; 127.0.0.1 is not a valid rp id).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { ageLogins } from '../approval-client';
import { latestCode, uniqueEmail } from '../email-login-client';
import { startStack, type TestStack } from '../harness';
import { PHONE, shoot } from './screenshots';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

let stack: TestStack;
let browser: Browser;
let origin: string;
/** A second origin (another port on localhost) that reaches the same broker. */
let foreign: Server;
let foreignOrigin: string;
const contexts: BrowserContext[] = [];

/** The broker listens on a port of its own choosing: both origins reach it through a forwarding server on localhost. */
let brokerPort = 0;
async function forwarder(): Promise<{ server: Server; origin: string }> {
  const server = createServer((req, res) => {
    const upstream = httpRequest({ host: '127.0.0.1', port: brokerPort, path: req.url, method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, origin: `http://localhost:${(server.address() as AddressInfo).port}` };
}

let own: Server;

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: install it (Debian/Ubuntu: apt-get install -y chromium) or set CHROMIUM_PATH`);
  const [a, b] = await Promise.all([forwarder(), forwarder()]);
  [own, origin, foreign, foreignOrigin] = [a.server, a.origin, b.server, b.origin];
  [browser, stack] = await Promise.all([
    chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--host-resolver-rules=MAP localhost 127.0.0.1'] }),
    // One person signs in by email twice in a row (a sign-in too old to add a passkey, then again): no resend cooldown.
    startStack({
      env: {
        BROKER_PUBLIC_URL: origin,
        BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000',
        BROKER_EMAIL_RESEND_COOLDOWN_SECONDS: '0',
        BROKER_RATE_LIMIT_EMAIL_PER_NETWORK_PER_HOUR: '100',
      },
    }),
  ]);
  brokerPort = Number(new URL(stack.url).port);
});
after(async () => {
  for (const c of contexts) await c.close().catch(() => undefined);
  await browser?.close();
  for (const s of [own, foreign]) await new Promise((resolve) => (s ? s.close(resolve) : resolve(undefined)));
  await stack?.stop();
});

/** A fresh profile at phone width with a virtual platform authenticator (resident keys, user verification, the user verified). */
async function openTab(baseURL = origin): Promise<Page> {
  const context = await browser.newContext({ viewport: PHONE, baseURL });
  contexts.push(context);
  await context.addInitScript(
    `window.__csp = []; document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));`,
  );
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  return page;
}

const count = async (sql: string, args: unknown[] = []): Promise<number> => Number((await stack.db.query<{ n: string }>(sql, args)).rows[0]?.n);

/** Signs `email` in on the sign-in page with its emailed code; ends on the account page. */
async function signInByEmail(page: Page, email: string): Promise<void> {
  await page.locator('#email input[name=email]').fill(email);
  await page.getByRole('button', { name: 'Send code' }).click();
  await page.locator('#email input[name=code]').waitFor();
  await page.locator('#email input[name=code]').fill(await latestCode(stack, email));
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.waitForURL('**/console/account');
}

void describe('passkeys in the console (Chromium, virtual authenticator)', () => {
  void test('add a passkey on the account page, sign out, sign in with it (same account, method passkey), then remove it', async () => {
    const page = await openTab();
    const email = uniqueEmail('console-passkey');
    await page.goto('/console/');
    await signInByEmail(page, email);
    const omni = await page.locator('#omni').innerText();

    await page.locator('input[name=passkey_name]').fill('Laptop');
    await page.getByRole('button', { name: 'Add a passkey' }).click();
    await page.locator('#passkeys li').waitFor();
    assert.match(await page.locator('#passkeys').innerText(), /Laptop/);
    assert.equal(await count('SELECT count(*) AS n FROM passkeys WHERE omni_account = $1', [omni]), 1);
    await shoot(page, 'passkeys-account');

    await page.locator('#signout').click();
    await page.locator('#passkey').waitFor();
    await shoot(page, 'passkeys-sign-in');
    const sessionsBefore = await count("SELECT count(*) AS n FROM sessions WHERE omni_account = $1 AND method = 'passkey'", [omni]);
    await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
    await page.waitForURL('**/console/account');
    assert.equal(await page.locator('#omni').innerText(), omni, 'the passkey signed in another account');
    assert.equal(await count("SELECT count(*) AS n FROM sessions WHERE omni_account = $1 AND method = 'passkey'", [omni]), sessionsBefore + 1);
    await page.locator('#sessions').waitFor();
    assert.match(await page.locator('#sessions .tag.ok').locator('..').innerText(), /passkey/);
    assert.equal(await count("SELECT count(*) AS n FROM audit_log WHERE omni_account = $1 AND event = 'login.passkey'", [omni]), 1);
    assert.match(await page.locator('#passkeys').innerText(), /last used/);

    await page.locator('#passkeys li').getByRole('button', { name: 'Remove' }).click();
    await page.getByText('No passkey on this account.').waitFor();
    assert.equal(await count('SELECT count(*) AS n FROM passkeys WHERE omni_account = $1', [omni]), 0);
    assert.deepEqual(await page.evaluate<string[]>('window.__csp'), []);
  });

  void test('a sign-in more than 5 minutes old: Add a passkey says to sign in again and adds nothing; signed in again, it adds one', async () => {
    const page = await openTab();
    const email = uniqueEmail('console-passkey-stale');
    const signIn = () => signInByEmail(page, email);
    await page.goto('/console/');
    await signIn();
    const omni = await page.locator('#omni').innerText();
    // Every session of this account signed in 10 minutes ago.
    await ageLogins(stack, omni, 600);
    await page.getByRole('button', { name: 'Add a passkey' }).click();
    const alert = page.locator('[role=alert]');
    await alert.waitFor();
    assert.match(await alert.innerText(), /more than 5 minutes old\. To add a passkey, sign in again/);
    assert.equal(await count('SELECT count(*) AS n FROM passkeys WHERE omni_account = $1', [omni]), 0);
    // The refusal does not sign the console out.
    assert.equal(await page.locator('#nav').isVisible(), true);

    await page.getByRole('button', { name: 'Sign in again' }).click();
    await page.locator('#email input[name=email]').waitFor();
    await signIn();
    assert.equal(await page.locator('#omni').innerText(), omni);
    await page.getByRole('button', { name: 'Add a passkey' }).click();
    await page.locator('#passkeys li').waitFor();
    assert.equal(await count('SELECT count(*) AS n FROM passkeys WHERE omni_account = $1', [omni]), 1);
    assert.deepEqual(await page.evaluate<string[]>('window.__csp'), []);
  });

  void test('a new account with a passkey alone: its identity is the passkey', async () => {
    const page = await openTab();
    await page.goto('/console/');
    const users = await count('SELECT count(*) AS n FROM users');
    await page.getByRole('button', { name: 'New account with a passkey' }).click();
    await page.waitForURL('**/console/account');
    await page.locator('#identities li').waitFor();
    assert.match(await page.locator('#identities').innerText(), /passkey/);
    assert.match(await page.locator('#passkeys').innerText(), /First passkey/);
    assert.equal(await count('SELECT count(*) AS n FROM users'), users + 1);
    // Signed out, the same authenticator signs in to that account again.
    const omni = await page.locator('#omni').innerText();
    await page.locator('#signout').click();
    await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
    await page.waitForURL('**/console/account');
    assert.equal(await page.locator('#omni').innerText(), omni);
  });

  void test('a page on an origin the broker does not accept: the authenticator answers, the broker refuses it, nothing is written', async () => {
    const page = await openTab(foreignOrigin);
    await page.goto('/console/');
    const before = await count('SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM sessions) + (SELECT count(*) FROM passkeys) AS n');
    await page.getByRole('button', { name: 'New account with a passkey' }).click();
    const alert = page.locator('#passkey [role=alert]');
    await alert.waitFor();
    assert.match(await alert.innerText(), /origin/i);
    assert.equal(await count('SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM sessions) + (SELECT count(*) FROM passkeys) AS n'), before);
    assert.equal(await page.locator('#nav').isVisible(), false);
  });
});
