/**
 * Remote phishing (RFC 8628 §5.4): a person talked into approving someone else's device code gives
 * that device a session of their account, a login made "just now". That session must not bind
 * anything the person's logout would not end: it cannot add a passkey or approve another device
 * code (nor decide an approval without a wallet signature: test/approvals.test.ts), however fresh,
 * and neither can a session refreshed from it. The refusal is a 403 that says where to sign in, not
 * the 401 "sign in again" a stale login gets. A login made on the device itself still does both.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import type { Payload } from '@temporalio/common';
import { decodeJwt } from 'jose';
import { AesGcmPayloadCodec } from '../lib/codec';
import { DEVICE_CODE_GRANT_TYPE, formatUserCode, newUserCode } from '../lib/device-code';
import { hmacHex } from '../lib/digest';
import { REAUTH_SECONDS } from '../services/sessions';
import type { deviceAuthorizationWorkflow } from '../workflows/device-authorization';
import { DEVICE_AUTHORIZATION_ID_PREFIX, type DeviceAuthorizationInput } from '../workflows/device-authorization.definitions';
import { spyWorkflowStarts } from './adversarial-probes';
import { ageLogins } from './approval-client';
import { deviceCode, deviceRows, lookUp, pollError, pollToken, signedIn, verify, type DeviceCodeBody } from './device-client';
import type { LoginSessionBody } from './email-login-client';
import { startStack, type TestStack } from './harness';
import { emailLogin } from './mint-client';
import { SoftAuthenticator, type CreationOptions, type Issued, type RequestOptions } from './passkey-client';

let stack: TestStack;
let origin: string;
before(async () => {
  // Loopback is the load balancer: X-Forwarded-For names the client (another network than the tests' own).
  stack = await startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000', BROKER_TRUST_PROXY: '127.0.0.1/32' } });
  origin = new URL(stack.url).origin;
});
after(async () => {
  await stack?.stop();
});

async function ok<T>(method: string, path: string, status: number, opts: { body?: unknown; token?: string } = {}): Promise<T> {
  const res = await stack.request(method, path, opts);
  assert.equal(res.status, status, `${method} ${path}: ${res.text}`);
  return res.body as T;
}

const passkeyCount = async (omniAccount: string): Promise<number> =>
  Number((await stack.db.query<{ n: string }>('SELECT count(*) AS n FROM passkeys WHERE omni_account = $1', [omniAccount])).rows[0]?.n);

/** `approver` approves a new device code; the device collects its session (method device). */
async function deviceSessionOf(approver: { token: string; omni_account: string }): Promise<string> {
  const dc = await deviceCode(stack, { client_id: 'agentkeys-cli' });
  const approved = await verify(stack, approver.token, dc.user_code);
  assert.equal(approved.status, 200, approved.text);
  const got = await pollToken(stack, dc.device_code);
  assert.equal(got.status, 200, got.text);
  const session = got.body as LoginSessionBody;
  assert.equal(session.omni_account, approver.omni_account);
  assert.equal(decodeJwt(session.token).amr, 'device');
  return session.token;
}

/** What the refusal says, for `what` ("adding a passkey") and `then` ("add it"). */
const deviceRefusal = (what: string, then: string) =>
  new RegExp(
    `^${what} needs a login made on this device: a session whose sign-in was finished in another browser ` +
      `\\(the device flow, or Google sign-in started from a CLI\\) cannot; sign in here with email, Google, a wallet or a passkey, then ${then}$`,
  );

function assertForbidden(res: { status: number; body: unknown; text: string }, message: RegExp): void {
  assert.equal(res.status, 403, res.text);
  const body = res.body as { error: string; message: string; reauthenticate?: unknown };
  assert.equal(body.error, 'forbidden', res.text);
  assert.equal(body.reauthenticate, undefined, 'a device session is not told to sign in again: it would only come back through the device flow');
  assert.match(body.message, message);
}

/** `token` asks for passkey registration options: refused, no ceremony started, no passkey added. */
async function cannotAddPasskey(token: string, omniAccount: string): Promise<void> {
  const before = await passkeyCount(omniAccount);
  const starts = spyWorkflowStarts(stack.temporal);
  try {
    const res = await stack.request('POST', '/v1/passkeys/registration/options', { token });
    assertForbidden(res, deviceRefusal('adding a passkey', 'add it'));
    assert.equal(starts.count(), 0, 'a ceremony was started');
  } finally {
    starts.restore();
  }
  assert.equal(await passkeyCount(omniAccount), before, 'a passkey was added');
}

/** `token` approves a new device code: refused before the request hears of it; the code stays pending. */
async function cannotApproveDevice(token: string): Promise<void> {
  const dc = await deviceCode(stack);
  const handle = stack.temporal.workflow.getHandle(DEVICE_AUTHORIZATION_ID_PREFIX + (dc.device_code.split('.')[0] ?? ''));
  const events = (await handle.fetchHistory()).events?.length;
  const before = await deviceRows(stack.db);
  assertForbidden(await verify(stack, token, dc.user_code), deviceRefusal('approving a device', 'approve it'));
  assert.equal((await handle.fetchHistory()).events?.length, events, 'the request saw a decision');
  assert.deepEqual(await deviceRows(stack.db), before);
  assert.equal(await pollError(stack, dc.device_code), 'authorization_pending');
}

