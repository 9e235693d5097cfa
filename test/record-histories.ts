/**
 * `npm run histories:record [-- --replace]`: records one Temporal history per main path of every
 * workflow into test/histories/<workflowType>-<case>-v<package version>.bin (binary
 * temporal.api.history.v1.History), for the replay test (test/replay.test.ts).
 *
 * Boots a real stack (test/harness.ts) with the TEST-ONLY payload key and HMAC secret of
 * test/replay-keys.ts, drives each flow over HTTP the way clients and the TEE do, waits for every
 * run to close and saves its history. Run it on the released code after each release; files that
 * already exist are kept unless --replace is given, so histories of earlier releases stay.
 * Uses the Temporal dev server at TEMPORAL_ADDRESS, or starts one of its own.
 */
import { purgeKillSwitchEntries } from '../db/kill-switch';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { generateTeeKeyPair, signTeeJwt, teeClaims, type TeeKeyPair } from '../fixtures/tee/jwt';
import { startGoogleOidcFixture } from '../fixtures/google-oidc';
import { LOGIN_METHOD_IDS, LOGIN_METHODS, type LoginMethodId } from '../lib/login-methods';
import { deriveOmniAccount, type Identity } from '../lib/omni';
import { accountTag } from '../lib/digest';
import { GOOGLE_LOGIN_ID_PREFIX, MAX_CONFIRMATION_ATTEMPTS } from '../workflows/google-login.definitions';
import { APPROVAL_ID_PREFIX } from '../workflows/approval.definitions';
import { MINT_ID_PREFIX } from '../workflows/mint.definitions';
import { TEE_ACCOUNT_ID_PREFIX } from '../workflows/tee-account.definitions';
import { PASSKEY_CEREMONY_ID_PREFIX } from '../workflows/passkey-ceremony.definitions';
import { latestCode, requestCode, submitCode, uniqueEmail, workflowIdOf } from './email-login-client';
import { browserStart, callback, cliStart, consent, poll, RETURN_ORIGIN } from './google-login-client';
import { bindAgentWithApproval, holderLogin, poll as pollApproval, requestMint, signedDecision } from './approval-client';
import { recordDeviceApproved } from './device-client';
import { startStack, type TestStack } from './harness';
import { walletLogin, type WalletSession } from './mint-client';
import { REPLAY_TEST_ONLY_ENV } from './replay-keys';
import { newWallet, nowSeconds, walletWorkflowIdOf } from './wallet-client';
import { SoftAuthenticator } from './passkey-client';
import { findOrInstallTemporalCli } from '../scripts/temporal-cli';
import { startTemporalDevServer } from '../scripts/temporal-dev-server';

const ROOT = join(__dirname, '..');
const HISTORIES_DIR = join(ROOT, 'test', 'histories');
const EventType = temporal.api.enums.v1.EventType;
const CLOSED = new Set([EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED]);

/** Short windows, so every recorded run closes within seconds. */
const RECORDING_ENV: Record<string, string> = {
  ...REPLAY_TEST_ONLY_ENV,
  BROKER_EMAIL_CODE_TTL_SECONDS: '10', // long enough for a login on a loaded machine
  BROKER_EMAIL_MAX_ATTEMPTS: '2',
  BROKER_EMAIL_RESEND_COOLDOWN_SECONDS: '0',
  BROKER_RATE_LIMIT_EMAIL_PER_NETWORK_PER_HOUR: '100000',
  BROKER_TEE_ACCOUNT_IDLE_SECONDS: '5', // the login and add_wallet callbacks must reach one run even on a loaded machine
  BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000',
  BROKER_GOOGLE_LOGIN_TTL_SECONDS: '5',
  BROKER_GOOGLE_CLIENT_ID: 'agentkeys-replay',
  BROKER_GOOGLE_CLIENT_SECRET: 'replay-secret',
  BROKER_GOOGLE_RETURN_ORIGINS: RETURN_ORIGIN,
  BROKER_PASSKEY_CHALLENGE_TTL_SECONDS: '5',
};

interface Recording {
  workflowType: string;
  /** Kebab-case name of the path the run took. */
  name: string;
  workflowId: string;
  /** Update (or signal) names the history must contain, in order: proof the case did what it says. */
  expectUpdates?: string[];
}

function check(ok: boolean, what: string): asserts ok {
  if (!ok) throw new Error(`recording failed: ${what}`);
}

