/** Test-side helpers of the device authorization grant (docs/device-flow.md). */
import assert from 'node:assert/strict';
import type { Queryable } from '../db/pool';
import { buildStatelessWalletMessage } from '../lib/wallet-message';
import { DEVICE_CODE_GRANT_TYPE, USER_CODE_ALPHABET } from '../lib/device-code';
import { DEVICE_AUTHORIZATION_ID_PREFIX } from '../workflows/device-authorization.definitions';
import type { TestStack } from './harness';
import { newWallet, nowSeconds } from './wallet-client';

export interface DeviceCodeBody {
  device_code: string;
  user_code: string;
  verification_uri: string;
  verification_uri_complete: string;
  expires_in: number;
  interval: number;
}

export async function deviceCode(stack: TestStack, body: Record<string, unknown> = {}): Promise<DeviceCodeBody> {
  const res = await stack.request('POST', '/v1/device/code', { body });
  assert.equal(res.status, 200, res.text);
  return res.body as DeviceCodeBody;
}

export function pollToken(stack: TestStack, device_code: string): ReturnType<TestStack['request']> {
  return stack.request('POST', '/v1/device/token', { body: { device_code, grant_type: DEVICE_CODE_GRANT_TYPE } });
}

/** The RFC 8628 §3.5 error code of a token answer (asserting it is a 400). */
export async function pollError(stack: TestStack, device_code: string): Promise<string> {
  const res = await pollToken(stack, device_code);
  assert.equal(res.status, 400, res.text);
  return (res.body as { error: string }).error;
}

export function verify(
  stack: TestStack,
  token: string | undefined,
  user_code: string,
  action: 'approve' | 'deny' = 'approve',
): ReturnType<TestStack['request']> {
  return stack.request('POST', '/v1/device/verify', { body: { user_code, action }, ...(token ? { token } : {}) });
}

export function lookUp(stack: TestStack, token: string | undefined, user_code: string): ReturnType<TestStack['request']> {
  return stack.request('GET', `/v1/device/verify?user_code=${encodeURIComponent(user_code)}`, token ? { token } : {});
}

/** A person signed in (stateless wallet login): their bearer and account. */
export async function signedIn(stack: TestStack): Promise<{ token: string; omni_account: string }> {
  const w = newWallet();
  const t = nowSeconds();
  const res = await stack.request('POST', '/v1/session/wallet_login', {
    body: { address: w.address, signature: await w.sign(buildStatelessWalletMessage(w.lower, t)), timestamp: t },
  });
  assert.equal(res.status, 200, res.text);
  return res.body as { token: string; omni_account: string };
}

/** A well-formed user code no request holds (a different one from `not`). */
export function otherUserCode(not: string): string {
  for (;;) {
    let c = '';
    for (let i = 0; i < 8; i++) c += USER_CODE_ALPHABET[Math.floor(Math.random() * USER_CODE_ALPHABET.length)];
    const shown = `${c.slice(0, 4)}-${c.slice(4)}`;
    if (shown !== not) return shown;
  }
}

/** What a device login records: device sessions and login.device audit rows, all or one account's. */
export async function deviceRows(db: Queryable, omniAccount?: string): Promise<{ sessions: number; audit: number }> {
  const r = await db.query<{ sessions: string; audit: string }>(
    `SELECT (SELECT count(*) FROM sessions WHERE method = 'device' AND ($1::text IS NULL OR omni_account = $1)) AS sessions,
            (SELECT count(*) FROM audit_log WHERE event = 'login.device' AND ($1::text IS NULL OR omni_account = $1)) AS audit`,
    [omniAccount ?? null],
  );
  return { sessions: Number(r.rows[0]?.sessions), audit: Number(r.rows[0]?.audit) };
}

/** A device login approved and collected, for the recorded histories (test/record-histories.ts) that the replay test replays. */
export async function recordDeviceApproved(stack: TestStack): Promise<{ workflowType: string; name: string; workflowId: string; expectUpdates: string[] }> {
  const person = await signedIn(stack);
  const dc = await deviceCode(stack, { client_id: 'agentkeys-cli' });
  assert.equal(await pollError(stack, dc.device_code), 'authorization_pending');
  const approved = await verify(stack, person.token, dc.user_code);
  assert.equal(approved.status, 200, approved.text);
  const got = await pollToken(stack, dc.device_code);
  assert.equal(got.status, 200, got.text);
  return {
    workflowType: 'deviceAuthorizationWorkflow',
    name: 'approved',
    workflowId: DEVICE_AUTHORIZATION_ID_PREFIX + (dc.device_code.split('.')[0] ?? ''),
    expectUpdates: ['registerDeviceCode', 'deviceTokenPoll', 'deviceDecision', 'deviceTokenPoll'],
  };
}
