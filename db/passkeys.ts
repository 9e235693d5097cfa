import type { Queryable } from './pool';

/**
 * passkeys: the WebAuthn credentials of each account (db/migrations/016_passkeys.sql). Every read
 * and write of the table is here.
 *
 * Checks here: a credential id belongs to one account (its primary key decides between racing
 * registrations); a sign-in moves the counter forward or keeps both at 0 (a compare-and-set, so two
 * racing uses of one counter value cannot both pass). The signature, origin, rp id and flags are
 * checked before (activities/passkey-ceremony.ts); whether a removal would leave an account
 * without a way to sign in, and whether a registration would pass the cap on passkeys per account,
 * by services/passkeys.ts under lockPasskeysOfAccount.
 */

export interface PasskeyRow {
  credential_id: string;
  omni_account: string;
  user_handle: string;
  public_key: Buffer;
  counter: string;
  backup_eligible: boolean;
  backed_up: boolean;
  transports: string[];
  aaguid: string;
  name: string;
  last_challenge: string;
  created_at: Date;
  last_used_at: Date | null;
}

export interface NewPasskey {
  credentialId: string;
  omniAccount: string;
  userHandle: string;
  publicKey: Buffer;
  counter: number;
  backupEligible: boolean;
  backedUp: boolean;
  transports: string[];
  aaguid: string;
  name: string;
  /** sha256 of the registration's challenge (a retried insert of the same ceremony is recognised). */
  challengeHash: string;
}

/** Inserts the credential; false when its id is already stored (under any account). */
export async function insertPasskey(q: Queryable, p: NewPasskey): Promise<boolean> {
  const r = await q.query(
    `INSERT INTO passkeys (credential_id, omni_account, user_handle, public_key, counter, backup_eligible, backed_up, transports, aaguid, name, last_challenge)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (credential_id) DO NOTHING`,
    [p.credentialId, p.omniAccount, p.userHandle, p.publicKey, p.counter, p.backupEligible, p.backedUp, p.transports, p.aaguid, p.name, p.challengeHash],
  );
  return (r.rowCount ?? 0) > 0;
}

export async function findPasskey(q: Queryable, credentialId: string): Promise<PasskeyRow | undefined> {
  const r = await q.query<PasskeyRow>('SELECT * FROM passkeys WHERE credential_id = $1', [credentialId]);
  return r.rows[0];
}

/** The account's passkeys, oldest first, at most `limit` (the caller's cap: services/passkeys.ts). */
export async function listPasskeys(q: Queryable, omniAccount: string, limit: number): Promise<PasskeyRow[]> {
  const r = await q.query<PasskeyRow>('SELECT * FROM passkeys WHERE omni_account = $1 ORDER BY created_at, credential_id LIMIT $2', [omniAccount, limit]);
  return r.rows;
}

/** How many passkeys the account holds. */
export async function countPasskeys(q: Queryable, omniAccount: string): Promise<number> {
  const r = await q.query<{ n: number }>('SELECT count(*)::int AS n FROM passkeys WHERE omni_account = $1', [omniAccount]);
  return r.rows[0]?.n ?? 0;
}

/** The WebAuthn user handle the account's passkeys carry (its first one's), if it has any. */
export async function userHandleOfAccount(q: Queryable, omniAccount: string): Promise<string | undefined> {
  const r = await q.query<{ user_handle: string }>('SELECT user_handle FROM passkeys WHERE omni_account = $1 ORDER BY created_at LIMIT 1', [omniAccount]);
  return r.rows[0]?.user_handle;
}

/**
 * Records a sign-in's counter and backup state: only when the counter moves forward, or stays 0 on
 * both sides (an authenticator without a counter), or when this very ceremony already wrote it (a
 * retry). False when none holds: the counter went backwards or a racing sign-in took this value.
 */
export async function recordPasskeyUse(q: Queryable, u: { credentialId: string; counter: number; backedUp: boolean; challengeHash: string }): Promise<boolean> {
  const r = await q.query(
    `UPDATE passkeys SET counter = $2, backed_up = $3, last_challenge = $4, last_used_at = now()
      WHERE credential_id = $1 AND (counter < $2 OR (counter = 0 AND $2 = 0) OR last_challenge = $4)`,
    [u.credentialId, u.counter, u.backedUp, u.challengeHash],
  );
  return (r.rowCount ?? 0) > 0;
}

/**
 * Takes the account's passkey lock until the transaction ends (a transaction-scoped advisory lock
 * keyed on the account), then locks every passkey row of the account and answers their credential
 * ids. Two removals, two registrations, or one of each, of the same account so take turns: the
 * second waits for the lock, and only then reads, so it sees the rows the first added or left and
 * a count taken here cannot be stale when the insert or delete follows. Row locks alone would not
 * do for a registration: a row another transaction is inserting is not there to be locked, and a
 * read that waited on a locked row still misses rows committed while it waited. The advisory lock
 * comes first and the rows are locked in credential id order, one order for every caller, so two
 * such transactions cannot wait on each other. Must run inside a transaction.
 */
export async function lockPasskeysOfAccount(q: Queryable, omniAccount: string): Promise<string[]> {
  await q.query(`SELECT pg_advisory_xact_lock(hashtextextended('passkeys:' || $1, 0))`, [omniAccount]);
  const r = await q.query<{ credential_id: string }>('SELECT credential_id FROM passkeys WHERE omni_account = $1 ORDER BY credential_id FOR UPDATE', [
    omniAccount,
  ]);
  return r.rows.map((row) => row.credential_id);
}

/** Deletes one of the account's passkeys; false when the account has no passkey with this id. */
export async function deletePasskey(q: Queryable, omniAccount: string, credentialId: string): Promise<boolean> {
  const r = await q.query('DELETE FROM passkeys WHERE omni_account = $1 AND credential_id = $2', [omniAccount, credentialId]);
  return (r.rowCount ?? 0) > 0;
}
