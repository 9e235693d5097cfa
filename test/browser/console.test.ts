/**
 * The console (/console) in a real browser: Debian's Chromium driven by playwright-core, against
 * a whole broker (harness), the SES stand-in's mailbox, the loopback Google provider and an
 * injected EIP-1193 wallet whose key lives in this process. Every page and sign-in, and the
 * refusals a person can meet: a wrong email code, a reused SIWE challenge, a SIWE message for
 * another site, a Google exchange this tab did not start, a tampered audit proof.
 *
 * CONSOLE_SCREENSHOTS=<dir> also writes each page at phone (390×844) and desktop (1280×800)
 * width into <dir> (docs/images/console/ for docs/console.md).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import type { AnchorResult } from '../../workflows/audit-anchor.definitions';
import { API_CSP } from '../../api/plugins/security-headers';
import { CONSOLE_CSP } from '../../api/plugins/console';
import { ageLogins } from '../approval-client';
import { deviceCode, otherUserCode, pollError, pollToken } from '../device-client';
import { codeFromMail, uniqueEmail, wrongCode } from '../email-login-client';
import { startGoogleStack, type GoogleStack } from '../google-login-client';
import { bindAgent, offerGrant, type GrantView } from '../grant-client';
import type { TestStack } from '../harness';
import { walletLogin } from '../mint-client';
import { newWallet, type TestWallet } from '../wallet-client';
import { shoot } from './screenshots';
import { launchChromium, openTab as openBrowserTab, signInByEmail as signInByEmailIn, signInByWallet, type Tab } from './tabs';

let g: GoogleStack;
let stack: TestStack;
let browser: Browser;
const contexts: BrowserContext[] = [];

before(async () => {
  browser = await launchChromium();
  // Loopback is trusted as a load balancer: a device code asked for with X-Forwarded-For comes from another network than the browser's.
  g = await startGoogleStack({ BROKER_AUDIT_ANCHOR_SECONDS: '3600', BROKER_TRUST_PROXY: '127.0.0.1/32' });
  stack = g.stack;
});
after(async () => {
  for (const c of contexts) await c.close().catch(() => undefined);
  await browser?.close();
  await g?.stop();
});

const openTab = async (wallet?: TestWallet): Promise<Tab> => {
  const tab = await openBrowserTab(browser, stack.url, wallet);
  contexts.push(tab.context);
  return tab;
};
const signInByEmail = (tab: Tab, email: string) => signInByEmailIn(stack, tab, email);

/** Each grant of the account behind `token` with its status, from GET /v1/grants. */
const grantStatuses = async (token: string): Promise<Record<string, string>> => {
  const res = await stack.request('GET', '/v1/grants?role=main', { token });
  assert.equal(res.status, 200, res.text);
  return Object.fromEntries((res.body as { grants: GrantView[] }).grants.map((g) => [g.grant_id, g.status]));
};
const isAgentRevoke = (url: string): boolean => /^\/v1\/agents\/[^/]+\/revoke$/.test(new URL(url).pathname);

const countRows = async (sql: string, args: unknown[] = []): Promise<number> => Number((await stack.db.query<{ n: string }>(sql, args)).rows[0]?.n);

const mainWallet = newWallet();
const agentWallet = newWallet();
let mainTab: Tab;

