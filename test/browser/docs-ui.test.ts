/**
 * The /docs UI (Swagger UI) in Chromium. Development: on the public listener, where it renders and
 * "Try it out" calls the API. Production: not on the public listener (the console's origin, whose
 * bearer is in sessionStorage) but on the ops listener, another origin: it renders the whole
 * document there, under its own policy, and a console session in the same browser profile is not
 * readable from it. The HTTP-level answers are in test/docs-ui.test.ts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { docsVariant } from '../docs-ui-client';
import { startStack, type TestStack } from '../harness';
import { launchChromium, openTab } from './tabs';

/** Where console/src/api.ts keeps the session (its SESSION_KEY). */
const CONSOLE_SESSION_KEY = 'agentkeys.console.session';
/** Page-side code as text: this file is compiled for Node, without the DOM's types. */
const storedSession = `sessionStorage.getItem(${JSON.stringify(CONSOLE_SESSION_KEY)})`;

let stack: TestStack;
let browser: Browser;
before(async () => {
  [browser, stack] = await Promise.all([launchChromium(), startStack({ worker: false })]);
});
after(async () => {
  await browser?.close();
  await stack?.stop();
});

/** Waits for Swagger UI to render the document's operations; answers how many. */
async function renderedOperations(page: Page): Promise<number> {
  await page.locator('.opblock').first().waitFor({ timeout: 20_000 });
  return page.locator('.opblock').count();
}

void describe('/docs in Chromium', () => {
  void test('development: the UI renders on the public listener and "Try it out" calls the API', async () => {
    const v = await docsVariant(stack, {});
    const tab = await openTab(browser, v.url);
    try {
      await tab.page.goto(`${v.url}/docs/`);
      assert.ok((await renderedOperations(tab.page)) > 40);
      const op = tab.page.locator('.opblock', { has: tab.page.locator('[data-path="/v1/audit/keys"]') });
      await op.locator('.opblock-summary-control').click();
      await op.getByRole('button', { name: 'Try it out' }).click();
      await op.getByRole('button', { name: 'Execute' }).click();
      const status = op.locator('.live-responses-table tbody .response-col_status').first();
      await status.waitFor({ timeout: 10_000 });
      assert.equal((await status.textContent())?.trim(), '200');
      assert.deepEqual(await tab.cspViolations(), []);
    } finally {
      await tab.context.close();
      await v.close();
    }
  });

  void test("production: no UI on the console's origin; on the ops listener it renders, without Try it out, and cannot read the console's session", async () => {
    const v = await docsVariant(stack, { isProduction: true });
    const tab = await openTab(browser, v.url);
    try {
      // A console tab holding a session (what console/src/api.ts stores) in this browser profile.
      const consolePage = tab.page;
      await consolePage.goto(`${v.url}/console/`);
      await consolePage.evaluate(`sessionStorage.setItem(${JSON.stringify(CONSOLE_SESSION_KEY)}, '{"token":"console-bearer"}')`);
      const publicDocs = await consolePage.goto(`${v.url}/docs/`);
      assert.equal(publicDocs?.status(), 404);
      assert.equal(await consolePage.locator('.opblock').count(), 0);
      assert.equal(await consolePage.evaluate<string | null>(storedSession), '{"token":"console-bearer"}');

      const docsPage = await tab.context.newPage();
      await docsPage.goto(`${v.opsUrl}/docs/`);
      assert.ok((await renderedOperations(docsPage)) > 40);
      assert.equal(await docsPage.evaluate<string>('self.origin'), v.opsUrl);
      assert.notEqual(v.opsUrl, new URL(v.url).origin);
      assert.equal(await docsPage.evaluate<string | null>(storedSession), null);
      assert.equal(await docsPage.evaluate<number>('sessionStorage.length'), 0);
      const op = docsPage.locator('.opblock', { has: docsPage.locator('[data-path="/v1/audit/keys"]') });
      await op.locator('.opblock-summary-control').click();
      await op.locator('.opblock-body').waitFor();
      assert.equal(await op.getByRole('button', { name: 'Try it out' }).count(), 0, '"Try it out" is off on the ops listener');
      assert.deepEqual(await docsPage.evaluate<string[]>('window.__csp ?? []'), []);
    } finally {
      await tab.context.close();
      await v.close();
    }
  });
});