async function post(stack: TestStack, path: string, status: number, opts: { body?: unknown; token?: string } = {}): Promise<unknown> {
  const res = await stack.request('POST', path, opts);
  check(res.status === status, `POST ${path}: expected ${status}, got ${res.status} ${res.text}`);
  return res.body;
}

/** The request id of the newest audit row of `event` for an account (what the flow logged as its request id). */
async function auditRequestId(stack: TestStack, omniAccount: string, event: string): Promise<string> {
  const r = await stack.db.query<{ request_id: string | null }>(
    'SELECT request_id FROM audit_log WHERE omni_account = $1 AND event = $2 ORDER BY seq DESC LIMIT 1',
    [omniAccount, event],
  );
  const id = r.rows[0]?.request_id;
  check(typeof id === 'string' && id.length > 0, `no ${event} audit row for ${omniAccount}`);
  return id;
}

// ---- email code login ---------------------------------------------------------------------------
// emailLoginRequestWorkflow (one flow per requester).

const EMAIL_FLOW = LOGIN_METHODS.email.workflowType;

const GOOGLE_FLOW = LOGIN_METHODS.google.workflowType;

async function googleCliSuccess(stack: TestStack): Promise<Recording> {
  const start = await cliStart(stack);
  const back = await callback(await consent(start.authorize_url, uniqueEmail('replay-google')));
  check(back.status === 200, `google callback: ${back.text}`);
  const got = await poll(stack, start, back.code);
  check(got.status === 200, `google poll: ${got.text}`);
  return {
    workflowType: GOOGLE_FLOW,
    name: 'cli-success',
    workflowId: GOOGLE_LOGIN_ID_PREFIX + start.request_id,
    expectUpdates: ['googleCallback', 'collectSession'],
  };
}

/** A CLI sign-in whose starter does not have the page's code: five wrong codes, and the run ends refused. */
async function googleCliWrongCodes(stack: TestStack): Promise<Recording> {
  const start = await cliStart(stack);
  const back = await callback(await consent(start.authorize_url, uniqueEmail('replay-google-codes')));
  check(back.status === 200 && back.code !== undefined, `google callback: ${back.text}`);
  const wrong = back.code === 'BBBB-BBBB' ? 'CCCC-CCCC' : 'BBBB-BBBB';
  for (let i = 0; i < MAX_CONFIRMATION_ATTEMPTS; i++) {
    const got = await poll(stack, start, wrong);
    check(got.status === (i < MAX_CONFIRMATION_ATTEMPTS - 1 ? 401 : 429), `google poll with a wrong code: ${got.status} ${got.text}`);
  }
  return {
    workflowType: GOOGLE_FLOW,
    name: 'cli-wrong-codes',
    workflowId: GOOGLE_LOGIN_ID_PREFIX + start.request_id,
    expectUpdates: ['googleCallback', ...Array<string>(MAX_CONFIRMATION_ATTEMPTS).fill('collectSession')],
  };
}

async function googleBrowserSuccess(stack: TestStack): Promise<Recording> {
  const start = await browserStart(stack, `${RETURN_ORIGIN}/`);
  const back = await callback(await consent(start.authorizeUrl, uniqueEmail('replay-google-browser')), start.cookie);
  check(back.status === 302 && back.location !== null, `google callback: ${back.status} ${back.text}`);
  const code = new URL(back.location).searchParams.get('exchange_code') ?? '';
  await post(stack, '/v1/session/google_oauth_exchange', 200, { body: { exchange_code: code, code_verifier: start.verifier } });
  return {
    workflowType: GOOGLE_FLOW,
    name: 'browser-success',
    workflowId: GOOGLE_LOGIN_ID_PREFIX + code.split('.')[0],
    expectUpdates: ['googleCallback', 'collectSession'],
  };
}

async function googleDenied(stack: TestStack): Promise<Recording> {
  const start = await cliStart(stack);
  const back = await callback(await consent(start.authorize_url, 'deny'));
  check(back.status === 403, `google denied callback: ${back.status}`);
  return { workflowType: GOOGLE_FLOW, name: 'denied', workflowId: GOOGLE_LOGIN_ID_PREFIX + start.request_id, expectUpdates: ['googleCallback'] };
}

