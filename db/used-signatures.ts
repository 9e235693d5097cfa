import type { Queryable } from './pool';

/**
 * used_signatures: the replay guard of one-time proofs (wallet-login signatures, grant
 * acceptances, mint intents). A proof is stored under its key (adapters/evm-signature.ts
 * `replayKey`, or a digest the caller derives) with what it was for and how long it could be
 * accepted. Every read and write of the table is here.
 *
 * Checks here: a proof is used once (the unique key decides between racing copies). A proof may
 * have several keys (`aliases`: the same signed statement reachable through another encoding of
 * its signature, e.g. the stateless wallet login's (address, message) key beside the signature
 * bytes'); they are stored together, and any one of them already stored means the proof was used.
 * Which keys a proof has, its signature and its time window are decided by whoever presents it.
 */

/** A one-time proof: its key, what it was for (`purpose`), and until when it could be accepted. */
export interface OneTimeProof {
  hash: string;
  /**
   * Further keys of the same proof, stored with `hash` under the same purpose and expiry. Pass them
   * only inside a transaction that rolls back on `false`: a refusal may have stored some of them.
   */
  aliases?: readonly string[];
  purpose: string;
  /** Keep the row at least as long as the proof could be accepted by its own time check. */
  expiresAt: Date;
}

/**
 * Stores the proof under all its keys; false when any of them is already stored (used before, or by
 * a racing copy that committed). One statement; the keys go in sorted order, so two transactions
 * that share keys wait on them in the same order and cannot deadlock each other here.
 */
export async function consumeProof(q: Queryable, p: OneTimeProof): Promise<boolean> {
  const keys = [...new Set([p.hash, ...(p.aliases ?? [])])].sort();
  const rows = keys.map((_, i) => `($${i + 3}, $1, $2)`).join(', ');
  const r = await q.query(`INSERT INTO used_signatures (signature_hash, purpose, expires_at) VALUES ${rows} ON CONFLICT (signature_hash) DO NOTHING`, [
    p.purpose,
    p.expiresAt,
    ...keys,
  ]);
  return (r.rowCount ?? 0) === keys.length;
}

/**
 * Whether a proof with this key (or any of these keys) has been used: a cheap early refusal
 * (consumeProof still decides between racing copies).
 */
export async function isProofUsed(q: Queryable, hash: string | readonly string[]): Promise<boolean> {
  const r = await q.query('SELECT 1 FROM used_signatures WHERE signature_hash = ANY($1::text[]) LIMIT 1', [typeof hash === 'string' ? [hash] : [...hash]]);
  return (r.rowCount ?? 0) > 0;
}

/** Deletes the proofs past their window (each would be refused by its own time check); answers how many. */
export async function purgeExpiredProofs(q: Queryable, now: Date): Promise<number> {
  const r = await q.query('DELETE FROM used_signatures WHERE expires_at < $1', [now]);
  return r.rowCount ?? 0;
}
