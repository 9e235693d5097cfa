import { randomUUID } from 'node:crypto';
import type { Identity } from '../lib/omni';
import type { Queryable } from './pool';

export interface UserRow {
  user_id: string;
  client_id: string;
  omni_account: string;
  identity_type: string;
  identity_value: string;
  created_at: Date;
  last_login_at: Date;
  /** The verified email a Google login reported (migration 008); null otherwise. */
  email: string | null;
}

/** Creates the user on first login (user_id then stays stable) or bumps last_login_at. */
export async function upsertUserOnLogin(
  q: Queryable,
  u: { clientId: string; omniAccount: string; identity: Identity },
): Promise<{ userId: string; created: boolean }> {
  const r = await q.query<{ user_id: string; created: boolean }>(
    `INSERT INTO users (user_id, client_id, omni_account, identity_type, identity_value)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (omni_account) DO UPDATE SET last_login_at = now()
     RETURNING user_id, (xmax = 0) AS created`,
    [randomUUID(), u.clientId, u.omniAccount, u.identity.type, u.identity.value],
  );
  const row = r.rows[0];
  if (!row) throw new Error('user upsert returned no row');
  return { userId: row.user_id, created: row.created };
}

export async function findUserByOmni(q: Queryable, omniAccount: string): Promise<UserRow | undefined> {
  const r = await q.query<UserRow>('SELECT * FROM users WHERE omni_account = $1', [omniAccount]);
  return r.rows[0];
}

export interface WalletRow {
  wallet_index: number;
  address: string | null;
  role: 'main' | 'agent';
}

/** The most wallets /v1/session/me lists (slot numbers are 0-999, and add_wallet caps slots per account below that). */
export const MAX_LISTED_WALLETS = 1000;

/** The account's wallet slots, lowest index first, at most MAX_LISTED_WALLETS. */
export async function listWallets(q: Queryable, omniAccount: string): Promise<WalletRow[]> {
  const r = await q.query<WalletRow>('SELECT wallet_index, address, role FROM wallets WHERE omni_account = $1 ORDER BY wallet_index LIMIT $2', [
    omniAccount,
    MAX_LISTED_WALLETS,
  ]);
  return r.rows;
}

/** Records the account's signing wallet as its main wallet (slot 0 unless the address is already there). */
export async function recordMainWallet(q: Queryable, omniAccount: string, address: string): Promise<void> {
  await q.query(
    `INSERT INTO wallets (omni_account, wallet_index, address, role)
     SELECT $1, COALESCE((SELECT max(wallet_index) + 1 FROM wallets WHERE omni_account = $1), 0), $2, 'main'
     WHERE NOT EXISTS (SELECT 1 FROM wallets WHERE omni_account = $1 AND address = $2)`,
    [omniAccount, address],
  );
}

/** Records the verified email a Google login reported on its user (docs/google-login.md). */
export async function recordVerifiedEmail(q: Queryable, omniAccount: string, email: string): Promise<void> {
  await q.query('UPDATE users SET email = $2 WHERE omni_account = $1 AND email IS DISTINCT FROM $2', [omniAccount, email]);
}

/**
 * The address a grant of this account binds as its main wallet: the account's main EVM wallet
 * (lowest slot with role main and a known address), or undefined when it has none.
 */
export async function findMainAddress(q: Queryable, omniAccount: string): Promise<string | undefined> {
  const r = await q.query<{ address: string }>(
    `SELECT address FROM wallets WHERE omni_account = $1 AND role = 'main' AND address IS NOT NULL ORDER BY wallet_index LIMIT 1`,
    [omniAccount],
  );
  return r.rows[0]?.address;
}
