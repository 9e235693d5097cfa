import type { Queryable } from './pool';

/** Data access for the Heima TEE callbacks (post_heima_login, add_wallet). */

/** Records one accepted post_heima_login; the same token digest twice is one row. Returns whether it was new. */
export async function recordTeeLogin(
  q: Queryable,
  l: { tokenDigest: string; omniAccount: string; clientId: string; userId: string; clientAuth: unknown },
): Promise<boolean> {
  const r = await q.query(
    `INSERT INTO tee_logins (token_digest, omni_account, client_id, user_id, client_auth)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (token_digest) DO NOTHING`,
    [l.tokenDigest, l.omniAccount, l.clientId, l.userId, l.clientAuth === null || l.clientAuth === undefined ? null : JSON.stringify(l.clientAuth)],
  );
  return (r.rowCount ?? 0) > 0;
}

/** Role of a wallet slot the TEE adds: slot 0 is the account's main wallet, later slots are agent wallets. */
export const walletRoleOfSlot = (walletIndex: number): 'main' | 'agent' => (walletIndex === 0 ? 'main' : 'agent');

/**
 * Records a wallet slot for the account, without an address (the TEE sends none). With
 * `walletIndex` that slot (the same index twice is one slot); without it the lowest free slot.
 * Idempotent per `requestKey`: a retry answers the slot the first attempt took. Must run inside
 * a transaction (takes a per-account transaction lock so concurrent adds cannot pick the same slot).
 */
export async function recordWalletSlot(
  tx: Queryable,
  w: { requestKey: string; omniAccount: string; walletIndex?: number },
): Promise<{ walletIndex: number; created: boolean }> {
  await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended('wallets:' || $1, 0))`, [w.omniAccount]);
  const seen = await tx.query<{ wallet_index: number }>('SELECT wallet_index FROM tee_wallet_requests WHERE request_key = $1', [w.requestKey]);
  if (seen.rows[0]) return { walletIndex: seen.rows[0].wallet_index, created: false };

  let walletIndex = w.walletIndex;
  if (walletIndex === undefined) {
    const free = await tx.query<{ i: number }>(
      `SELECT s.i FROM generate_series(0, (SELECT count(*)::int FROM wallets WHERE omni_account = $1)) AS s(i)
        WHERE NOT EXISTS (SELECT 1 FROM wallets WHERE omni_account = $1 AND wallet_index = s.i)
        ORDER BY s.i LIMIT 1`,
      [w.omniAccount],
    );
    walletIndex = free.rows[0]?.i ?? 0;
  }
  const inserted = await tx.query(
    `INSERT INTO wallets (omni_account, wallet_index, address, role) VALUES ($1, $2, NULL, $3)
     ON CONFLICT (omni_account, wallet_index) DO NOTHING`,
    [w.omniAccount, walletIndex, walletRoleOfSlot(walletIndex)],
  );
  await tx.query('INSERT INTO tee_wallet_requests (request_key, omni_account, wallet_index) VALUES ($1, $2, $3)', [w.requestKey, w.omniAccount, walletIndex]);
  return { walletIndex, created: (inserted.rowCount ?? 0) > 0 };
}
