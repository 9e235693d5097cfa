/**
 * The page a CLI Google sign-in ends on, in Chromium: the person signs in at the loopback OpenID
 * provider and lands on the broker's callback, which shows the confirmation code to type into the
 * CLI. The page's own Content-Security-Policy allows its stylesheet by hash and nothing else: the
 * code must be shown large (the stylesheet applied, no violation), fit a phone, be selected whole by
 * a click, and be the code the poll takes.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { cliStart, poll, startGoogleStack, uniqueHint, type GoogleStack } from '../google-login-client';
import { shoot } from './screenshots';
import { launchChromium, openTab } from './tabs';

let g: GoogleStack;
let browser: Browser;

before(async () => {
  [browser, g] = await Promise.all([launchChromium(), startGoogleStack()]);
});
after(async () => {
  await browser?.close();
  await g?.stop();
});

void describe('the CLI Google sign-in page in Chromium', () => {
  void test('the code is shown large under the page policy, selected by a click, and collects the session', async () => {
    const start = await cliStart(g.stack);
    const tab = await openTab(browser, g.stack.url);
    try {
      const url = new URL(start.authorize_url);
      url.searchParams.set('login_hint', uniqueHint('chromium'));
      const answer = await tab.page.goto(url.href);
      assert.equal(answer?.status(), 200);
      assert.match(answer?.headers()['content-security-policy'] ?? '', /^default-src 'none'; style-src 'sha256-[A-Za-z0-9+/]{43}='/);
      const code = tab.page.locator('#confirmation-code');
      const text = (await code.textContent()) ?? '';
      assert.match(text, /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/);
      assert.equal(
        await tab.page.evaluate<string>("getComputedStyle(document.getElementById('confirmation-code')).fontSize"),
        '40px',
        'the stylesheet applies: the code is 2.5rem',
      );
      assert.deepEqual(await tab.cspViolations(), []);
      await shoot(tab.page, 'google-cli-callback');
      await code.click();
      assert.equal(await tab.page.evaluate('String(getSelection())'), text, 'one click selects the code whole');
      const got = await poll(g.stack, start, text);
      assert.equal(got.status, 200, got.text);
    } finally {
      await tab.context.close();
    }
  });
});
