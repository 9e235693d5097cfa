/**
 * Drives the email-code login over HTTP the way a client does, for the email-login tests and the
 * benchmark: ask for a code, read it from the captured mail (GET /_dev/mail), exchange it.
 */
import assert from 'node:assert/strict';
import type { Client, WithStartWorkflowOperation } from '@temporalio/client';
import type { Workflow } from '@temporalio/common';
import type { Db } from '../db/pool';
import { requestIdDigest } from '../lib/digest';
import { EMAIL_LOGIN_ID_PREFIX } from '../workflows/email-login.definitions';
import type { TestStack } from './harness';

export interface DevMail {
  to: string;
  subject: string;
  text: string;
  received_at: string;
}

export interface LoginSessionBody {
  token: string;
  token_type: string;
  expires_at: number;
  omni_account: string;
  user_id: string;
  identity: { type: string; value: string };
}

/** A unique address per call, mixed case so lower-casing is exercised. */
let serial = 0;
export function uniqueEmail(label: string): string {
  serial += 1;
  return `${label}.${process.pid}.${Date.now()}.${serial}@Example.COM`;
}

/** The 6-digit code in a login mail's text. */
export function codeFromMail(text: string): string {
  const m = /\b(\d{6})\b/.exec(text);
  assert.ok(m?.[1], 'no 6-digit code in the mail');
  return m[1];
}

/** Mail captured for `address`, newest first, through the dev route. */
export async function devMail(stack: TestStack, address: string): Promise<DevMail[]> {
  const res = await stack.request('GET', `/_dev/mail?to=${encodeURIComponent(address)}`);
  assert.equal(res.status, 200, res.text);
  return res.body as DevMail[];
}

export interface CodeDispatchedBody {
  request_id: string;
  expires_at: number;
  resend_after: number;
}

/** POST /v1/session/email_code (a resend on that request when `requestId` is given) and expect 202. */
export async function requestCode(stack: TestStack, email: string, requestId?: string): Promise<CodeDispatchedBody> {
  const res = await stack.request('POST', '/v1/session/email_code', { body: requestId === undefined ? { email } : { email, request_id: requestId } });
  assert.equal(res.status, 202, res.text);
  return res.body as CodeDispatchedBody;
}

/** The code of the newest mail to `email` (the 202 answers after the mail was accepted). */
export async function latestCode(stack: TestStack, email: string): Promise<string> {
  const [newest] = await devMail(stack, email.toLowerCase());
  assert.ok(newest, `no mail to ${email}`);
  return codeFromMail(newest.text);
}

export function submitCode(stack: TestStack, request_id: string, code: string): ReturnType<TestStack['request']> {
  return stack.request('POST', '/v1/session/email_login', { body: { request_id, code } });
}

/** Rows of the tables a login writes, to prove what a request did or did not change. */
export async function rowCounts(db: Db): Promise<{ users: number; sessions: number; audit: number }> {
  const r = await db.query<{ users: string; sessions: string; audit: string }>(
    'SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM sessions) AS sessions, (SELECT count(*) FROM audit_log) AS audit',
  );
  const row = r.rows[0];
  assert.ok(row);
  return { users: Number(row.users), sessions: Number(row.sessions), audit: Number(row.audit) };
}

/** The workflow id of an email login, from its request id: email-login/<keyed digest of the request id>. */
export function workflowIdOf(stack: Pick<TestStack, 'secrets'>, requestId: string): string {
  return EMAIL_LOGIN_ID_PREFIX + requestIdDigest(stack.secrets.hmacSecret, 'email-login', requestId);
}

/** The other 6-digit code: a guaranteed wrong guess. */
export function wrongCode(code: string): string {
  return code === '000000' ? '000001' : '000000';
}

/**
 * Records the workflow ids of the email flows the API starts (it shares the test's Temporal
 * client), for a test that needs the flow of a request that answered no request_id (a 503).
 */
export function watchFlowStarts(client: Client): { workflowIds: string[]; restore(): void } {
  const wf = client.workflow as unknown as Record<string, (...args: unknown[]) => unknown>;
  const original = wf.executeUpdateWithStart;
  assert.equal(typeof original, 'function');
  const workflowIds: string[] = [];
  wf.executeUpdateWithStart = function (this: unknown, ...args: unknown[]) {
    const op = (args[1] as { startWorkflowOperation?: WithStartWorkflowOperation<Workflow> } | undefined)?.startWorkflowOperation;
    if (op) workflowIds.push(op.options.workflowId);
    return (original as (...a: unknown[]) => unknown).apply(this, args);
  };
  return { workflowIds, restore: () => void delete wf.executeUpdateWithStart };
}
