import type { Queryable } from './pool';

/**
 * Data access for the Heima TEE callbacks (post_heima_login, add_wallet). Checks here: the one
 * that decides between repeats — a token digest or a wallet slot is recorded once (the unique
 * keys, ON CONFLICT); the route's and the workflow's in-memory de-duplication only save work.
 */

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

/** Slot numbers an account may use: 0 to MAX_WALLET_INDEX. */
export const MAX_WALLET_INDEX = 999;

/** What an add_wallet request asked for, as tee_wallet_requests.requested stores it. */
export const requestedSlot = (walletIndex: number | undefined): string => (walletIndex === undefined ? 'next' : String(walletIndex));

export type WalletSlotOutcome =
  | { outcome: 'recorded'; walletIndex: number; created: boolean }
  /** The Idempotency-Key was used before for another request (another wallet_index, or none). */
  | { outcome: 'key_reused'; requested: string }
  /** A new slot would exceed the account's cap. */
  | { outcome: 'full'; slots: number };

/** How an add_wallet request reads in an error message. */
export const walletRequestText = (requested: string): string => (requested === 'next' ? 'the lowest free slot' : `wallet_index ${requested}`);

/** The request recorded under this key, if any (`requested` NULL: written before requests were kept). */
export async function findWalletRequest(q: Queryable, requestKey: string): Promise<{ requested: string | null; wallet_index: number } | undefined> {
  const r = await q.query<{ requested: string | null; wallet_index: number }>(
    'SELECT requested, wallet_index FROM tee_wallet_requests WHERE request_key = $1',
    [requestKey],
  );
  return r.rows[0];
}

/** How many wallet slots the account holds, and whether `walletIndex` (when given) is one of them. */
export async function countWalletSlots(q: Queryable, omniAccount: string, walletIndex?: number): Promise<{ slots: number; hasIndex: boolean }> {
  const r = await q.query<{ slots: number; has_index: boolean }>(
    'SELECT count(*)::int AS slots, coalesce(bool_or(wallet_index = $2), false) AS has_index FROM wallets WHERE omni_account = $1',
    [omniAccount, walletIndex ?? -1],
  );
  return { slots: r.rows[0]?.slots ?? 0, hasIndex: r.rows[0]?.has_index ?? false };
}

/**
 * Records a wallet slot for the account, without an address (the TEE sends none). With
 * `walletIndex` that slot (the same index twice is one slot); without it the lowest free slot.
 * Idempotent per `requestKey`: a retry answers the slot the first attempt took, and a request
 * under the same key that asks for another slot is refused (`key_reused`). A new slot beyond
 * `maxSlots` is refused (`full`). Must run inside a transaction (takes a per-account transaction
 * lock so concurrent adds cannot pick the same slot or pass the cap together).
 */
export async function recordWalletSlot(
  tx: Queryable,
  w: { requestKey: string; omniAccount: string; walletIndex?: number; maxSlots: number },
): Promise<WalletSlotOutcome> {
  await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended('wallets:' || $1, 0))`, [w.omniAccount]);
  const seen = await tx.query<{ wallet_index: number; requested: string | null }>(
    'SELECT wallet_index, requested FROM tee_wallet_requests WHERE request_key = $1',
    [w.requestKey],
  );
  const earlier = seen.rows[0];
  if (earlier) {
    if (earlier.requested !== null && earlier.requested !== requestedSlot(w.walletIndex)) return { outcome: 'key_reused', requested: earlier.requested };
    return { outcome: 'recorded', walletIndex: earlier.wallet_index, created: false };
  }

  const { slots, hasIndex } = await countWalletSlots(tx, w.omniAccount, w.walletIndex);
  if (!hasIndex && slots >= w.maxSlots) return { outcome: 'full', slots };
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
  await tx.query('INSERT INTO tee_wallet_requests (request_key, omni_account, wallet_index, requested) VALUES ($1, $2, $3, $4)', [
    w.requestKey,
    w.omniAccount,
    walletIndex,
    requestedSlot(w.walletIndex),
  ]);
  return { outcome: 'recorded', walletIndex, created: (inserted.rowCount ?? 0) > 0 };
}
