/**
 * Client side of the mint tests and the benchmark: log in over HTTP (wallet signature or email
 * code), mint, and read the audit rows a mint wrote.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { buildStatelessWalletMessage } from '../lib/wallet-message';
import { latestCode, requestCode, submitCode, uniqueEmail } from './email-login-client';
import type { TestStack } from './harness';
import { newWallet, nowSeconds, type TestWallet } from './wallet-client';

export interface Session {
  token: string;
  omni_account: string;
}

export interface WalletSession extends Session {
  wallet: TestWallet;
}

/** The earliest timestamp each wallet has signed in this process. */
const earliestSigned = new Map<string, number>();

/**
 * A wallet login with the stateless EIP-191 message (a new wallet unless one is given). Each login
 * of a wallet signs an earlier timestamp than the one before, so two logins of one wallet never
 * sign the same message (the broker accepts each signature once), however fast they follow.
 */
export async function walletLogin(stack: TestStack, wallet: TestWallet = newWallet()): Promise<WalletSession> {
  const timestamp = Math.min(nowSeconds() - 1, (earliestSigned.get(wallet.lower) ?? Infinity) - 1);
  earliestSigned.set(wallet.lower, timestamp);
  const signature = await wallet.sign(buildStatelessWalletMessage(wallet.lower, timestamp));
  const res = await stack.request('POST', '/v1/session/wallet_login', { body: { address: wallet.address, signature, timestamp } });
  assert.equal(res.status, 200, res.text);
  const body = res.body as Session;
  return { token: body.token, omni_account: body.omni_account, wallet };
}

/** An email-code login of `email` (default a fresh address): an account without any EVM wallet. */
export async function emailLogin(stack: TestStack, email: string = uniqueEmail('mint')): Promise<Session & { email: string }> {
  const { request_id } = await requestCode(stack, email);
  const res = await submitCode(stack, request_id, await latestCode(stack, email));
  assert.equal(res.status, 200, res.text);
  return { ...(res.body as Session), email };
}

/**
 * AgentKeys' actor identifier for a login identity, computed here from its definition rather than
 * through lib/actor-omni.ts: SHA256(client id ‖ AgentKeys identity type ‖ value) as lower-case hex
 * (litentry/agent-terrier `crates/agentkeys-broker-server/src/identity/omni_account.rs`,
 * `derive_with_client_id`); a wallet's value is its lower-case 0x address text.
 */
export function agentKeysActorOf(type: 'evm' | 'email' | 'oauth2_google', value: string, clientId = 'agentkeys'): string {
  return createHash('sha256').update(`${clientId}${type}${value}`, 'utf8').digest('hex');
}

export interface OidcMintBody {
  jwt: string;
  wallet: string;
  expiration: number;
}

export interface AwsMintBody {
  access_key_id: string;
  secret_access_key: string;
  session_token: string;
  expiration: number;
  wallet: string;
}

export async function mintOidc(stack: TestStack, token: string, body?: unknown): Promise<OidcMintBody> {
  const res = await stack.request('POST', '/v1/mint-oidc-jwt', { token, body });
  assert.equal(res.status, 200, res.text);
  return res.body as OidcMintBody;
}

export async function mintAws(stack: TestStack, token: string, body?: unknown): Promise<AwsMintBody> {
  const res = await stack.request('POST', '/v1/mint-aws-creds', { token, body });
  assert.equal(res.status, 200, res.text);
  return res.body as AwsMintBody;
}

export interface AuditRowView {
  seq: string;
  event: string;
  outcome: string;
  omni_account: string | null;
  request_id: string | null;
  details: Record<string, unknown>;
}

/** Audit rows of one account, oldest first, straight from the table. */
export async function auditRowsOf(stack: TestStack, omniAccount: string): Promise<AuditRowView[]> {
  const r = await stack.db.query<AuditRowView>(
    'SELECT seq::text AS seq, event, outcome, omni_account, request_id, details FROM audit_log WHERE omni_account = $1 ORDER BY audit_log.seq',
    [omniAccount],
  );
  return r.rows;
}

/** The newest mint rows (intent + outcome) of one account. */
export async function lastMintRows(stack: TestStack, omniAccount: string): Promise<AuditRowView[]> {
  const rows = (await auditRowsOf(stack, omniAccount)).filter((r) => r.event.startsWith('mint.'));
  const last = rows[rows.length - 1];
  assert.ok(last, 'no mint audit rows');
  return rows.filter((r) => r.request_id === last.request_id);
}

export async function auditCount(stack: TestStack): Promise<number> {
  const r = await stack.db.query<{ n: string }>('SELECT count(*) AS n FROM audit_log');
  return Number(r.rows[0]?.n ?? 0);
}
