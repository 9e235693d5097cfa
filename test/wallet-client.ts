/**
 * Test-side wallet: a viem wallet client over a local account (signs like MetaMask's
 * personal_sign would; it needs no RPC), plus signature surgery for the bad-input tests.
 */
import { createWalletClient, custom, getAddress, type Hex } from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import type { Queryable } from '../db/pool';
import { requestIdDigest } from '../lib/digest';
import { WALLET_LOGIN_ID_PREFIX } from '../workflows/wallet-login.definitions';

export interface TestWallet {
  /** EIP-55 checksummed. */
  address: `0x${string}`;
  lower: string;
  sign(message: string): Promise<Hex>;
}

export function newWallet(privateKey: Hex = generatePrivateKey()): TestWallet {
  const account = privateKeyToAccount(privateKey);
  const client = createWalletClient({
    account,
    transport: custom({
      request: () => Promise.reject(new Error('tests have no RPC: local accounts sign locally')),
    }),
  });
  return { address: account.address, lower: account.address.toLowerCase(), sign: (message) => client.signMessage({ account, message }) };
}

const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

/** v as 0/1 instead of 27/28: the same signature. */
export function withRecoveryBitV(signature: Hex): Hex {
  const v = parseInt(signature.slice(130), 16);
  return `${signature.slice(0, 130)}${(v - 27).toString(16).padStart(2, '0')}` as Hex;
}

/** The malleated twin (r, n - s, v flipped): also verifies, with a high s. */
export function withHighS(signature: Hex): Hex {
  const s = BigInt(`0x${signature.slice(66, 130)}`);
  const v = parseInt(signature.slice(130), 16);
  const flipped = v === 27 ? 28 : 27;
  return `${signature.slice(0, 66)}${(SECP256K1_N - s).toString(16).padStart(64, '0')}${flipped.toString(16)}` as Hex;
}

export const nowSeconds = (): number => Math.floor(Date.now() / 1000);

/** An address in its EIP-55 spelling with one letter's case flipped: a typo, not another spelling of it. */
export function brokenChecksum(address: string): string {
  const checksummed = getAddress(address.toLowerCase());
  const i = checksummed.slice(2).search(/[a-fA-F]/) + 2;
  const c = checksummed.charAt(i);
  return `${checksummed.slice(0, i)}${c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase()}${checksummed.slice(i + 1)}`;
}

export interface RowCounts {
  users: number;
  wallets: number;
  sessions: number;
  used_signatures: number;
  audit_log: number;
}

/** Row counts of every table a login writes: equal before and after a refused request. */
export async function rowCounts(db: Queryable): Promise<RowCounts> {
  const r = await db.query<Record<keyof RowCounts, string>>(
    `SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM wallets) AS wallets, (SELECT count(*) FROM sessions) AS sessions,
            (SELECT count(*) FROM used_signatures) AS used_signatures, (SELECT count(*) FROM audit_log) AS audit_log`,
  );
  const row = r.rows[0];
  if (!row) throw new Error('no counts');
  return {
    users: Number(row.users),
    wallets: Number(row.wallets),
    sessions: Number(row.sessions),
    used_signatures: Number(row.used_signatures),
    audit_log: Number(row.audit_log),
  };
}

/** The workflow id of a wallet challenge, from its request id: wallet-login/<keyed digest of the request id>. */
export function walletWorkflowIdOf(stack: { secrets: { hmacSecret: Uint8Array } }, requestId: string): string {
  return WALLET_LOGIN_ID_PREFIX + requestIdDigest(stack.secrets.hmacSecret, 'wallet-login', requestId);
}