void describe('the console in Chromium', () => {
  void test('served at /console under its own policy: one script and one stylesheet from this origin, nothing inline; the API keeps its policy', async () => {
    for (const path of ['/console', '/console/', '/console/device?user_code=BCDF-GHJK', '/console/audit', '/console/approvals']) {
      const r = await fetch(stack.url + path);
      assert.equal(r.status, 200, path);
      assert.equal(r.headers.get('content-security-policy'), CONSOLE_CSP, path);
      const html = await r.text();
      assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)/, 'an inline script');
      assert.doesNotMatch(html, /<style|\sstyle=|\son[a-z]+=/i, 'an inline style or handler');
    }
    const js = await fetch(`${stack.url}/console/app.js`);
    assert.match(js.headers.get('content-type') ?? '', /javascript/);
    assert.ok((await js.arrayBuffer()).byteLength < 100_000, 'the bundle stays small');
    assert.equal((await fetch(`${stack.url}/v1/audit/keys`)).headers.get('content-security-policy'), API_CSP.replace(/; /g, ';'));
    assert.equal((await fetch(`${stack.url}/console/nothing-here`)).status, 404);
  });

  void test('email: a wrong code is refused on the page; the right one signs in and shows the account', async () => {
    const tab = await openTab();
    const { page } = tab;
    const email = uniqueEmail('console');
    await page.goto('/console/');
    await page.locator('#email input[name=email]').fill(email);
    await page.getByRole('button', { name: 'Send code' }).click();
    await page.locator('#email input[name=code]').waitFor();
    const code = codeFromMail((stack.ses.mailTo(email.toLowerCase())[0] ?? { text: '' }).text);
    const sessionsBefore = await countRows('SELECT count(*) AS n FROM sessions');
    await page.locator('#email input[name=code]').fill(wrongCode(code));
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.locator('#email [role=alert]').waitFor();
    assert.match(await page.locator('#email [role=alert]').innerText(), /code/i);
    assert.equal(await countRows('SELECT count(*) AS n FROM sessions'), sessionsBefore, 'a wrong code made a session');
    await page.locator('#email input[name=code]').fill(code);
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.waitForURL('**/console/account');
    await page.locator('#identities li').waitFor();
    assert.match(await page.locator('#identities').innerText(), new RegExp(email.toLowerCase().replace(/[.+]/g, '\\$&')));
    const omni = await page.locator('#omni').innerText();
    assert.equal(await countRows('SELECT count(*) AS n FROM users WHERE omni_account = $1', [omni]), 1);
    // The token is kept for this tab only.
    const stored = await page.evaluate<{ local: number; session: string[] }>('({ local: localStorage.length, session: Object.keys(sessionStorage) })');
    assert.equal(stored.local, 0, 'the console wrote to localStorage');
    assert.deepEqual(stored.session, ['agentkeys.console.session']);
    assert.deepEqual(await tab.cspViolations(), []);
  });

  void test('account: every live session is listed; revoking another one ends it, the current one stays', async () => {
    const wallet = newWallet();
    const tab = await openTab(wallet);
    const other = await walletLogin(stack, wallet);
    await tab.page.goto('/console/');
    await signInByWallet(tab);
    await tab.page.locator('#sessions li').nth(1).waitFor();
    assert.equal(await tab.page.locator('#sessions li').count(), 2);
    await shoot(tab.page, 'account');
    const otherItem = tab.page.locator('#sessions li', { hasNot: tab.page.locator('.tag.ok') });
    const otherId = await otherItem.getAttribute('data-session');
    await otherItem.getByRole('button', { name: 'Revoke' }).click();
    await tab.page.locator(`#sessions li[data-session="${otherId}"]`).waitFor({ state: 'detached' });
    assert.equal(await tab.page.locator('#sessions li').count(), 1);
    assert.equal((await stack.request('GET', '/v1/session/me', { token: other.token })).status, 401, 'the revoked session still works');
    assert.equal(
      await countRows(`SELECT count(*) AS n FROM audit_log WHERE event = 'session.revoke' AND details->>'jti_hash' = $1 AND omni_account = $2`, [
        otherId,
        other.omni_account,
      ]),
      1,
    );
    await tab.page.reload();
    await tab.page.locator('#sessions li .tag.ok').waitFor();
    assert.deepEqual(await tab.cspViolations(), []);
  });

  void test('account: a login whose session expired but whose refresh token still renews it is listed as such; revoking it ends the refresh token', async () => {
    const wallet = newWallet();
    const tab = await openTab(wallet);
    const away = await walletLogin(stack, wallet);
    const claimed = await stack.request('POST', '/v1/session/refresh_token', { token: away.token });
    assert.equal(claimed.status, 201, claimed.text);
    const { jti } = JSON.parse(Buffer.from(away.token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { jti: string };
    await stack.db.query(`UPDATE sessions SET expires_at = now() - interval '1 second' WHERE jti = $1`, [jti]);
    await tab.page.goto('/console/');
    await signInByWallet(tab);
    await tab.page.locator('#sessions li').nth(1).waitFor();
    const item = tab.page.locator('#sessions li', { hasNot: tab.page.locator('.tag.ok') });
    assert.match(await item.innerText(), /can renew[\s\S]*expired .+ · renews until /);
    const id = await item.getAttribute('data-session');
    await item.getByRole('button', { name: 'Revoke' }).click();
    await tab.page.locator(`#sessions li[data-session="${id}"]`).waitFor({ state: 'detached' });
    const refused = await stack.request('POST', '/v1/session/refresh', { body: { refresh_token: (claimed.body as { refresh_token: string }).refresh_token } });
    assert.equal(refused.status, 401, refused.text);
    assert.deepEqual(await tab.cspViolations(), []);
  });

  void test('wallet: Sign-In with Ethereum through an injected EIP-1193 wallet', async () => {
    mainTab = await openTab(mainWallet);
    await mainTab.page.goto('/console/');
    await shoot(mainTab.page, 'sign-in');
    await signInByWallet(mainTab);
    await mainTab.page.waitForURL('**/console/account');
    await mainTab.page.locator('#wallets li').waitFor();
    assert.match(await mainTab.page.locator('#wallets').innerText(), new RegExp(mainWallet.lower));
    assert.deepEqual(await mainTab.walletCalls(), ['eth_requestAccounts', 'eth_chainId', 'personal_sign']);
    assert.deepEqual(await mainTab.cspViolations(), []);
  });

  void test('navigation: a page whose data arrives after the person moved on is not shown over the newer page', async () => {
    const tab = await openTab(newWallet());
    const { page } = tab;
    await page.goto('/console/');
    await signInByWallet(tab);
    await page.locator('#sessions li').waitFor();
    // Hold the account page's /v1/session/me until the approvals page has been shown.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let seen!: () => void;
    const asked = new Promise<void>((resolve) => (seen = resolve));
    await page.route('**/v1/session/me', async (route) => {
      seen();
      await held;
      await route.continue();
    });
    await page.getByRole('link', { name: 'Account' }).click();
    await asked;
    await page.getByRole('link', { name: 'Approvals' }).click();
    await page.getByRole('heading', { name: 'Approvals' }).waitFor();
    const late = page.waitForResponse('**/v1/session/me');
    release();
    await late;
    // The account page's other calls had answered: once /me has, its render is a few tasks away.
    await page.evaluate(() => new Promise((resolve) => setTimeout(resolve, 300)));
    assert.equal(await page.locator('#main h1').first().innerText(), 'Approvals');
    assert.equal(await page.locator('#sessions').count(), 0, 'the late account page replaced the approvals page');
    assert.match(page.url(), /\/console\/approvals$/);
  });

  void test('wallet: a SIWE challenge used once is refused the second time, and nothing is recorded', async () => {
    const tab = await openTab(newWallet());
    let first: string | undefined;
    await tab.page.route('**/v1/session/wallet_challenge', async (route) => {
      if (first === undefined) {
        const res = await route.fetch();
        first = await res.text();
        return route.fulfill({ response: res, body: first });
      }
      return route.fulfill({ status: 200, contentType: 'application/json', body: first });
    });
    await tab.page.goto('/console/');
    await signInByWallet(tab);
    await tab.page.getByRole('button', { name: 'Sign out' }).click();
    await tab.page.getByRole('button', { name: 'Sign in with wallet' }).waitFor();
    const recorded = async () => ({
      sessions: await countRows('SELECT count(*) AS n FROM sessions'),
      audit: await countRows('SELECT count(*) AS n FROM audit_log'),
      used_signatures: await countRows('SELECT count(*) AS n FROM used_signatures'),
    });
    const before = await recorded();
    await tab.page.getByRole('button', { name: 'Sign in with wallet' }).click();
    const alert = tab.page.locator('#wallet [role=alert]');
    await alert.waitFor();
    // The first sign-in ended the challenge's flow: the replay reaches no open challenge.
    assert.match(await alert.innerText(), /this challenge is unknown, has expired or was already used; ask for a new one/);
    assert.deepEqual(await recorded(), before);
    assert.equal(new URL(tab.page.url()).pathname, '/console/');
  });

  void test('wallet: a SIWE message for another site is never handed to the wallet', async () => {
    const tab = await openTab(newWallet());
    const host = new URL(stack.url).host;
    await tab.page.route('**/v1/session/wallet_challenge', async (route) => {
      const res = await route.fetch();
      const body = (await res.json()) as { message: string };
      body.message = body.message.replace(`${host} wants you`, 'evil.example wants you');
      return route.fulfill({ response: res, json: body });
    });
    await tab.page.goto('/console/');
    await tab.page.getByRole('button', { name: 'Sign in with wallet' }).click();
    const alert = tab.page.locator('#wallet [role=alert]');
    await alert.waitFor();
    assert.match(await alert.innerText(), /for evil\.example, not for/);
    assert.deepEqual(await tab.walletCalls(), ['eth_requestAccounts', 'eth_chainId'], 'the wallet was asked to sign');
  });

  void test('Google: the browser form with PKCE through the loopback provider; an exchange this tab did not start is refused', async () => {
    const tab = await openTab();
    await tab.page.goto('/console/');
    await tab.page.getByRole('button', { name: 'Sign in with Google' }).click();
    await tab.page.waitForURL('**/console/account');
    await tab.page.locator('#identities li').waitFor();
    const text = await tab.page.locator('#identities').innerText();
    assert.match(text, /google/);
    assert.match(text, /dev@example\.com/);
    assert.equal(await tab.page.evaluate<string>('location.search'), '', 'the exchange code stayed in the address bar');

    const stranger = await openTab();
    await stranger.page.goto(`/console/?exchange_code=${'a'.repeat(32)}.${'b'.repeat(43)}`);
    await stranger.page.getByText('this tab did not start a Google sign-in').waitFor();
  });

  void test('grants: the main account offers, the agent accepts with its wallet, the main account revokes', async () => {
    const { page } = mainTab;
    await page.getByRole('link', { name: 'Grants' }).click();
    await page.locator('#offer input[name=agent_address]').fill(agentWallet.address);
    await page.locator('#offer input[name=services]').fill('s3, bedrock');
    await page.getByRole('button', { name: 'Offer grant' }).click();
    const item = page.locator('#grants-main li').first();
    await item.locator('.tag', { hasText: 'pending' }).waitFor();
    const grantId = await item.getAttribute('data-grant');
    assert.ok(grantId);
    await shoot(page, 'grants');

    const agent = await openTab(agentWallet);
    await agent.page.goto('/console/grants');
    await signInByWallet(agent);
    await agent.page.getByRole('link', { name: 'Grants' }).click();
    const offered = agent.page.locator(`#grants-agent li[data-grant="${grantId}"]`);
    await offered.getByRole('button', { name: 'Accept with wallet' }).click();
    await agent.page.locator(`#grants-agent li[data-grant="${grantId}"] .tag.ok`).waitFor();
    assert.equal(
      (await stack.db.query<{ accepted_at: Date | null }>('SELECT accepted_at FROM grants WHERE grant_id = $1', [grantId])).rows[0]?.accepted_at instanceof
        Date,
      true,
    );

    await page.reload();
    const active = page.locator(`#grants-main li[data-grant="${grantId}"]`);
    await active.locator('.tag.ok', { hasText: 'active' }).waitFor();
    await active.getByRole('button', { name: 'Revoke' }).click();
    await page.locator(`#grants-main li[data-grant="${grantId}"] .tag.bad`, { hasText: 'revoked' }).waitFor();
    assert.deepEqual(await mainTab.cspViolations(), []);
    assert.deepEqual(await agent.cspViolations(), []);
  });

  void test('grants: each agent wallet is listed once with Revoke agent; cancelled, nothing is sent; confirmed, every grant naming it is revoked and the page says what ended', async () => {
    const owner = newWallet();
    const agentA = newWallet();
    const agentB = newWallet();
    const s = await walletLogin(stack, owner);
    const activeA = await bindAgent(stack, s.token, agentA);
    const pendingA = (await offerGrant(stack, s.token, { agent_address: agentA.lower })).grant_id;
    const activeB = await bindAgent(stack, s.token, agentB);
    const tab = await openTab(owner);
    const { page } = tab;
    const revokeCalls: string[] = [];
    page.on('request', (r) => {
      if (isAgentRevoke(r.url())) revokeCalls.push(r.url());
    });
    await page.goto('/console/grants');
    await signInByWallet(tab);
    const itemA = page.locator(`#agents li[data-agent="${agentA.lower}"]`);
    await itemA.waitFor();
    assert.equal(await page.locator('#agents li').count(), 2, 'an agent with two grants is listed twice');
    assert.match(await itemA.innerText(), /2 grants · 2 live/);

    // Asked in the page, then cancelled: no call, every grant as it was.
    const confirm = itemA.getByRole('button', { name: 'Confirm: revoke every grant and end its credentials' });
    await itemA.getByRole('button', { name: 'Revoke agent' }).click();
    await confirm.waitFor();
    assert.match(await itemA.innerText(), new RegExp(`every grant this account made to ${agentA.lower} and ends the credentials it already holds`));
    await shoot(page, 'grants-revoke-agent');
    await itemA.getByRole('button', { name: 'Cancel' }).click();
    await confirm.waitFor({ state: 'detached' });
    // A call the first click had sent would have answered by now.
    await page.evaluate(() => new Promise((resolve) => setTimeout(resolve, 500)));
    assert.deepEqual(revokeCalls, [], 'Revoke agent called the kill switch before the confirmation');
    assert.deepEqual(await grantStatuses(s.token), { [activeA]: 'active', [pendingA]: 'pending', [activeB]: 'active' });

    // Confirmed: both grants naming agent A end, agent B's stays; the page says so (this stack's kill switch is off).
    await itemA.getByRole('button', { name: 'Revoke agent' }).click();
    await confirm.click();
    const note = page.locator('#main [role=status]');
    await note.waitFor();
    assert.equal(
      await note.innerText(),
      `Agent ${agentA.lower}: 2 grants revoked. This broker's kill switch is off: the credentials it already holds stay valid until they expire.`,
    );
    for (const id of [activeA, pendingA]) await page.locator(`#grants-main li[data-grant="${id}"] .tag.bad`, { hasText: 'revoked' }).waitFor();
    assert.equal(await page.locator(`#grants-main li[data-grant="${activeB}"] .tag.ok`, { hasText: 'active' }).count(), 1);
    assert.match(await itemA.innerText(), /2 grants · none live/);
    assert.equal(revokeCalls.length, 1);
    assert.deepEqual(await grantStatuses(s.token), { [activeA]: 'revoked', [pendingA]: 'revoked', [activeB]: 'active' });
    assert.equal(await countRows('SELECT count(*) AS n FROM grants WHERE grant_id = ANY($1) AND revoked_at IS NOT NULL', [[activeA, pendingA]]), 2);
    assert.equal(await countRows(`SELECT count(*) AS n FROM audit_log WHERE event = 'agent.revoke' AND omni_account = $1`, [s.omni_account]), 1);

    // The answer a broker applying the deny gives (mode iam; this stack's is off, so it is changed on the way): until when.
    let until = 0;
    await page.route('**/v1/agents/*/revoke', async (route) => {
      const res = await route.fetch();
      const body = (await res.json()) as { kill_switch: { mode: string; until: number } };
      until = body.kill_switch.until;
      body.kill_switch.mode = 'iam';
      return route.fulfill({ response: res, json: body });
    });
    const itemB = page.locator(`#agents li[data-agent="${agentB.lower}"]`);
    await itemB.getByRole('button', { name: 'Revoke agent' }).click();
    await itemB.getByRole('button', { name: 'Confirm: revoke every grant and end its credentials' }).click();
    await page.locator(`#grants-main li[data-grant="${activeB}"] .tag.bad`, { hasText: 'revoked' }).waitFor();
    assert.ok(until > Date.now() / 1000, `until ${until}`);
    const shown = await page.evaluate<string, number>((u) => new Date(u * 1000).toLocaleString(), until);
    assert.equal(await note.innerText(), `Agent ${agentB.lower}: 1 grant revoked. The credentials it already holds are denied until ${shown}.`);
    await page.unrouteAll({ behavior: 'wait' });
    assert.equal((await grantStatuses(s.token))[activeB], 'revoked');
    assert.deepEqual(await tab.cspViolations(), []);
  });

  void test('grants: a Revoke agent the broker refuses (429 past the per-account limit) shows its answer beside the agent, and the grant stays active', async () => {
    const owner = newWallet();
    const agent = newWallet();
    const s = await walletLogin(stack, owner);
    const grantId = await bindAgent(stack, s.token, agent);
    const tab = await openTab(owner);
    const { page } = tab;
    await page.goto('/console/grants');
    await signInByWallet(tab);
    const item = page.locator(`#agents li[data-agent="${agent.lower}"]`);
    await item.waitFor();
    // Every call counts against the account's limit, a 404 for a wallet it never granted too.
    for (let i = 0; i < stack.config.BROKER_RATE_LIMIT_REVOKE_PER_MINUTE; i++) {
      assert.equal((await stack.request('POST', `/v1/agents/${newWallet().lower}/revoke`, { token: s.token })).status, 404);
    }
    await item.getByRole('button', { name: 'Revoke agent' }).click();
    await item.getByRole('button', { name: 'Confirm: revoke every grant and end its credentials' }).click();
    const alert = item.locator('[role=alert]');
    await alert.waitFor();
    assert.match(await alert.innerText(), /too many requests/);
    assert.equal(await page.locator('#main [role=status]').count(), 0, 'a refusal read as done');
    assert.equal(await item.locator('.tag.bad').count(), 0);
    assert.equal(await page.locator(`#grants-main li[data-grant="${grantId}"] .tag.ok`, { hasText: 'active' }).count(), 1);
    assert.deepEqual(await grantStatuses(s.token), { [grantId]: 'active' });
    assert.deepEqual(await tab.cspViolations(), []);
  });

  void test('audit: every row of the account, and every mint its agents made under its grants, is proven in the browser against the published key; a changed row or head is refused', async () => {
    // An agent of this account mints under its grant: the rows are on the agent's log, shown here too.
    const holder = await walletLogin(stack, mainWallet);
    const agentWallet = newWallet();
    const agent = await walletLogin(stack, agentWallet);
    const grantId = await bindAgent(stack, holder.token, agentWallet);
    const minted = await stack.request('POST', '/v1/mint-oidc-jwt', { token: agent.token });
    assert.equal(minted.status, 200, minted.text);
    const anchored = await stack.temporal.workflow.execute<() => Promise<AnchorResult>>('auditAnchorWorkflow', {
      workflowId: `audit/anchor-console-${Date.now()}`,
      taskQueue: stack.config.BROKER_TASK_QUEUE,
    });
    assert.ok(anchored);
    const { page } = mainTab;
    await page.getByRole('link', { name: 'Audit' }).click();
    const omni = (await stack.db.query<{ omni_account: string }>('SELECT omni_account FROM wallets WHERE address = $1', [mainWallet.lower])).rows[0]
      ?.omni_account;
    const rows = await countRows('SELECT count(*) AS n FROM audit_log WHERE omni_account = $1', [omni]);
    assert.ok(rows >= 3, `only ${rows} rows`);
    await page
      .locator('#audit li')
      .nth(rows - 1)
      .waitFor();
    await page.locator('#audit-grants li').nth(1).waitFor();
    await allProofs(page, 'ok');
    assert.equal(await page.locator('#audit-grants li').count(), 2, 'the mint intent and outcome rows');
    assert.equal(await page.locator('[data-proof].ok').count(), rows + 2);
    assert.match(await page.locator('#audit-grants li').first().innerText(), new RegExp(`agent ${agentWallet.lower} · grant ${grantId}`));
    assert.match(await page.locator('[data-proof]').first().innerText(), /^verified/);
    await shoot(page, 'audit');

    // The same proofs, each changed in one place on the way to the page.
    for (const [change, refusal] of [
      [(p: Record<string, unknown>) => ((p.row as { details: Record<string, unknown> }).details.extra = 'x'), /fields do not hash/],
      [(p: Record<string, unknown>) => ((p.head as { jws: string }).jws = flipLastSignatureChar((p.head as { jws: string }).jws)), /signature does not verify/],
    ] as const) {
      await page.route('**/v1/audit/proof?*', async (route) => {
        const res = await route.fetch();
        const body = (await res.json()) as Record<string, unknown>;
        change(body);
        return route.fulfill({ response: res, json: body });
      });
      await page.reload();
      await allProofs(page, 'bad');
      assert.match(await page.locator('[data-proof]').first().innerText(), refusal);
      await page.unrouteAll({ behavior: 'wait' });
    }
    assert.deepEqual(await mainTab.cspViolations(), []);
  });

  void test('device: a verification link opened signed out signs in first, then shows the code it carried', async () => {
    const tab = await openTab();
    await tab.page.goto('/console/device?user_code=bcdf ghjk');
    await tab.page.getByText('Sign in to approve the device.').waitFor();
    await signInByEmail(tab, uniqueEmail('device'));
    await tab.page.waitForURL('**/console/device?user_code=*');
    assert.equal(await tab.page.locator('#device input[name=user_code]').inputValue(), 'BCDF-GHJK');
    await shoot(tab.page, 'device');
    assert.deepEqual(await tab.cspViolations(), []);
  });

  void test('device: a code from POST /v1/device/code, opened from its link signed out, approved in the page; the device collects its session once, a denied one gets access_denied', async () => {
    const dc = await deviceCode(stack, { client_id: 'agentkeys-cli' });
    const link = new URL(dc.verification_uri_complete);
    assert.equal(link.pathname, '/console/device');
    const tab = await openTab();
    await tab.page.goto(`${link.pathname}${link.search}`);
    await tab.page.getByText('Sign in to approve the device.').waitFor();
    const person = uniqueEmail('device-e2e');
    await signInByEmail(tab, person);
    await tab.page.waitForURL('**/console/device?user_code=*');
    const input = tab.page.locator('#device input[name=user_code]');
    assert.equal(await input.inputValue(), dc.user_code);
    assert.equal(await pollError(stack, dc.device_code), 'authorization_pending');
    // A code no request holds reads like an expired one.
    await input.fill(otherUserCode(dc.user_code).toLowerCase());
    await tab.page.getByRole('button', { name: 'Continue' }).click();
    await tab.page.getByText('No device is waiting for this code').waitFor();
    await input.fill(dc.user_code);
    await tab.page.getByRole('button', { name: 'Continue' }).click();
    await tab.page.getByText('agentkeys-cli').waitFor();
    await shoot(tab.page, 'device-approve');
    await tab.page.getByRole('button', { name: 'Approve' }).click();
    await tab.page.getByText('Approved: the device is signed in').waitFor();
    const first = await pollToken(stack, dc.device_code);
    assert.equal(first.status, 200, first.text);
    const session = first.body as { token: string; omni_account: string };
    const me = await stack.request('GET', '/v1/session/me', { token: session.token });
    assert.equal(me.status, 200, me.text);
    assert.equal(await pollError(stack, dc.device_code), 'invalid_grant', 'handed out once');
    assert.deepEqual(await tab.cspViolations(), []);

    const denied = await deviceCode(stack, { client_id: 'agentkeys-cli' });
    await tab.page.goto('/console/device');
    await input.fill(denied.user_code);
    await tab.page.getByRole('button', { name: 'Continue' }).click();
    await tab.page.getByText('agentkeys-cli').waitFor();
    await tab.page.getByRole('button', { name: 'Deny' }).click();
    await tab.page
      .getByText(/denied/i)
      .first()
      .waitFor();
    assert.equal(await pollError(stack, denied.device_code), 'access_denied');
  });

  void test("device: client and scope read as the device's unverified claims; a code from another network is shown with its network and a warning, one from the person's own network without", async () => {
    // A phisher's request: the client id the real CLI sends, a scope that reads like a promise, from elsewhere.
    const far = await stack.request('POST', '/v1/device/code', {
      body: { client_id: 'agentkeys-cli', scope: 'verified-by-agentkeys' },
      headers: { 'x-forwarded-for': '198.51.100.7' },
    });
    assert.equal(far.status, 200, far.text);
    const phished = far.body as { user_code: string; device_code: string; verification_uri_complete: string };
    const near = await deviceCode(stack, { client_id: 'agentkeys-cli' });

    const tab = await openTab(newWallet());
    const { page } = tab;
    const link = new URL(phished.verification_uri_complete);
    await page.goto(`${link.pathname}${link.search}`);
    await signInByWallet(tab);
    await page.waitForURL('**/console/device?user_code=*');
    const input = page.locator('#device input[name=user_code]');
    assert.equal(await input.inputValue(), phished.user_code);
    await page.getByRole('button', { name: 'Continue' }).click();
    const warning = page.locator('#device-network-warning');
    await warning.waitFor();
    assert.match(
      await warning.innerText(),
      /^This code was requested from another network than yours \(198\.51\.100\.0\/24; yours is 127\.0\.0\.0\/24\): approve only a device you are holding\./,
    );
    assert.equal(await page.locator('#device-requester-network').innerText(), '198.51.100.0/24');
    const shown = await page.locator('#device-request').innerText();
    assert.match(shown, /agentkeys-cli\s+claimed by the device, unverified/);
    assert.match(shown, /verified-by-agentkeys\s+claimed by the device, unverified/);
    assert.match(await page.locator('#device').innerText(), /the broker has not checked them/);
    await shoot(page, 'device-other-network');

    // The person's own network: the same claims labelled so, the network marked as theirs, no warning.
    await input.fill(near.user_code);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.locator('#device-requester-network', { hasText: '127.0.0.0/24' }).waitFor();
    assert.match(await page.locator('#device-requester-network').innerText(), /^127\.0\.0\.0\/24\s+your network$/);
    assert.match(await page.locator('#device-request').innerText(), /agentkeys-cli\s+claimed by the device, unverified/);
    assert.equal(await warning.count(), 0, 'a warning for a code of the same network');
    assert.equal(await pollError(stack, phished.device_code), 'authorization_pending');
    assert.equal(await pollError(stack, near.device_code), 'authorization_pending');
    assert.deepEqual(await tab.cspViolations(), []);
  });
});

