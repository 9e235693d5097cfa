/**
 * `npx tsx scripts/ui-screenshot.ts [out.png]`: the screenshot of docs/operations.md. Starts
 * `npm start`'s stack in a fresh data directory (or uses a running one: UI_URL and API_URL), runs one
 * email login through the API, opens that login's workflow page in the Temporal UI with Chromium and
 * saves it (default docs/images/temporal-ui-decoded.png) once the page shows the decoded input —
 * it fails if the UI shows only the encrypted payload.
 * Env: CHROMIUM_PATH (default /usr/bin/chromium), UI_URL + API_URL (a running stack), TIMEOUT_MS.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { LOGIN_METHODS } from '../lib/login-methods';

const ROOT = resolve(__dirname, '..');
const log = (line: string) => console.log(`[screenshot] ${line}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const EMAIL = 'ada@example.com';

/** Starts `npm start`'s stack (scripts/stack.ts) and reads the API's and the UI's URLs from its banner. */
async function startStack(dataDir: string): Promise<{ api: string; ui: string; child: ChildProcess }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/stack.ts'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, BROKER_DATA_DIR: dataDir, NODE_ENV: 'development' },
  });
  let out = '';
  return new Promise((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`npm start was not up within 5 min:\n${out.slice(-2000)}`)), 5 * 60_000);
    child.on('exit', (code) => fail(new Error(`npm start exited with ${code}:\n${out.slice(-2000)}`)));
    child.stdout?.setEncoding('utf8').on('data', (c: string) => {
      out += c;
      const api = /\[stack\]\s+API\s+(\S+)/.exec(out)?.[1];
      const ui = /\[stack\]\s+Temporal\s+\S+\s+UI\s+(\S+)/.exec(out)?.[1];
      if (/\[stack\]\s+Codec\s+/.test(out) && api && ui) {
        clearTimeout(timer);
        if (!/checked: preflight 204, decode 200/.test(out)) log('warning: the banner does not report the codec path checked');
        done({ api, ui, child });
      }
    });
  });
}

async function post(api: string, path: string, body: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(api + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const json = (await res.json()) as Record<string, unknown>;
  if (!res.ok) throw new Error(`${path} answered ${res.status}: ${JSON.stringify(json)}`);
  return json;
}

/** One email login (its workflow id is a keyed digest of the request id, which this script cannot compute: the page finds it). */
async function login(api: string): Promise<void> {
  const { request_id } = (await post(api, '/v1/session/email_code', { email: EMAIL })) as { request_id: string };
  let code: string | undefined;
  for (let i = 0; i < 100 && !code; i++) {
    const mails = (await (await fetch(`${api}/_dev/mail?to=${encodeURIComponent(EMAIL)}`)).json()) as { text: string }[];
    code = mails[0]?.text.match(/code is (\d{6})/)?.[1];
    if (!code) await sleep(100);
  }
  if (!code) throw new Error('no login code in the dev mailbox');
  await post(api, '/v1/session/email_login', { request_id, code });
}

async function main(): Promise<void> {
  const out = resolve(process.argv[2] ?? join(ROOT, 'docs/images/temporal-ui-decoded.png'));
  let dataDir: string | undefined;
  let stack: { api: string; ui: string; child?: ChildProcess };
  if (process.env.UI_URL && process.env.API_URL) {
    stack = { api: process.env.API_URL, ui: process.env.UI_URL };
  } else {
    dataDir = await mkdtemp(join(tmpdir(), 'akb-screenshot-'));
    log(`starting npm start's stack in ${dataDir}…`);
    stack = await startStack(dataDir);
  }
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium', args: ['--no-sandbox'] });
  try {
    await login(stack.api);
    const query = `WorkflowType="${LOGIN_METHODS.email.workflowType}"`;
    const list = `${stack.ui}/namespaces/default/workflows?query=${encodeURIComponent(query)}`;
    log(`login done; opening the newest email login from ${list}`);
    const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
    const timeout = Number(process.env.TIMEOUT_MS ?? 60_000);
    await page.goto(list);
    await page.locator('a[href*="/workflows/email-login"]').first().click({ timeout });
    // The decoded input names the flow's fields; the encrypted one shows only `binary/encrypted`.
    await page.getByText('email_key').first().waitFor({ timeout });
    await page.getByText('Email code login').first().waitFor({ timeout });
    await sleep(1000);
    await mkdir(dirname(out), { recursive: true });
    await page.screenshot({ path: out, fullPage: true });
    log(`saved ${out}`);
  } finally {
    await browser.close();
    if (stack.child) {
      stack.child.kill('SIGINT');
      await new Promise((r) => stack.child?.once('exit', r));
    }
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(`[screenshot] ${(e as Error).message}`);
    process.exit(1);
  },
);