async function googleExpired(stack: TestStack): Promise<Recording> {
  const start = await cliStart(stack);
  return { workflowType: GOOGLE_FLOW, name: 'expired', workflowId: GOOGLE_LOGIN_ID_PREFIX + start.request_id, expectUpdates: [] };
}

async function emailSuccess(stack: TestStack): Promise<Recording> {
  const email = uniqueEmail('replay-success');
  const { request_id } = await requestCode(stack, email);
  const res = await submitCode(stack, request_id, await latestCode(stack, email));
  check(res.status === 200, `email login: ${res.text}`);
  return { workflowType: EMAIL_FLOW, name: 'success', workflowId: workflowIdOf(stack, request_id), expectUpdates: ['requestCode', 'submitCode'] };
}

async function emailResendSuccess(stack: TestStack): Promise<Recording> {
  const email = uniqueEmail('replay-resend');
  const { request_id } = await requestCode(stack, email);
  await requestCode(stack, email, request_id);
  const res = await submitCode(stack, request_id, await latestCode(stack, email));
  check(res.status === 200, `email login after a resend: ${res.text}`);
  return {
    workflowType: EMAIL_FLOW,
    name: 'resend-success',
    workflowId: workflowIdOf(stack, request_id),
    expectUpdates: ['requestCode', 'requestCode', 'submitCode'],
  };
}

async function emailTooManyAttempts(stack: TestStack): Promise<Recording> {
  const email = uniqueEmail('replay-locked');
  const { request_id } = await requestCode(stack, email);
  const right = await latestCode(stack, email);
  const wrong = right === '000000' ? '111111' : '000000';
  const first = await submitCode(stack, request_id, wrong);
  check(first.status === 401, `first wrong code: ${first.status} ${first.text}`);
  const second = await submitCode(stack, request_id, wrong);
  check(second.status === 429, `second wrong code: ${second.status} ${second.text}`);
  return {
    workflowType: EMAIL_FLOW,
    name: 'too-many-attempts',
    workflowId: workflowIdOf(stack, request_id),
    expectUpdates: ['requestCode', 'submitCode', 'submitCode'],
  };
}

async function emailExpired(stack: TestStack): Promise<Recording> {
  const { request_id } = await requestCode(stack, uniqueEmail('replay-expired'));
  return { workflowType: EMAIL_FLOW, name: 'expired', workflowId: workflowIdOf(stack, request_id), expectUpdates: ['requestCode'] };
}

// ---- wallet login -------------------------------------------------------------------------------

// The stateless form runs in the API without a workflow (docs/performance.md): nothing to record.

async function walletSiwe(stack: TestStack): Promise<Recording> {
  const w = newWallet();
  const c = (await post(stack, '/v1/session/wallet_challenge', 200, { body: { address: w.address, format: 'siwe' } })) as {
    request_id: string;
    message: string;
  };
  await post(stack, '/v1/session/wallet_login', 200, { body: { request_id: c.request_id, signature: await w.sign(c.message) } });
  return {
    workflowType: LOGIN_METHODS.wallet.workflowType,
    name: 'siwe-success',
    workflowId: walletWorkflowIdOf(stack, c.request_id),
    expectUpdates: ['issueWalletChallenge', 'submitWalletSignature'],
  };
}

// ---- TEE account bookkeeping --------------------------------------------------------------------

async function teeLoginThenWallet(stack: TestStack, teeKey: TeeKeyPair): Promise<Recording> {
  const identity: Identity = { type: 'email', value: uniqueEmail('replay-tee') };
  const omni = deriveOmniAccount(stack.config.BROKER_CLIENT_ID, identity);
  const token = signTeeJwt(teeKey.privateKey, teeClaims(omni, 'access', stack.config.BROKER_CLIENT_ID, nowSeconds()));
  const body = { userId: identity, clientId: stack.config.BROKER_CLIENT_ID, clientAuth: null, heimaLoginSuccess: true };
  await post(stack, '/v3/account/post_heima_login', 200, { token, body });
  await post(stack, '/v3/account/add_wallet', 200, { token });
  return {
    workflowType: LOGIN_METHODS.tee.workflowType,
    name: 'login-then-add-wallet',
    workflowId: TEE_ACCOUNT_ID_PREFIX + accountTag(stack.secrets.hmacSecret, omni),
    expectUpdates: ['recordHeimaLogin', 'addWalletSlot'],
  };
}

