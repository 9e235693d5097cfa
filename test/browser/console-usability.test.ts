/**
 * The console as a first-time person meets it, in Chromium at 375 px wide, against a whole broker:
 * keyboard alone (Enter in a field runs its form's button), refusals that say what to do next
 * (a wrong, an expired email code; a field the broker refuses; a closed passkey prompt), a broker
 * that cannot be reached or answers a proxy's 502, a slow broker (progress shown, then the page),
 * and the page a person lands on after moving: its heading focused and named in the tab's title.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser, BrowserContext, Page, Route } from 'playwright-core';
import { latestCode, uniqueEmail } from '../email-login-client';
import { startStack, type TestStack } from '../harness';
import { waitFor } from '../support/wait-for';
import { newWallet, type TestWallet } from '../wallet-client';
import { launchChromium, openTab as openBrowserTab, signInByEmail, signInByWallet, type Tab } from './tabs';

let stack: TestStack;
let browser: Browser;
const contexts: BrowserContext[] = [];
const NARROW = { width: 375, height: 740 };

before(async () => {
  [browser, stack] = await Promise.all([
    launchChromium(),
    startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000', BROKER_EMAIL_RESEND_COOLDOWN_SECONDS: '0' } }),
  ]);
});
after(async () => {
  for (const c of contexts) await c.close().catch(() => undefined);
  await browser?.close();
  await stack?.stop();
});

const openTab = async (wallet?: TestWallet): Promise<Tab> => {
  const tab = await openBrowserTab(browser, stack.url, wallet);
  contexts.push(tab.context);
  await tab.page.setViewportSize(NARROW);
  return tab;
};

const alertIn = async (page: Page, scope: string): Promise<string> => {
  const alert = page.locator(`${scope} [role=alert]`);
  await alert.waitFor();
  return alert.innerText();
};
const focused = (page: Page) =>
  page.evaluate<string>('document.activeElement ? document.activeElement.tagName + " " + document.activeElement.textContent : ""');
const scrollsSideways = (page: Page) => page.evaluate<number>('document.documentElement.scrollWidth - document.documentElement.clientWidth');
const json = (status: number, body: unknown) => (route: Route) => route.fulfill({ status, contentType: 'application/json', body: JSON.stringify(body) });

void describe('the console for a first-time person', () => {
  void test('email sign-in by keyboard alone; each refusal says what happened and what to do; the new page is focused and named, and says what it needs', async () => {
    const { page } = await openTab();
    await page.goto('/console/');
    const email = page.locator('#email input[name=email]');
    const code = page.locator('#email input[name=code]');
    await email.focus();
    await page.keyboard.type('not-an-email');
    await page.keyboard.press('Enter');
    const invalid = await alertIn(page, '#email');
    assert.match(invalid, /not a valid address/);
    assert.doesNotMatch(invalid, /body\./, 'the validation path of the request, not words for a person');

    const address = uniqueEmail('usability');
    await email.fill(address);
    await email.press('Enter');
    await code.waitFor({ state: 'visible' });
    assert.equal(await page.evaluate<string>('document.activeElement.getAttribute("name")'), 'code', 'focus moves to the code field');
    const right = await latestCode(stack, address);

    await page.keyboard.type(right === '000000' ? '111111' : '000000');
    await page.keyboard.press('Enter');
    assert.match(await alertIn(page, '#email'), /not correct: 4 attempts left\. Check the latest mail, or send a new code/);

    // The broker's answer to a code past its time (docs/email-login.md: 410 expired).
    await page.route('**/v1/session/email_login', json(410, { error: 'expired', message: 'this request has expired or is unknown' }));
    await code.fill(right);
    await code.press('Enter');
    assert.match(await alertIn(page, '#email'), /expired .*send a new code/);
    await page.unroute('**/v1/session/email_login');

    await code.press('Enter');
    await page.waitForURL('**/console/account');
    await page.locator('#identities li').waitFor();
    assert.equal(await focused(page), 'H1 Account', 'focus stays on the gone sign-in button');
    assert.equal(await page.title(), 'Account · AgentKeys console');
    await page.getByRole('link', { name: 'Grants' }).click();
    await page.locator('#offer').waitFor();
    assert.equal(await focused(page), 'H1 Grants');
    assert.equal(await page.title(), 'Grants · AgentKeys console');
    // An email account has no main wallet to offer from: it is told so, not handed a form the broker refuses.
    assert.match(await page.locator('#offer-needs-wallet').innerText(), /offered from a main EVM wallet, and this account has none: sign in with a wallet/);
    assert.equal(await page.locator('#offer input[name=agent_address]').count(), 0);
    assert.ok((await scrollsSideways(page)) <= 0);
  });

  void test('sending the code again for the same address resends on the open request: a new code, the old one stops working', async () => {
    const { page } = await openTab();
    await page.goto('/console/');
    const asked: Record<string, unknown>[] = [];
    page.on('request', (r) => {
      if (r.method() === 'POST' && new URL(r.url()).pathname === '/v1/session/email_code') asked.push(r.postDataJSON() as Record<string, unknown>);
    });
    const address = uniqueEmail('resend');
    const email = page.locator('#email input[name=email]');
    const code = page.locator('#email input[name=code]');
    await email.fill(address);
    await email.press('Enter');
    await code.waitFor({ state: 'visible' });
    const first = await latestCode(stack, address);
    await email.press('Enter');
    await waitFor('the second mail', async () => ((await latestCode(stack, address)) !== first ? true : undefined));
    // The mail is out before the page has its answer, which empties the code field: typing before it lands loses the code.
    await page.locator('#email button[aria-busy]').waitFor({ state: 'detached' });
    assert.equal(asked.length, 2);
    assert.equal(asked[0]?.request_id, undefined);
    assert.equal(typeof asked[1]?.request_id, 'string', 'the second send names the open request');
    await code.fill(first);
    await code.press('Enter');
    assert.match(await alertIn(page, '#email'), /not correct|expired/);
    await code.fill(await latestCode(stack, address));
    await code.press('Enter');
    await page.waitForURL('**/console/account');
  });

  void test('a broker that cannot be reached, answers a proxy 502, or is slow: what happened, what to do, and progress meanwhile', async () => {
    const tab = await openTab();
    const { page } = tab;
    await page.goto('/console/');
    await page.locator('#email input[name=email]').fill(uniqueEmail('offline'));
    const send = page.getByRole('button', { name: 'Send code' });

    await page.route('**/v1/session/email_code', (r) => r.abort('internetdisconnected'));
    await send.click();
    assert.match(await alertIn(page, '#email'), /could not be reached: check the connection, then try again/);
    await page.unroute('**/v1/session/email_code');

    await page.route('**/v1/session/email_code', (r) => r.fulfill({ status: 502, contentType: 'text/html', body: '<html><body>Bad gateway</body></html>' }));
    await send.click();
    assert.match(await alertIn(page, '#email'), /answered 502 .*try again in a moment/);
    await page.unroute('**/v1/session/email_code');

    let release!: () => void;
    const held = new Promise<void>((res) => (release = res));
    await page.route('**/v1/session/email_code', async (r) => {
      await held;
      await r.continue();
    });
    await send.click();
    const status = page.locator('#email [role=status]', { hasText: 'Sending the code…' });
    await status.waitFor();
    assert.equal(await send.getAttribute('aria-busy'), 'true');
    release();
    await page.locator('#email input[name=code]').waitFor({ state: 'visible' });
    assert.equal(await status.count(), 0, 'the progress line outlives the step');
    await page.unroute('**/v1/session/email_code');

    // Signed in: a page whose data is slow says so; one whose data fails offers to try again.
    await page.goto('/console/');
    await signInByEmail(stack, tab, uniqueEmail('slowpage'));
    let releasePage!: () => void;
    const heldPage = new Promise<void>((res) => (releasePage = res));
    await page.route('**/v1/grants?role=main', async (r) => {
      await heldPage;
      await r.abort('internetdisconnected');
    });
    await page.getByRole('link', { name: 'Grants' }).click();
    await page.locator('main #loading[role=status]').waitFor();
    releasePage();
    await page.getByRole('heading', { name: 'Something went wrong' }).waitFor();
    assert.match(await alertIn(page, 'main'), /could not be reached/);
    await page.unroute('**/v1/grants?role=main');
    await page.getByRole('button', { name: 'Try again' }).click();
    await page.locator('#offer').waitFor();
    assert.deepEqual(await tab.cspViolations(), []);
  });

  void test('a closed passkey prompt reads as what happened, not as the WebAuthn spec', async () => {
    const tab = await openTab();
    await tab.context.addInitScript(
      `navigator.credentials.get = () => Promise.reject(new DOMException('The operation either timed out or was not allowed. See: https://www.w3.org/TR/webauthn-2/#sctn-privacy-considerations-client.', 'NotAllowedError'));`,
    );
    const { page } = tab;
    await page.goto('/console/');
    await page.getByRole('button', { name: 'Sign in with a passkey' }).click();
    const text = await alertIn(page, '#passkey');
    assert.match(
      text,
      /No passkey was used: the prompt was closed, timed out, or this device has no passkey for this site\. Try again, or sign in another way/,
    );
    assert.doesNotMatch(text, /w3\.org/);
  });

  void test('grants: days out of range are refused on the page before anything is sent; Enter offers; the device code looks up on Enter', async () => {
    // A wallet sign-in: the account's main wallet is the one that offers.
    const tab = await openTab(newWallet());
    const { page } = tab;
    await page.goto('/console/grants');
    await signInByWallet(tab);
    await page.locator('#offer').waitFor();
    const offers: string[] = [];
    page.on('request', (r) => {
      if (r.method() === 'POST' && new URL(r.url()).pathname === '/v1/grants') offers.push(r.url());
    });
    await page.locator('#offer input[name=agent_address]').fill(newWallet().lower);
    for (const days of ['0', '', '400']) {
      await page.locator('#offer input[name=days]').fill(days);
      await page.locator('#offer input[name=days]').press('Enter');
      assert.match(await alertIn(page, '#offer'), /Days: enter how many days the grant lasts, from 1 to 365/, `days "${days}"`);
    }
    assert.deepEqual(offers, [], 'a grant was offered with days out of range');
    await page.locator('#offer input[name=days]').fill('7');
    await page.locator('#offer input[name=services]').press('Enter');
    await page.locator('#grants-main li .tag', { hasText: 'pending' }).waitFor();
    assert.equal(offers.length, 1);
    assert.ok((await scrollsSideways(page)) <= 0);

    await page.getByRole('link', { name: 'Device' }).click();
    await page.locator('#device input[name=user_code]').fill('bcdf ghjk');
    await page.locator('#device input[name=user_code]').press('Enter');
    assert.match(await alertIn(page, '#device'), /No device is waiting for this code/);
    assert.deepEqual(await tab.cspViolations(), []);
  });
});
