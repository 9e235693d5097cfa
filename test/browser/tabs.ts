/**
 * Browser profiles for the console tests: Debian's Chromium through playwright-core, a fresh
 * profile per tab that records Content-Security-Policy violations, and optionally an injected
 * EIP-1193 wallet (window.ethereum) whose key lives in this process — personal_sign, and
 * eth_signTypedData_v4 when the wallet can sign typed data — plus the sign-ins the tests repeat.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { latestCode } from '../email-login-client';
import type { TestStack } from '../harness';
import type { TestWallet } from '../wallet-client';
import { PHONE } from './screenshots';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: install it (Debian/Ubuntu: apt-get install -y chromium) or set CHROMIUM_PATH`);
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
}

/** A wallet that also signs EIP-712 typed data (the JSON eth_signTypedData_v4 receives). */
export interface TypedDataWallet extends TestWallet {
  signTypedData(json: string): Promise<string>;
}

export interface Tab {
  context: BrowserContext;
  page: Page;
  /** The methods the page asked the wallet for, in order. */
  walletCalls(): Promise<string[]>;
  /** Content-Security-Policy violations the page reported. */
  cspViolations(): Promise<string[]>;
}

/**
 * A fresh browser profile at phone width; with `wallet`, an injected EIP-1193 provider
 * (window.ethereum) that answers with the wallet's address and signs here.
 */
export async function openTab(browser: Browser, baseURL: string, wallet?: TestWallet | TypedDataWallet): Promise<Tab> {
  const context = await browser.newContext({ viewport: PHONE, baseURL });
  // Page-side code as text: this file is compiled for Node, without the DOM's types.
  await context.addInitScript(
    `window.__csp = []; document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));`,
  );
  if (wallet) {
    await context.exposeFunction('__akWalletSign', async (hex: string) => wallet.sign(Buffer.from(hex.slice(2), 'hex').toString('utf8')));
    const typed = 'signTypedData' in wallet ? wallet : undefined;
    if (typed) {
      await context.exposeFunction('__akWalletSignTyped', async (address: string, json: string) => {
        if (address.toLowerCase() !== typed.lower) throw new Error(`eth_signTypedData_v4 for ${address}, not this wallet's account`);
        return typed.signTypedData(json);
      });
    }
    await context.addInitScript(`
      window.__akCalls = [];
      window.ethereum = {
        request: async ({ method, params }) => {
          window.__akCalls.push(method);
          if (method === 'eth_requestAccounts' || method === 'eth_accounts') return [${JSON.stringify(wallet.address)}];
          if (method === 'eth_chainId') return '0x1';
          if (method === 'personal_sign') return window.__akWalletSign(String(params[0]));
          if (method === 'eth_signTypedData_v4' && window.__akWalletSignTyped) return window.__akWalletSignTyped(String(params[0]), String(params[1]));
          throw Object.assign(new Error('unsupported method ' + method), { code: 4200 });
        },
      };`);
  }
  const page = await context.newPage();
  return {
    context,
    page,
    walletCalls: () => page.evaluate<string[]>('window.__akCalls ?? []'),
    cspViolations: () => page.evaluate<string[]>('window.__csp ?? []'),
  };
}

export async function signInByEmail(stack: TestStack, tab: Tab, email: string): Promise<void> {
  const { page } = tab;
  await page.locator('#email input[name=email]').fill(email);
  await page.getByRole('button', { name: 'Send code' }).click();
  await page.locator('#email input[name=code]').waitFor();
  const code = await latestCode(stack, email);
  await page.locator('#email input[name=code]').fill(code);
  await page.getByRole('button', { name: 'Sign in', exact: true }).click();
  await page.locator('#nav').waitFor({ state: 'visible' });
}

export async function signInByWallet(tab: Tab): Promise<void> {
  await tab.page.getByRole('button', { name: 'Sign in with wallet' }).click();
  await tab.page.locator('#nav').waitFor({ state: 'visible' });
}