// ---- passkeys -----------------------------------------------------------------------------------
// passkeyCeremonyWorkflow: one run per challenge (sign-up, then a login with the same passkey).

async function passkeySignupThenLogin(stack: TestStack): Promise<Recording[]> {
  const origin = new URL(stack.url).origin;
  const a = new SoftAuthenticator();
  const signup = (await post(stack, '/v1/session/passkey/options', 200, { body: { mode: 'signup' } })) as {
    request_id: string;
    options: Parameters<SoftAuthenticator['register']>[0];
  };
  await post(stack, '/v1/session/passkey', 200, { body: { response: a.register(signup.options, { origin }) } });
  const login = (await post(stack, '/v1/session/passkey/options', 200, { body: {} })) as { request_id: string; options: { challenge: string } };
  await post(stack, '/v1/session/passkey', 200, { body: { response: a.assert(login.options, { origin }) } });
  const flow = LOGIN_METHODS.passkey.workflowType;
  const updates = ['openPasskeyChallenge', 'submitPasskeyResponse'];
  return [
    { workflowType: flow, name: 'signup-success', workflowId: PASSKEY_CEREMONY_ID_PREFIX + signup.request_id, expectUpdates: updates },
    { workflowType: flow, name: 'login-success', workflowId: PASSKEY_CEREMONY_ID_PREFIX + login.request_id, expectUpdates: updates },
  ];
}
const passkeySignup = (stack: TestStack) => passkeyRuns(stack).then((r) => r[0]!);
const passkeyLogin = (stack: TestStack) => passkeyRuns(stack).then((r) => r[1]!);
let passkeyRecordings: Promise<Recording[]> | undefined;
/** Both cases come from one sign-up and its login (the login needs the passkey the sign-up made). */
const passkeyRuns = (stack: TestStack) => (passkeyRecordings ??= passkeySignupThenLogin(stack));

// ---- the login methods' cases: the test layer of the registry in lib/login-methods.ts --------

/** One recorded case of a login method: drives it over HTTP and names the run to save. */
type RecordCase = (stack: TestStack, teeKey: TeeKeyPair) => Promise<Recording>;

/** Typed by the registry's ids: a method added there does not compile until its cases are named here. */
const LOGIN_METHOD_RECORDINGS: Record<LoginMethodId, RecordCase[]> = {
  email: [emailSuccess, emailResendSuccess, emailTooManyAttempts, emailExpired],
  wallet: [walletSiwe],
  google: [googleCliSuccess, googleCliWrongCodes, googleBrowserSuccess, googleDenied, googleExpired],
  tee: [teeLoginThenWallet],
  device: [recordDeviceApproved],
  passkey: [passkeySignup, passkeyLogin],
};

// ---- mints --------------------------------------------------------------------------------------

const MINTS = [
  { workflowType: 'mintWorkflow', target: 'oidc', path: '/v1/mint-oidc-jwt', event: 'mint.oidc' },
  { workflowType: 'mintWorkflow', target: 'aws', path: '/v1/mint-aws-creds', event: 'mint.aws' },
] as const;

async function mintSuccess(stack: TestStack, caller: WalletSession, mint: (typeof MINTS)[number]): Promise<Recording> {
  await post(stack, mint.path, 200, { token: caller.token });
  const requestId = await auditRequestId(stack, caller.omni_account, mint.event);
  return { workflowType: mint.workflowType, name: `${mint.target}-success`, workflowId: MINT_ID_PREFIX + requestId };
}

/** An agent wallet whose only (accepted) grant was revoked is refused (and the refusal audited). */
async function mintDenied(stack: TestStack, agent: WalletSession, mint: (typeof MINTS)[number]): Promise<Recording> {
  await post(stack, mint.path, 403, { token: agent.token });
  const requestId = await auditRequestId(stack, agent.omni_account, mint.event);
  return { workflowType: mint.workflowType, name: `${mint.target}-denied-agent`, workflowId: MINT_ID_PREFIX + requestId };
}

async function revokedAgent(stack: TestStack): Promise<WalletSession> {
  const [main, agent] = await Promise.all([walletLogin(stack), walletLogin(stack)]);
  const grant = (await post(stack, '/v1/grants', 201, { token: main.token, body: { agent_address: agent.wallet.lower } })) as {
    grant_id: string;
    acceptance_message: string;
  };
  await post(stack, `/v1/grants/${grant.grant_id}/accept`, 200, { body: { signature: await agent.wallet.sign(grant.acceptance_message) } });
  const res = await stack.request('DELETE', `/v1/grants/${grant.grant_id}`, { token: main.token });
  check(res.status === 204, `revoke: ${res.status} ${res.text}`);
  return agent;
}

