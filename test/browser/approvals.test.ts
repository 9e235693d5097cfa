/**
 * The console's approvals page (/console/approvals) in Chromium, against a whole broker: agents
 * whose grants ask for approval mint from this process over HTTP and get 202; the holder decides
 * in the browser; the agents' polls get what was decided.
 *
 * - A wallet holder (SIWE sign-in through an injected EIP-1193 wallet whose key lives here) sees
 *   what it signs, signs it with eth_signTypedData_v4 (viem's signTypedData here, on the JSON the
 *   page handed the wallet, EIP712Domain included), approves one request and denies another.
 * - A holder without a wallet session (email sign-in) decides without a signature; with a sign-in
 *   older than 5 minutes the page says so, offers to sign in again, and then the decision goes.
 * - A decision on a request that expired while the page showed it (the wallet holder's page, left
 *   open meanwhile): the broker's refusal on the page.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import type { Browser, BrowserContext } from 'playwright-core';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import {
  ageLogins,
  approvalRow,
  auditEvents,
  bindAgentWithApproval,
  holderLogin,
  poll,
  requestMint,
  viewOf,
  type Holder,
  type Pending,
  type TypedData,
} from '../approval-client';
import { bindAgent } from '../grant-client';
import { startStack, type TestStack } from '../harness';
import { emailLogin, walletLogin, type WalletSession } from '../mint-client';
import { newWallet } from '../wallet-client';
import { shoot } from './screenshots';
import { launchChromium, openTab as openBrowserTab, signInByEmail, signInByWallet, type Tab, type TypedDataWallet } from './tabs';

let stack: TestStack;
let browser: Browser;
const contexts: BrowserContext[] = [];

const holderKey = generatePrivateKey();
const holderAccount = privateKeyToAccount(holderKey);
/** What the page handed the wallet to sign, parsed. */
const signedByWallet: TypedData[] = [];
const holderWallet: TypedDataWallet = {
  ...newWallet(holderKey),
  signTypedData: async (json) => {
    const data = JSON.parse(json) as TypedData;
    signedByWallet.push(data);
    return holderAccount.signTypedData(data);
  },
};
let holder: Holder;
let agent: WalletSession;
let expiringAgent: WalletSession;

before(async () => {
  [browser, stack] = await Promise.all([
    launchChromium(),
    // Requests that may time out in seconds and a 1-s poll interval: the expiry test waits 3 s, not half a minute.
    startStack({
      env: {
        BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000',
        BROKER_EMAIL_RESEND_COOLDOWN_SECONDS: '0',
        BROKER_APPROVAL_TIMEOUT_MIN_SECONDS: '2',
        BROKER_APPROVAL_POLL_INTERVAL_SECONDS: '1',
      },
    }),
  ]);
  [holder, agent, expiringAgent] = await Promise.all([holderLogin(stack, holderKey), walletLogin(stack), walletLogin(stack)]);
  await bindAgentWithApproval(stack, holder, agent);
  await bindAgentWithApproval(stack, holder, expiringAgent, { timeout_seconds: 3 });
});
after(async () => {
  for (const c of contexts) await c.close().catch(() => undefined);
  await browser?.close();
  await stack?.stop();
});

async function openTab(wallet?: TypedDataWallet): Promise<Tab> {
  const tab = await openBrowserTab(browser, stack.url, wallet);
  contexts.push(tab.context);
  return tab;
}

/** The agent polls as told (interval, slow_down) until the request is no longer pending; answers that last poll. */
async function collect(who: WalletSession, id: string): Promise<{ status: number; body: unknown; text: string }> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const res = await poll(stack, who.token, id);
    const b = res.body as Partial<Pending>;
    if (res.status !== 200 || (b.status !== 'pending' && b.status !== 'slow_down')) return res;
    if (Date.now() > deadline) throw new Error(`request ${id} still ${b.status}`);
    await sleep((b.interval ?? 2) * 1000);
  }
}

const item = (tab: Tab, id: string) => tab.page.locator(`#approvals li[data-approval="${id}"]`);

