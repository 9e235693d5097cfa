/**
 * email_sends: the mailbox send budget's ledger. Checks here: reserveEmailSend decides the budget
 * under a per-mailbox lock (the decision itself is lib/email-send-budget.ts); peekEmailSend is a
 * read-only early refusal.
 */
import { decideEmailSend, EMAIL_SEND_WINDOW_MS, type EmailSendDecision, type EmailSendPolicy, type EmailSendRecord } from '../lib/email-send-budget';
import { withTransaction, type Db, type Queryable } from './pool';

/** The mailbox's sends of the last hour: when (ms since the epoch) and for which requester network. */
export async function recentEmailSends(q: Queryable, addressKey: string, nowMs: number): Promise<EmailSendRecord[]> {
  const r = await q.query<{ sent_ms: string; network_key: string | null }>(
    'SELECT (extract(epoch FROM sent_at) * 1000)::bigint::text AS sent_ms, network_key FROM email_sends WHERE address_key = $1 AND sent_at > $2',
    [addressKey, new Date(nowMs - EMAIL_SEND_WINDOW_MS)],
  );
  return r.rows.map((row) => ({ atMs: Number(row.sent_ms), network: row.network_key }));
}

/** Read-only: would one more code to this mailbox, for a requester on this network, be refused now? (The reservation decides.) */
export async function peekEmailSend(
  q: Queryable,
  r: { addressKey: string; networkKey: string | null; nowMs: number; policy: EmailSendPolicy },
): Promise<EmailSendDecision> {
  return decideEmailSend(await recentEmailSends(q, r.addressKey, r.nowMs), r.networkKey, r.nowMs, r.policy);
}

/** A reservation, with the time the requester's cooldown now counts from; or why there is none. */
export type EmailSendReservation = { ok: true; reservedAtMs: number } | Extract<EmailSendDecision, { ok: false }>;

/**
 * Reserves one send to the mailbox for a requester network, or says why not. Concurrent
 * reservations for one mailbox are serialised by a transaction-scoped advisory lock on its key, so
 * two flows cannot both take the last slot. Idempotent per dispatch: a retry of a reserved
 * dispatch is `ok` and counts once.
 */
export async function reserveEmailSend(
  pool: Db,
  r: { addressKey: string; networkKey: string | null; dispatchKey: string; now: () => number; policy: EmailSendPolicy },
): Promise<EmailSendReservation> {
  return withTransaction(pool, async (c) => {
    await c.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 5))', [`email_sends:${r.addressKey}`]);
    const mine = await c.query<{ sent_ms: string }>(
      'SELECT (extract(epoch FROM sent_at) * 1000)::bigint::text AS sent_ms FROM email_sends WHERE dispatch_key = $1',
      [r.dispatchKey],
    );
    if (mine.rows[0]) return { ok: true, reservedAtMs: Number(mine.rows[0].sent_ms) };
    // Read under the lock, so the reservations of one mailbox are in time order.
    const nowMs = r.now();
    const decision = decideEmailSend(await recentEmailSends(c, r.addressKey, nowMs), r.networkKey, nowMs, r.policy);
    if (!decision.ok) return decision;
    await c.query('INSERT INTO email_sends (dispatch_key, address_key, network_key, sent_at) VALUES ($1, $2, $3, $4)', [
      r.dispatchKey,
      r.addressKey,
      r.networkKey,
      new Date(nowMs),
    ]);
    return { ok: true, reservedAtMs: nowMs };
  });
}

/** Deletes ledger rows that can no longer decide anything (older than the budget window). */
export async function purgeEmailSends(q: Queryable, nowMs: number): Promise<number> {
  const r = await q.query('DELETE FROM email_sends WHERE sent_at <= $1', [new Date(nowMs - EMAIL_SEND_WINDOW_MS)]);
  return r.rowCount ?? 0;
}