/**
 * A mint under a grant that asks for approval: the mint run ends pending (it starts the approval
 * run), the holder approves with its wallet's EIP-712 signature, the agent collects once.
 */
async function approvalCollected(stack: TestStack): Promise<Recording[]> {
  const [holder, agent] = await Promise.all([holderLogin(stack), walletLogin(stack)]);
  await bindAgentWithApproval(stack, holder, agent);
  const pending = await requestMint(stack, agent, { reason: 'replay recording' });
  const { send } = await signedDecision(stack, holder, pending.approval_id, 'approve');
  check((await send()).status === 200, 'approval decision');
  const got = await pollApproval(stack, agent.token, pending.approval_id);
  check(got.status === 200 && (got.body as { status: string }).status === 'approved', `approved poll: ${got.status} ${got.text}`);
  const mintRequestId = pending.approval_id.slice('apr_'.length);
  return [
    { workflowType: 'mintWorkflow', name: 'oidc-awaiting-approval', workflowId: MINT_ID_PREFIX + mintRequestId },
    {
      workflowType: 'approvalWorkflow',
      name: 'approved-collected',
      workflowId: APPROVAL_ID_PREFIX + pending.approval_id,
      expectUpdates: ['approvalDecision', 'approvalPoll'],
    },
  ];
}

/**
 * Since patch `approval-collector`: the agent opens the request with one session, logs it out, and
 * collects the approved credential with another session of the same wallet (the hand-out's rows
 * name the collecting session, the opener as requested_by_*).
 */
async function approvalCollectedByAnotherSession(stack: TestStack): Promise<Recording> {
  const [holder, opener] = await Promise.all([holderLogin(stack), walletLogin(stack)]);
  await bindAgentWithApproval(stack, holder, opener);
  const pending = await requestMint(stack, opener, { reason: 'replay recording: another session collects' });
  await post(stack, '/v1/session/logout', 204, { token: opener.token });
  const { send } = await signedDecision(stack, holder, pending.approval_id, 'approve');
  check((await send()).status === 200, 'approval decision');
  const collector = await walletLogin(stack, opener.wallet);
  const got = await pollApproval(stack, collector.token, pending.approval_id);
  check(got.status === 200 && (got.body as { status: string }).status === 'approved', `approved poll by another session: ${got.status} ${got.text}`);
  return {
    workflowType: 'approvalWorkflow',
    name: 'approved-collected-by-another-session',
    workflowId: APPROVAL_ID_PREFIX + pending.approval_id,
    expectUpdates: ['approvalDecision', 'approvalPoll'],
  };
}

// ---- housekeeping -------------------------------------------------------------------------------

async function purge(stack: TestStack): Promise<Recording> {
  const workflowId = `maintenance/purge-replay-${Date.now()}`;
  await stack.temporal.workflow.start('purgeExpiredWorkflow', { workflowId, taskQueue: stack.config.BROKER_TASK_QUEUE });
  return { workflowType: 'purgeExpiredWorkflow', name: 'success', workflowId };
}

async function auditAnchor(stack: TestStack): Promise<Recording> {
  const workflowId = `audit/anchor-replay-${Date.now()}`;
  await stack.temporal.workflow.start('auditAnchorWorkflow', { workflowId, taskQueue: stack.config.BROKER_TASK_QUEUE });
  return { workflowType: 'auditAnchorWorkflow', name: 'success', workflowId };
}

async function killSwitch(stack: TestStack): Promise<Recording> {
  // Every entry expired (the revoked grant above left one): the run applies an empty policy and ends.
  await purgeKillSwitchEntries(stack.db, new Date(Date.now() + 365 * 86400_000));
  const workflowId = `kill-switch/replay-${Date.now()}`;
  await stack.temporal.workflow.start('killSwitchWorkflow', { workflowId, taskQueue: stack.config.BROKER_TASK_QUEUE });
  return { workflowType: 'killSwitchWorkflow', name: 'empty', workflowId };
}

// ---- saving -------------------------------------------------------------------------------------