void describe('a session from the device flow binds nothing (RFC 8628 §5.4 remote phishing)', () => {
  void test('a device session, however fresh, cannot add a passkey or approve another device: 403 saying to sign in on this device; nothing registered, the code stays pending', async () => {
    const victim = await signedIn(stack);
    const phished = await deviceSessionOf(victim);
    // The session works for what it was approved for.
    assert.equal((await stack.request('GET', '/v1/session/me', { token: phished })).status, 200);
    await cannotAddPasskey(phished, victim.omni_account);
    await cannotApproveDevice(phished);

    // Older than the recent-login window it is still 403, not 401 reauthenticate: signing in "again"
    // on that device would only be another device-flow login.
    await ageLogins(stack, victim.omni_account, REAUTH_SECONDS + 10);
    await cannotAddPasskey(phished, victim.omni_account);
    await cannotApproveDevice(phished);

    // Denying binds nothing and takes any session.
    const other = await deviceCode(stack);
    const denied = await verify(stack, phished, other.user_code, 'deny');
    assert.equal(denied.status, 200, denied.text);
    assert.equal(await pollError(stack, other.device_code), 'access_denied');
  });

  void test('a session refreshed from a device session (POST /v1/session/refresh_token, then /v1/session/refresh) is refused the same way', async () => {
    const victim = await signedIn(stack);
    const phished = await deviceSessionOf(victim);
    const claimed = await ok<{ refresh_token: string }>('POST', '/v1/session/refresh_token', 201, { token: phished });
    const refreshed = await ok<{ token: string }>('POST', '/v1/session/refresh', 200, { body: { refresh_token: claimed.refresh_token } });
    assert.notEqual(refreshed.token, phished);
    await cannotAddPasskey(refreshed.token, victim.omni_account);
    await cannotApproveDevice(refreshed.token);

    // The check reads how the family's login was made, not the refreshed session's own row: one
    // naming another method changes nothing.
    const jti = decodeJwt(refreshed.token).jti;
    const renamed = await stack.db.query(`UPDATE sessions SET method = 'wallet' WHERE jti = $1`, [jti]);
    assert.equal(renamed.rowCount, 1);
    await cannotAddPasskey(refreshed.token, victim.omni_account);
    await cannotApproveDevice(refreshed.token);
  });

  void test('a login made here (email code, wallet, passkey) adds a passkey and approves a device', async () => {
    const email = await emailLogin(stack);
    const wallet = await signedIn(stack);
    const signUp = new SoftAuthenticator();
    const o = await ok<Issued<CreationOptions>>('POST', '/v1/session/passkey/options', 200, { body: { mode: 'signup' } });
    await ok<LoginSessionBody>('POST', '/v1/session/passkey', 200, { body: { response: signUp.register(o.options, { origin }) } });
    const lo = await ok<Issued<RequestOptions>>('POST', '/v1/session/passkey/options', 200, { body: {} });
    const passkey = await ok<LoginSessionBody>('POST', '/v1/session/passkey', 200, { body: { response: signUp.assert(lo.options, { origin }) } });

    for (const [method, session] of [
      ['email', email],
      ['wallet', wallet],
      ['passkey', passkey],
    ] as const) {
      assert.equal(decodeJwt(session.token).amr, method);
      const before = await passkeyCount(session.omni_account);
      const ro = await ok<Issued<CreationOptions>>('POST', '/v1/passkeys/registration/options', 200, { token: session.token });
      await ok('POST', '/v1/passkeys/registration', 201, {
        token: session.token,
        body: { response: new SoftAuthenticator().register(ro.options, { origin }) },
      });
      assert.equal(await passkeyCount(session.omni_account), before + 1, method);
      await deviceSessionOf(session);
    }
  });
});

/** A device code requested from `from` (X-Forwarded-For through the trusted loopback), or from loopback itself. */
async function deviceCodeFrom(from: string | undefined, body: Record<string, unknown> = { client_id: 'agentkeys-cli' }): Promise<DeviceCodeBody> {
  const res = await stack.request('POST', '/v1/device/code', { body, ...(from ? { headers: { 'x-forwarded-for': from } } : {}) });
  assert.equal(res.status, 200, res.text);
  return res.body as DeviceCodeBody;
}

/** GET /v1/device/verify as `token`, from `from` (or loopback). */
async function lookUpFrom(token: string, userCode: string, from?: string): Promise<Record<string, unknown>> {
  const res = from
    ? await stack.request('GET', `/v1/device/verify?user_code=${encodeURIComponent(userCode)}`, { token, headers: { 'x-forwarded-for': from } })
    : await lookUp(stack, token, userCode);
  assert.equal(res.status, 200, res.text);
  return res.body as Record<string, unknown>;
}