void describe('approvals in the console (Chromium)', () => {
  let tab: Tab;
  let approveMe: Pending;
  let denyMe: Pending;

  void test('a wallet holder sees each waiting request, reviews the EIP-712 data, signs it in the wallet and approves: the agent collects the credential', async () => {
    approveMe = await requestMint(stack, agent, { reason: 'deploy the nightly build' });
    denyMe = await requestMint(stack, agent, { reason: 'read the production bucket' });
    tab = await openTab(holderWallet);
    const { page } = tab;
    await page.goto('/console/');
    await signInByWallet(tab);
    await page.getByRole('link', { name: 'Approvals' }).click();
    await page.waitForURL('**/console/approvals');
    for (const p of [approveMe, denyMe]) await item(tab, p.approval_id).waitFor();

    const text = await item(tab, approveMe.approval_id).innerText();
    assert.ok(text.includes(agent.wallet.lower), text);
    assert.match(text, /mint oidc/);
    assert.match(text, /deploy the nightly build/);
    assert.match(text, /Grant scope/);
    assert.match(await item(tab, approveMe.approval_id).locator('[data-expires]').innerText(), /^in \d+ min \d+ s$/);
    await shoot(page, 'approvals');

    // Nothing reaches the wallet before the person has seen what it signs.
    await item(tab, approveMe.approval_id).getByRole('button', { name: 'Approve' }).click();
    const shown = await item(tab, approveMe.approval_id).locator('pre.signed').innerText();
    assert.ok(!(await tab.walletCalls()).includes('eth_signTypedData_v4'), 'the wallet was asked before the typed data was shown');
    const view = await viewOf(stack, holder, approveMe.approval_id);
    assert.ok(shown.includes(approveMe.approval_id) && shown.includes(view.request_hash) && shown.includes('"approve"'), shown);
    await shoot(page, 'approvals-sign');
    await item(tab, approveMe.approval_id).getByRole('button', { name: 'Sign and approve' }).click();
    await item(tab, approveMe.approval_id).getByText('Approved: the agent gets its credential').waitFor();

    assert.deepEqual(await tab.walletCalls(), ['eth_requestAccounts', 'eth_chainId', 'personal_sign', 'eth_requestAccounts', 'eth_signTypedData_v4']);
    const signed = signedByWallet.at(-1);
    assert.deepEqual(signed?.types.EIP712Domain, [
      { name: 'name', type: 'string' },
      { name: 'version', type: 'string' },
      { name: 'salt', type: 'bytes32' },
    ]);
    assert.deepEqual(signed?.message, view.sign?.approve.message);
    const row = await approvalRow(stack, approveMe.approval_id);
    assert.equal(row?.status, 'approved');
    assert.equal(row?.receipt?.via, 'eip712');
    assert.equal(row?.receipt?.signer, holder.wallet.lower);

    const got = await collect(agent, approveMe.approval_id);
    assert.equal(got.status, 200, got.text);
    const body = got.body as { status: string; jwt: string; wallet: string };
    assert.equal(body.status, 'approved');
    assert.equal(body.jwt.split('.').length, 3);
    assert.equal(body.wallet, holder.wallet.lower);
    assert.deepEqual(await tab.cspViolations(), []);
  });

  void test('the wallet holder denies another request (signed): the agent hears 403', async () => {
    const li = item(tab, denyMe.approval_id);
    await li.getByRole('button', { name: 'Deny' }).click();
    assert.match(await li.locator('pre.signed').innerText(), /"deny"/);
    await li.getByRole('button', { name: 'Sign and deny' }).click();
    await li.getByText('Denied: the agent gets nothing.').waitFor();
    assert.equal((await approvalRow(stack, denyMe.approval_id))?.status, 'denied');
    const got = await collect(agent, denyMe.approval_id);
    assert.equal(got.status, 403, got.text);
    assert.equal((got.body as { error: string }).error, 'forbidden');
  });

  void test('a holder without a wallet session decides without a signature; a sign-in over 5 minutes old is told to sign in again, then approves', async () => {
    const person = await emailLogin(stack);
    // The account's main wallet, as the TEE's add_wallet callback records one for an email account.
    const main = newWallet();
    await stack.db.query(`INSERT INTO wallets (omni_account, wallet_index, address, role) VALUES ($1, 0, $2, 'main')`, [person.omni_account, main.lower]);
    const itsAgent = await walletLogin(stack);
    await bindAgent(stack, person.token, itsAgent.wallet, { approval: { mode: 'always' } });

    const emailTab = await openTab();
    const { page } = emailTab;
    await page.goto('/console/approvals');
    await signInByEmail(stack, emailTab, person.email);
    await page.waitForURL('**/console/approvals');
    await page.locator('#approvals-empty').waitFor();
    await shoot(page, 'approvals-empty');

    const p = await requestMint(stack, itsAgent, { reason: 'rotate the staging key' });
    await page.getByRole('button', { name: 'Refresh' }).click();
    const li = page.locator(`#approvals li[data-approval="${p.approval_id}"]`);
    await li.waitFor();

    // Every session of this account signed in 10 minutes ago.
    await ageLogins(stack, person.omni_account, 600);
    await li.getByRole('button', { name: 'Approve' }).click();
    const alert = li.locator('[role=alert]');
    await alert.waitFor();
    assert.match(await alert.innerText(), /more than 5 minutes old/);
    assert.equal((await approvalRow(stack, p.approval_id))?.status, 'pending');
    assert.deepEqual(await auditEvents(stack, 'approval.decide', p.approval_id), []);
    // The session itself still works: that refusal does not sign the console out.
    assert.ok((await page.evaluate<string[]>('Object.keys(sessionStorage)')).includes('agentkeys.console.session'), 'the stale-login refusal signed out');
    assert.equal(await page.locator('#nav').isVisible(), true);

    await li.getByRole('button', { name: 'Sign in again' }).click();
    await page.locator('#email input[name=email]').waitFor();
    await signInByEmail(stack, emailTab, person.email);
    await page.waitForURL('**/console/approvals');
    await li.getByRole('button', { name: 'Approve' }).click();
    await li.getByText('Approved: the agent gets its credential').waitFor();
    const row = await approvalRow(stack, p.approval_id);
    assert.equal(row?.status, 'approved');
    assert.equal(row?.receipt?.via, 'fresh-session');

    const got = await collect(itsAgent, p.approval_id);
    assert.equal(got.status, 200, got.text);
    assert.equal((got.body as { status: string }).status, 'approved');
    assert.deepEqual(await emailTab.cspViolations(), []);
  });

  void test('a decision on a request that expired while the page showed it: the page says it expired, nothing is decided, the agent hears 410', async () => {
    const expiring = await requestMint(stack, expiringAgent, { reason: 'this one will expire' });
    await tab.page.getByRole('button', { name: 'Refresh' }).click();
    const li = item(tab, expiring.approval_id);
    await li.waitFor();
    assert.match(await li.locator('[data-expires]').innerText(), /^in \d s$/);
    // The page counts down by the browser's clock (this machine's, as the broker's) and says when it is over.
    await li.locator('[data-expires]', { hasText: 'expired' }).waitFor();
    // Not a moment early: a click then would still be decided (the page once said "expired" up to 1 s before).
    assert.ok(Date.now() >= expiring.expires_at * 1000, 'the page said expired before expires_at');
    await li.getByRole('button', { name: 'Approve' }).click();
    await li.getByRole('button', { name: 'Sign and approve' }).click();
    const alert = li.locator('[role=alert]');
    await alert.waitFor();
    assert.match(await alert.innerText(), /has expired: nothing was decided/);
    assert.notEqual((await approvalRow(stack, expiring.approval_id))?.status, 'approved');
    assert.deepEqual(await auditEvents(stack, 'approval.decide', expiring.approval_id), []);
    const got = await collect(expiringAgent, expiring.approval_id);
    assert.equal(got.status, 410, got.text);
    assert.deepEqual(await tab.cspViolations(), []);
  });
});