function updateNames(history: temporal.api.history.v1.IHistory): string[] {
  return (history.events ?? []).flatMap((e) => {
    const name = e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.input?.name;
    return name ? [name] : [];
  });
}

async function fetchClosedHistory(handle: WorkflowHandle, rec: Recording): Promise<temporal.api.history.v1.IHistory> {
  // A denied mint fails its run on purpose: closed is what matters here, not how.
  await handle.result().catch(() => undefined);
  const history = await handle.fetchHistory();
  const events = history.events ?? [];
  const started = events[0]?.workflowExecutionStartedEventAttributes;
  const last = events[events.length - 1];
  check(started?.workflowType?.name === rec.workflowType, `${rec.workflowId} is a ${started?.workflowType?.name ?? '?'} run, not ${rec.workflowType}`);
  check(started.workflowId === rec.workflowId, `${rec.workflowId}: the started event does not carry the workflow id (the replay needs it)`);
  check(last?.eventType != null && CLOSED.has(last.eventType), `${rec.workflowId} did not complete or fail (last event ${String(last?.eventType)})`);
  if (rec.expectUpdates) {
    const got = updateNames(history);
    check(JSON.stringify(got) === JSON.stringify(rec.expectUpdates), `${rec.workflowId}: updates ${got.join(',')} instead of ${rec.expectUpdates.join(',')}`);
  }
  return history;
}

async function packageVersion(): Promise<string> {
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version?: string };
  check(typeof pkg.version === 'string' && /^[0-9A-Za-z.+-]+$/.test(pkg.version), 'package.json has no usable version');
  return pkg.version;
}

async function record(stack: TestStack, teeKey: TeeKeyPair): Promise<Recording[]> {
  stack.sts.setJwksUrl(`${stack.url}/.well-known/jwks.json`);
  const [caller, agent] = await Promise.all([walletLogin(stack), revokedAgent(stack)]);
  return Promise.all([
    ...LOGIN_METHOD_IDS.flatMap((id) => LOGIN_METHOD_RECORDINGS[id].map((recordCase) => recordCase(stack, teeKey))),
    ...MINTS.flatMap((m) => [mintSuccess(stack, caller, m), mintDenied(stack, agent, m)]),
    purge(stack),
    killSwitch(stack),
    approvalCollected(stack),
    approvalCollectedByAnotherSession(stack),
  ]).then(async (recordings) => [...recordings.flat(), await auditAnchor(stack)]); // after the others: the log has rows to sign
}

async function main(): Promise<void> {
  const replace = process.argv.includes('--replace');
  const version = await packageVersion();
  const t0 = Date.now();
  let stopServer: (() => Promise<void>) | undefined;
  if (!process.env.TEMPORAL_ADDRESS) {
    const server = await startTemporalDevServer({ cliPath: await findOrInstallTemporalCli(), uiPort: false });
    process.env.TEMPORAL_ADDRESS = server.address;
    stopServer = () => server.stop();
  }
  const teeKey = await generateTeeKeyPair();
  const google = await startGoogleOidcFixture();
  const stack = await startStack({ env: { ...RECORDING_ENV, BROKER_TEE_JWT_PUBLIC_KEY: teeKey.publicKeyPem, BROKER_GOOGLE_ISSUER: google.url } });
  try {
    const recordings = await record(stack, teeKey);
    const histories = await Promise.all(
      recordings.map(async (rec) => ({ rec, history: await fetchClosedHistory(stack.temporal.workflow.getHandle(rec.workflowId), rec) })),
    );
    await mkdir(HISTORIES_DIR, { recursive: true });
    for (const { rec, history } of histories) {
      const file = join(HISTORIES_DIR, `${rec.workflowType}-${rec.name}-v${version}.bin`);
      const shown = file.slice(ROOT.length + 1);
      if (existsSync(file) && !replace) {
        console.log(`kept     ${shown} (exists; --replace overwrites it)`);
        continue;
      }
      const bytes = temporal.api.history.v1.History.encode(history).finish();
      await writeFile(file, bytes);
      console.log(`recorded ${shown} (${history.events?.length ?? 0} events, ${bytes.length} bytes)`);
    }
    console.log(`done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  } finally {
    await stack.stop();
    await google.close();
    await stopServer?.();
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e instanceof Error ? e.stack : e);
    process.exit(1);
  },
);
