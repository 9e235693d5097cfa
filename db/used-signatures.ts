import type { Queryable } from './pool';

/**
 * used_signatures: the replay guard of one-time proofs (wallet-login signatures, grant
 * acceptances, mint intents). A proof is stored under its key (adapters/evm-signature.ts
 * `replayKey`, or a digest the caller derives) with what it was for and how long it could be
 * accepted. Every read and write of the table is here.
 *
 * Checks here: a proof is used once (the unique key decides between racing copies). The
 * signature and time window are checked by whoever presents the proof.
 */

/** A one-time proof: its key, what it was for (`purpose`), and until when it could be accepted. */
export interface OneTimeProof {
  hash: string;
  purpose: string;
  /** Keep the row at least as long as the proof could be accepted by its own time check. */
  expiresAt: Date;
}

/** Stores the proof; false when it is already stored (used before, or by a racing copy that committed). */
export async function consumeProof(q: Queryable, p: OneTimeProof): Promise<boolean> {
  const r = await q.query('INSERT INTO used_signatures (signature_hash, purpose, expires_at) VALUES ($1, $2, $3) ON CONFLICT (signature_hash) DO NOTHING', [
    p.hash,
    p.purpose,
    p.expiresAt,
  ]);
  return (r.rowCount ?? 0) > 0;
}

/** Whether a proof with this key has been used: a cheap early refusal (consumeProof still decides between racing copies). */
export async function isProofUsed(q: Queryable, hash: string): Promise<boolean> {
  const r = await q.query('SELECT 1 FROM used_signatures WHERE signature_hash = $1', [hash]);
  return (r.rowCount ?? 0) > 0;
}

/** Deletes the proofs past their window (each would be refused by its own time check); answers how many. */
export async function purgeExpiredProofs(q: Queryable, now: Date): Promise<number> {
  const r = await q.query('DELETE FROM used_signatures WHERE expires_at < $1', [now]);
  return r.rowCount ?? 0;
}