void describe('the verify answer says where a code was requested from (RFC 8628 §5.4)', () => {
  void test("a phisher's code names the phisher's network, not the person's: same_network false; from the person's own /24 or /48, true", async () => {
    const person = await signedIn(stack);
    // What the real CLI sends, and a scope that reads like a promise: both only the device's claims.
    const phished = await deviceCodeFrom('198.51.100.7', { client_id: 'agentkeys-cli', scope: 'verified-by-agentkeys' });
    const view = await lookUpFrom(person.token, phished.user_code);
    assert.equal(view.client_id, 'agentkeys-cli');
    assert.equal(view.scope, 'verified-by-agentkeys');
    assert.equal(view.requester_network, '198.51.100.0/24');
    assert.equal(view.approver_network, '127.0.0.0/24');
    assert.equal(view.same_network, false);
    // The person on that network (another address of its /24) is told it is theirs.
    const there = await lookUpFrom(person.token, phished.user_code, '198.51.100.200');
    assert.equal(there.approver_network, '198.51.100.0/24');
    assert.equal(there.same_network, true);

    const own = await deviceCodeFrom(undefined);
    const ownView = await lookUpFrom(person.token, own.user_code);
    assert.equal(ownView.requester_network, '127.0.0.0/24');
    assert.equal(ownView.same_network, true);

    // IPv6: a /48 (one site), whatever address of it asks.
    const v6 = await deviceCodeFrom('2001:db8:aa:1::5');
    const v6View = await lookUpFrom(person.token, v6.user_code, '[2001:db8:aa:ff::9]:443');
    assert.equal(v6View.requester_network, '2001:db8:aa::/48');
    assert.equal(v6View.same_network, true);
    assert.equal((await lookUpFrom(person.token, v6.user_code, '2001:db8:ab::1')).same_network, false);

    // The network is in the flow's input only, which the codec encrypts: not in the id, the search attributes or the history as stored.
    const handle = stack.temporal.workflow.getHandle(DEVICE_AUTHORIZATION_ID_PREFIX + (phished.device_code.split('.')[0] ?? ''));
    const history = await handle.fetchHistory();
    const bytesAsText = (_k: string, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString('latin1') : v);
    const stored = [
      JSON.stringify(history, bytesAsText),
      handle.workflowId,
      JSON.stringify((await handle.describe()).raw.workflowExecutionInfo?.searchAttributes ?? {}, bytesAsText),
    ];
    for (const where of stored) assert.ok(!where.includes('198.51.100'), 'the requester network is readable in Temporal');
    // Decoded with the payload key (sanity check that the walk reaches the input): there it is.
    const payloads: Payload[] = [];
    const walk = (v: unknown): void => {
      if (!v || typeof v !== 'object' || v instanceof Uint8Array) return;
      const o = v as Record<string, unknown>;
      if (o.metadata && typeof o.metadata === 'object' && o.data instanceof Uint8Array) payloads.push(o);
      for (const x of Object.values(o)) walk(x);
    };
    walk(history);
    const decoded = (await new AesGcmPayloadCodec(stack.secrets.payloadKey).decode(payloads)).map((p) =>
      Buffer.from(p.data ?? new Uint8Array()).toString('utf8'),
    );
    assert.ok(decoded.join('\n').includes('"requester_network":"198.51.100.0/24"'), 'the decoded input holds the network');

    // Looking up decides nothing; the device still waits.
    assert.equal(await pollError(stack, phished.device_code), 'authorization_pending');
  });

  void test('a request an older API opened (no requester_network in its input) is shown without one, same_network false, and still approves', async () => {
    const person = await signedIn(stack);
    const userCode = newUserCode();
    const requestId = hmacHex(stack.secrets.hmacSecret, 'device-user-code', userCode).slice(0, 32);
    const workflowId = DEVICE_AUTHORIZATION_ID_PREFIX + requestId;
    const secret = randomBytes(32).toString('base64url');
    const requestedAt = Math.floor(Date.now() / 1000);
    const input: DeviceAuthorizationInput = {
      device_code_digest: hmacHex(stack.secrets.hmacSecret, 'device-code', workflowId, secret),
      client_id: 'agentkeys-cli',
      requested_at: requestedAt,
      expires_at: requestedAt + 600,
      settings: { ttlSeconds: 600, intervalSeconds: 5, graceSeconds: 10 },
    };
    await stack.temporal.workflow.start<typeof deviceAuthorizationWorkflow>('deviceAuthorizationWorkflow', {
      workflowId,
      taskQueue: stack.config.BROKER_TASK_QUEUE,
      args: [input],
    });
    const view = await lookUpFrom(person.token, formatUserCode(userCode));
    assert.equal(view.requester_network, undefined);
    assert.equal(view.approver_network, '127.0.0.0/24');
    assert.equal(view.same_network, false);
    const approved = await verify(stack, person.token, formatUserCode(userCode));
    assert.equal(approved.status, 200, approved.text);
    const got = await stack.request('POST', '/v1/device/token', { body: { device_code: `${requestId}.${secret}`, grant_type: DEVICE_CODE_GRANT_TYPE } });
    assert.equal(got.status, 200, got.text);
    assert.equal((got.body as { omni_account: string }).omni_account, person.omni_account);
  });
});
