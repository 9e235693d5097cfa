import type { Queryable } from './pool';

/** Whether a one-time proof (a signature's replay key) was already consumed by a login or grant. */
export async function isProofUsed(q: Queryable, signatureHash: string): Promise<boolean> {
  const r = await q.query('SELECT 1 FROM used_signatures WHERE signature_hash = $1', [signatureHash]);
  return (r.rowCount ?? 0) > 0;
}
