import type { Queryable } from './pool';

/**
 * approvals (migration 015, docs/approvals.md): one row per mint that waits for its holder's
 * decision. Checks here: what must hold under concurrency — a decision lands only on a pending,
 * unexpired row (one wins among racing deciders), a hand-out only on an approved, uncollected one,
 * an expiry only on a pending one. Who may decide and with which proof is services/approvals.ts's.
 */

export type ApprovalStatus = 'pending' | 'approved' | 'denied' | 'expired';

export interface ApprovalRow {
  approval_id: string;
  grant_id: string;
  main_account: string;
  main_address: string;
  agent_address: string;
  agent_account: string;
  target: string;
  params: Record<string, string | number>;
  scope: Record<string, unknown>;
  reason: string | null;
  request_hash: `0x${string}`;
  status: ApprovalStatus;
  requested_at: Date;
  expires_at: Date;
  decided_at: Date | null;
  decided_via: string | null;
  receipt: Record<string, unknown> | null;
  collected_at: Date | null;
  /** When the holder was mailed about it (migration 018); null when no mail went. */
  notified_at: Date | null;
}

const COLUMNS =
  'approval_id, grant_id, main_account, main_address, agent_address, agent_account, target, params, scope, reason, request_hash, status, requested_at, expires_at, decided_at, decided_via, receipt, collected_at, notified_at';

export type NewApproval = Omit<ApprovalRow, 'status' | 'decided_at' | 'decided_via' | 'receipt' | 'collected_at' | 'notified_at'>;

/** Inserts the pending request; a retry with the same id finds it (and changes nothing). */
export async function insertApproval(q: Queryable, a: NewApproval): Promise<ApprovalRow> {
  const r = await q.query<ApprovalRow>(
    `INSERT INTO approvals (approval_id, grant_id, main_account, main_address, agent_address, agent_account, target, params, scope, reason, request_hash, requested_at, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
     ON CONFLICT (approval_id) DO UPDATE SET approval_id = approvals.approval_id
     RETURNING ${COLUMNS}`,
    [
      a.approval_id,
      a.grant_id,
      a.main_account,
      a.main_address,
      a.agent_address,
      a.agent_account,
      a.target,
      JSON.stringify(a.params),
      JSON.stringify(a.scope),
      a.reason,
      a.request_hash,
      a.requested_at,
      a.expires_at,
    ],
  );
  return r.rows[0] as ApprovalRow;
}

export async function findApproval(q: Queryable, approvalId: string): Promise<ApprovalRow | undefined> {
  const r = await q.query<ApprovalRow>(`SELECT ${COLUMNS} FROM approvals WHERE approval_id = $1`, [approvalId]);
  return r.rows[0];
}

/** The account's pending, unexpired requests (as holder), oldest first, at most `limit`. */
export async function listPendingApprovalsOfOwner(q: Queryable, mainAccount: string, at: Date, limit: number): Promise<ApprovalRow[]> {
  const r = await q.query<ApprovalRow>(
    `SELECT ${COLUMNS} FROM approvals WHERE main_account = $1 AND status = 'pending' AND expires_at > $2 ORDER BY requested_at, approval_id LIMIT $3`,
    [mainAccount, at, limit],
  );
  return r.rows;
}

/** The decision, when the row is still pending and unexpired at `at`; undefined when another decision (or the expiry) came first. */
export async function decideApproval(
  q: Queryable,
  d: { approvalId: string; status: 'approved' | 'denied'; at: Date; via: string; receipt: Record<string, unknown> },
): Promise<ApprovalRow | undefined> {
  const r = await q.query<ApprovalRow>(
    `UPDATE approvals SET status = $2, decided_at = $3, decided_via = $4, receipt = $5
      WHERE approval_id = $1 AND status = 'pending' AND expires_at > $3
      RETURNING ${COLUMNS}`,
    [d.approvalId, d.status, d.at, d.via, JSON.stringify(d.receipt)],
  );
  return r.rows[0];
}

/** Marks a still-pending request expired; false when it was decided first. */
export async function expireApproval(q: Queryable, approvalId: string, at: Date): Promise<boolean> {
  const r = await q.query(`UPDATE approvals SET status = 'expired', decided_at = $2 WHERE approval_id = $1 AND status = 'pending'`, [approvalId, at]);
  return (r.rowCount ?? 0) > 0;
}

/**
 * Records the hand-out of an approved request. Its one collector is the request's own flow, which
 * hands out once; a retry of that flow's mint finds the row already marked and goes on.
 */
export async function markApprovalCollected(q: Queryable, approvalId: string, grantId: string, at: Date): Promise<ApprovalRow | undefined> {
  const r = await q.query<ApprovalRow>(
    `UPDATE approvals SET collected_at = COALESCE(collected_at, $3) WHERE approval_id = $1 AND grant_id = $2 AND status = 'approved' RETURNING ${COLUMNS}`,
    [approvalId, grantId, at],
  );
  return r.rows[0];
}

/** Records that the holder was mailed about the request; the first time stays. */
export async function markApprovalNotified(q: Queryable, approvalId: string, at: Date): Promise<void> {
  await q.query('UPDATE approvals SET notified_at = COALESCE(notified_at, $2) WHERE approval_id = $1', [approvalId, at]);
}

/**
 * Deletes the requests that ended more than `retentionDays` before `now`; answers how many.
 *
 * A request has ended at the latest of its expiry, its decision and its hand-out: after expires_at
 * no decision lands (decideApproval), an approved one is collectable for 5 minutes after its
 * decision (workflows/approval.ts), and a denied, expired or handed-out one changes no more. So
 * the rule covers every state — expired, denied, handed out, approved but never collected, and a
 * pending row whose expiry the flow never recorded — while a pending request (expires_at still
 * ahead) or an approved one inside its hand-out window is never touched: the retention is at least
 * a day (lib/config.ts), far longer than either window.
 *
 * Why a retention, and why rows go at all: this table is the working state (what the API lists,
 * what makes a decision or a hand-out single). The durable record is the audit log, which is never
 * purged: `approval.request`, `approval.decide` (with the receipt), `approval.expire` and the
 * hand-out's mint rows with its approval_id. Thirty days by default (BROKER_APPROVAL_RETENTION_DAYS)
 * keeps a finished request's answer (403, 410, 409 rather than 404) and its holder's view long past
 * any poll or support question about it; past that, the id answers 404 to everyone.
 */
export async function purgeFinishedApprovals(q: Queryable, now: Date, retentionDays: number): Promise<number> {
  const r = await q.query(PURGE_FINISHED_APPROVALS_SQL, [now, retentionDays]);
  return r.rowCount ?? 0;
}

/** The purge's statement ($1 now, $2 retention days); its predicate is the expression of the approvals_finished_by index (migration 017). */
export const PURGE_FINISHED_APPROVALS_SQL =
  'DELETE FROM approvals WHERE GREATEST(expires_at, decided_at, collected_at) < $1::timestamptz - make_interval(days => $2)';
