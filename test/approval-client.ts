/**
 * Client side of the approval tests: a holder whose wallet key the test holds (it signs EIP-712
 * typed data as eth_signTypedData_v4 would), a grant that asks for approval, the agent's mint and
 * poll, the holder's list and decision, over HTTP.
 */
import assert from 'node:assert/strict';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import type { Hex } from 'viem';
import { bindAgent } from './grant-client';
import type { TestStack } from './harness';
import { emailLogin, walletLogin, type Session, type WalletSession } from './mint-client';
import { newWallet } from './wallet-client';

export interface TypedData {
  domain: Record<string, unknown>;
  types: Record<string, unknown>;
  primaryType: string;
  message: Record<string, unknown>;
}

export interface ApprovalView {
  approval_id: string;
  status: string;
  grant_id: string;
  agent_address: string;
  main_address: string;
  target: string;
  params: Record<string, string | number>;
  scope: Record<string, unknown>;
  reason: string | null;
  request_hash: string;
  requested_at: number;
  expires_at: number;
  decided_at: number | null;
  sign?: { approve: TypedData; deny: TypedData };
}

export interface Pending {
  approval_id: string;
  status: 'pending' | 'slow_down';
  expires_at: number;
  interval: number;
}

/** A wallet session whose key signs typed data too. */
export interface Holder extends WalletSession {
  signTypedData(data: TypedData): Promise<Hex>;
}

export async function holderLogin(stack: TestStack, privateKey: Hex = generatePrivateKey()): Promise<Holder> {
  const account = privateKeyToAccount(privateKey);
  const session = await walletLogin(stack, newWallet(privateKey));
  return { ...session, signTypedData: (data) => account.signTypedData(data) };
}

/** A grant of `holder` to `agent` that asks for approval (`approval` merged over {mode: always}), accepted by the agent. */
export function bindAgentWithApproval(stack: TestStack, holder: WalletSession, agent: WalletSession, approval: Record<string, unknown> = {}): Promise<string> {
  return bindAgent(stack, holder.token, agent.wallet, { approval: { mode: 'always', ...approval } });
}

/** The agent asks for an OIDC JWT; asserts 202 and returns the pending answer. */
export async function requestMint(stack: TestStack, agent: WalletSession, body: Record<string, unknown> = {}, path = '/v1/mint-oidc-jwt'): Promise<Pending> {
  const res = await stack.request('POST', path, { token: agent.token, body });
  assert.equal(res.status, 202, res.text);
  return res.body as Pending;
}

export const poll = (stack: TestStack, token: string, id: string) => stack.request('GET', `/v1/approvals/${id}`, { token });

export const decide = (stack: TestStack, token: string, id: string, body: Record<string, unknown>) =>
  stack.request('POST', `/v1/approvals/${id}/decision`, { token, body });

/** The holder's view of one request (asserts 200). */
export async function viewOf(stack: TestStack, holder: WalletSession, id: string): Promise<ApprovalView> {
  const res = await poll(stack, holder.token, id);
  assert.equal(res.status, 200, res.text);
  return res.body as ApprovalView;
}

/** The holder signs the decision's typed data as the broker shows it, and sends it. */
export async function signedDecision(stack: TestStack, holder: Holder, id: string, decision: 'approve' | 'deny') {
  const view = await viewOf(stack, holder, id);
  assert.ok(view.sign, `request ${id} is ${view.status}: nothing to sign`);
  const signature = await holder.signTypedData(view.sign[decision]);
  return { signature, send: () => decide(stack, holder.token, id, { decision, signature }) };
}

/** The approvals row as stored (status, decision time, receipt, hand-out). */
export async function approvalRow(stack: TestStack, id: string) {
  const r = await stack.db.query<{
    status: string;
    decided_at: Date | null;
    receipt: Record<string, unknown> | null;
    collected_at: Date | null;
    notified_at: Date | null;
  }>('SELECT status, decided_at, receipt, collected_at, notified_at FROM approvals WHERE approval_id = $1', [id]);
  return r.rows[0];
}

export async function auditEvents(stack: TestStack, event: string, approvalId: string): Promise<{ outcome: string; details: Record<string, unknown> }[]> {
  const r = await stack.db.query<{ outcome: string; details: Record<string, unknown> }>(
    `SELECT outcome, details FROM audit_log WHERE event = $1 AND details->>'approval_id' = $2 ORDER BY seq`,
    [event, approvalId],
  );
  return r.rows;
}

/** An email-login account that holds grants: its main wallet recorded as the TEE's add_wallet callback records one. */
export async function emailHolder(stack: TestStack, email?: string): Promise<Session & { email: string }> {
  const person = await emailLogin(stack, email);
  await stack.db.query(`INSERT INTO wallets (omni_account, wallet_index, address, role) VALUES ($1, 0, $2, 'main')`, [person.omni_account, newWallet().lower]);
  return person;
}

/**
 * Every login of the account so far happened `seconds` ago: its sessions' creation and the start of
 * each refresh family it claimed (what a decision without a wallet signature counts from).
 */
export async function ageLogins(stack: TestStack, omniAccount: string, seconds: number): Promise<void> {
  await stack.db.query(`UPDATE sessions SET created_at = now() - make_interval(secs => $2) WHERE omni_account = $1`, [omniAccount, seconds]);
  await stack.db.query(`UPDATE refresh_tokens SET family_started_at = now() - make_interval(secs => $2) WHERE omni_account = $1`, [omniAccount, seconds]);
}

/**
 * The audit rows but the expiry rows of other requests: another request's timer (one opened by a
 * suite's setup, say) ends it whenever it is due, whatever the request under test does.
 */
async function auditRowsBut(stack: TestStack, id: string): Promise<number> {
  const r = await stack.db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM audit_log WHERE NOT (event = 'approval.expire' AND details ->> 'approval_id' IS DISTINCT FROM $1)`,
    [id],
  );
  return r.rows[0]?.n ?? 0;
}

/** The request's row and the audit log as they are: a refusal must leave both as they were. */
export async function unchanged(stack: TestStack, id: string, body: () => Promise<void>): Promise<void> {
  // notified_at is the flow's own record of its notice, written when the mail service answers,
  // whatever the request under test does.
  const decisionState = async () => {
    const { notified_at: _notice, ...rest } = (await approvalRow(stack, id)) ?? { notified_at: null };
    return rest;
  };
  const [row, audit] = await Promise.all([decisionState(), auditRowsBut(stack, id)]);
  await body();
  assert.deepEqual(await decisionState(), row, 'the approvals row changed');
  assert.equal(await auditRowsBut(stack, id), audit, 'an audit row was written');
}