void describe('the console in Chromium: a step that wants a recent sign-in', () => {
  void test('device: with a sign-in more than 5 minutes old, Approve says to sign in again and approves nothing; signed in again, the link brings the code back and it approves', async () => {
    const dc = await deviceCode(stack, { client_id: 'agentkeys-cli' });
    const link = new URL(dc.verification_uri_complete);
    // A wallet signs in as often as asked (an email code has its resend cooldown).
    const tab = await openTab(newWallet());
    const { page } = tab;
    await page.goto(`${link.pathname}${link.search}`);
    await signInByWallet(tab);
    await page.locator('#device input[name=user_code]').waitFor();
    const stored = await page.evaluate<string | null>("sessionStorage.getItem('agentkeys.console.session')");
    const omni = (JSON.parse(stored ?? '{}') as { omni_account?: string }).omni_account;
    assert.ok(omni, 'no session in the tab');
    // Every session of this account signed in 10 minutes ago.
    await ageLogins(stack, omni, 600);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByText('agentkeys-cli').waitFor();
    await page.getByRole('button', { name: 'Approve' }).click();
    const alert = page.locator('#device [role=alert]');
    await alert.waitFor();
    assert.match(await alert.innerText(), /more than 5 minutes old\. To approve a device, sign in again/);
    assert.equal(await pollError(stack, dc.device_code), 'authorization_pending');
    assert.equal(await page.locator('#nav').isVisible(), true, 'the refusal signed the console out');

    await page.getByRole('button', { name: 'Sign in again' }).click();
    await page.getByRole('button', { name: 'Sign in with wallet' }).waitFor();
    await signInByWallet(tab);
    await page.waitForURL('**/console/device?user_code=*');
    await page.locator('#device input[name=user_code]').waitFor();
    assert.equal(await page.locator('#device input[name=user_code]').inputValue(), dc.user_code);
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByText('agentkeys-cli').waitFor();
    await page.getByRole('button', { name: 'Approve' }).click();
    await page.getByText('Approved: the device is signed in').waitFor();
    const got = await pollToken(stack, dc.device_code);
    assert.equal(got.status, 200, got.text);
    assert.equal((got.body as { omni_account: string }).omni_account, omni);
    assert.deepEqual(await tab.cspViolations(), []);
  });
});

/** Waits until every proof badge on the page shows this verdict (the page's policy allows no eval, so polled from here). */
async function allProofs(page: Page, verdict: 'ok' | 'bad'): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const [all, done] = await Promise.all([page.locator('[data-proof]').count(), page.locator(`[data-proof].${verdict}`).count()]);
    if (all > 0 && all === done) return;
    if (Date.now() > deadline) throw new Error(`${done} of ${all} proofs show ${verdict}: ${(await page.locator('[data-proof]').allInnerTexts()).join(' | ')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function flipLastSignatureChar(jws: string): string {
  const last = jws.slice(-2, -1);
  return `${jws.slice(0, -2)}${last === 'A' ? 'B' : 'A'}${jws.slice(-1)}`;
}
