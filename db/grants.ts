import type { ApprovalPolicy } from '../lib/approvals';
import { isScoped, type GrantScope } from '../lib/grant-scope';
import type { Queryable } from './pool';

export type { GrantScope } from '../lib/grant-scope';

/**
 * Grants (docs/contracts.md §6): a main account binds an agent wallet with a scope and an expiry, and the
 * agent wallet consents by signing an acceptance. Addresses are stored and compared lower-case
 * (`0x` + 40 hex). A grant binds (mints, check_hyper_agent_address) only while it is *active*:
 * accepted by its agent, not left, not revoked, not expired at the moment asked (`at`, default
 * the database clock); check_hyper_agent_address only when it is also unscoped and asks for no
 * approval (isAgentBound). A grant its agent has not accepted is *pending* and binds nothing.
 *
 * Checks here: what must hold under concurrency — the live-grant cap (per-account lock in
 * insertGrant) and each state change's precondition in its UPDATE. The rest of grants' rules are
 * services/grants.ts's.
 */

export interface GrantRow {
  grant_id: string;
  /** OmniAccount of the owner (the main account). */
  main_account: string;
  /** The owner's main EVM address, lower-case. */
  main_address: string;
  /** The agent's EVM address, lower-case. */
  agent_address: string;
  scope: GrantScope;
  created_at: Date;
  expires_at: Date;
  revoked_at: Date | null;
  /** When the agent wallet's signed acceptance was taken; null while pending. */
  accepted_at: Date | null;
  /** When the agent declined it (before accepting). */
  declined_at: Date | null;
  /** When the agent left it (after accepting). */
  left_at: Date | null;
  /** Its approval policy (lib/approvals.ts, migration 015): null when its mints never wait for the holder. */
  approval: ApprovalPolicy | null;
}

export const GRANT_STATUSES = ['pending', 'active', 'revoked', 'declined', 'left', 'expired'] as const;
export type GrantStatus = (typeof GRANT_STATUSES)[number];

/**
 * The one rule of a grant's state at a moment, read in TypeScript (grantStatus) and in SQL
 * (statusSql, the listing's status filter): the first row that holds, in this order. Both read the
 * same columns; `expires_at` is compared at the millisecond, as the pg driver reads it into a Date
 * (it drops the microseconds). test/grants-listing.test.ts pins that the two agree for every state.
 */
const STATUS_RULES: readonly { status: GrantStatus; holds: (g: GrantRow, atMs: number) => boolean; sql: (at: string) => string }[] = [
  { status: 'revoked', holds: (g) => !!g.revoked_at, sql: () => 'revoked_at IS NOT NULL' },
  { status: 'declined', holds: (g) => !!g.declined_at, sql: () => 'declined_at IS NOT NULL' },
  { status: 'left', holds: (g) => !!g.left_at, sql: () => 'left_at IS NOT NULL' },
  { status: 'expired', holds: (g, atMs) => g.expires_at.getTime() <= atMs, sql: (at) => `date_trunc('milliseconds', expires_at) <= ${at}` },
  { status: 'active', holds: (g) => !!g.accepted_at, sql: () => 'accepted_at IS NOT NULL' },
  { status: 'pending', holds: () => true, sql: () => 'true' },
];

/** A grant's state at `atMs`; the first that holds of revoked, declined, left, expired, active, pending. */
export function grantStatus(g: GrantRow, atMs: number): GrantStatus {
  return STATUS_RULES.find((r) => r.holds(g, atMs))?.status ?? 'pending';
}

/** SQL of a grant's state (the same rule as grantStatus), `at` naming the timestamptz parameter of the moment asked. */
const statusSql = (at: string): string => `CASE ${STATUS_RULES.map((r) => `WHEN ${r.sql(at)} THEN '${r.status}'`).join(' ')} END`;

const COLUMNS = 'grant_id, main_account, main_address, agent_address, scope, created_at, expires_at, revoked_at, accepted_at, declined_at, left_at, approval';

/** `at` as a query parameter: the caller's clock when given, else the database's now(). */
const atParam = (at: Date | undefined): Date | null => at ?? null;

/** SQL condition of an active grant (`$at` is the parameter holding the moment asked). */
const ACTIVE = (at: string) => `accepted_at IS NOT NULL AND left_at IS NULL AND revoked_at IS NULL AND expires_at > COALESCE(${at}::timestamptz, now())`;

/**
 * The newest active grant naming `agentAddress` as its agent (any owner), or the grant `grantId`
 * when given and it is active and names that agent. Pending grants (never accepted by the agent)
 * are never returned. Undefined when there is none.
 */
export async function findActiveGrantForAgent(q: Queryable, agentAddress: string, grantId?: string, at?: Date): Promise<GrantRow | undefined> {
  const r = await q.query<GrantRow>(
    `SELECT ${COLUMNS} FROM grants
      WHERE agent_address = $1
        AND ($2::text IS NULL OR grant_id = $2)
        AND ${ACTIVE('$3')}
      ORDER BY created_at DESC, grant_id
      LIMIT 1`,
    [agentAddress.toLowerCase(), grantId ?? null, atParam(at)],
  );
  return r.rows[0];
}

/**
 * Whether the agent accepted a grant it has not left (active, revoked or expired). Such an agent
 * chose to mint for a main wallet: when none of those grants is active any more its mints are
 * refused until it leaves them. Grants it never accepted do not count.
 */
export async function hasAcceptedGrantForAgent(q: Queryable, agentAddress: string): Promise<boolean> {
  const r = await q.query('SELECT 1 FROM grants WHERE agent_address = $1 AND accepted_at IS NOT NULL AND left_at IS NULL LIMIT 1', [
    agentAddress.toLowerCase(),
  ]);
  return (r.rowCount ?? 0) > 0;
}

/**
 * What a mint by this agent wallet stands on, in one statement (one snapshot): the grant
 * findActiveGrantForAgent would return, whether hasAcceptedGrantForAgent holds, and — with an
 * active grant — the agent's revocation epoch for the grant's main wallet (agent_epochs; 0 until
 * first revoked). An agent revocation revokes its grants and raises the epoch in one transaction,
 * so this read sees both or neither: a grant active here is one the epoch read with it covers, and
 * a revocation after this read ends that very epoch (docs/kill-switch.md).
 *
 * A grant that expired by the time the agent's current epoch began (its last revocation) stands
 * for nothing here, whatever `at` says: a revocation raises the epoch only for grants that may
 * have minted since it began (services/kill-switch.ts, `mayHaveMintedSince`, by the stored expiry
 * and epoch start), so a mint on a clock behind the revocation's must not take such a grant, or it
 * would carry an epoch no later revocation ends. Both sides compare stored times: one clock.
 */
export async function agentGrantStanding(
  q: Queryable,
  agentAddress: string,
  grantId?: string,
  at?: Date,
): Promise<{ active: GrantRow | undefined; accepted: boolean; epoch: number | undefined }> {
  const r = await q.query<Partial<GrantRow> & { accepted: boolean; agent_epoch: number | null }>(
    `SELECT g.*, CASE WHEN g.grant_id IS NULL THEN NULL ELSE COALESCE(e.epoch, 0) END AS agent_epoch,
            EXISTS (SELECT 1 FROM grants WHERE agent_address = $1 AND accepted_at IS NOT NULL AND left_at IS NULL) AS accepted
       FROM (SELECT 1) one
       LEFT JOIN LATERAL (
         SELECT ${COLUMNS} FROM grants
          WHERE agent_address = $1
            AND ($2::text IS NULL OR grant_id = $2)
            AND ${ACTIVE('$3')}
            AND NOT EXISTS (SELECT 1 FROM agent_epochs began
                             WHERE began.user_wallet = grants.main_address AND began.agent_address = $1
                               AND began.revoked_at >= grants.expires_at)
          ORDER BY created_at DESC, grant_id
          LIMIT 1) g ON true
       LEFT JOIN agent_epochs e ON e.user_wallet = g.main_address AND e.agent_address = $1`,
    [agentAddress.toLowerCase(), grantId ?? null, atParam(at)],
  );
  const row = r.rows[0];
  if (!row) throw new Error('no answer from the grants query');
  const { accepted, agent_epoch, ...grant } = row;
  return grant.grant_id ? { active: grant as GrantRow, accepted, epoch: agent_epoch ?? 0 } : { active: undefined, accepted, epoch: undefined };
}

/**
 * Whether an active (accepted, live) grant binds exactly this main address and agent address for
 * the TEE's check_hyper_agent_address: one that lets the agent act as the main wallet without
 * limit — unscoped (its scope restricts nothing, lib/grant-scope.ts isScoped) and without an
 * approval policy. The TEE runs whatever the bound agent asks from the main wallet, and the
 * broker can hold neither a scope nor the holder's decision there, so a scoped grant or one that
 * asks for approval binds its agent for mints under it only.
 */
export async function isAgentBound(q: Queryable, mainAddress: string, agentAddress: string, at?: Date): Promise<boolean> {
  const r = await q.query<Pick<GrantRow, 'scope'>>(
    `SELECT scope FROM grants WHERE main_address = $1 AND agent_address = $2 AND approval IS NULL AND ${ACTIVE('$3')}`,
    [mainAddress.toLowerCase(), agentAddress.toLowerCase(), atParam(at)],
  );
  return r.rows.some((g) => !isScoped(g.scope));
}

export type InsertGrantResult =
  | { outcome: 'created' | 'existing'; grant: GrantRow }
  /** The id belongs to another account. */
  | { outcome: 'foreign' }
  /** The account already holds `live` grants, the most allowed. */
  | { outcome: 'capped'; live: number };

/**
 * Inserts the grant (pending) unless the account already holds `maxLive` live grants (pending or
 * active). When a grant with that id already exists (a retried request carrying the same
 * Idempotency-Key) answers it as it is now, without counting it against the cap. Must run in a
 * transaction: takes a per-account lock so concurrent creates cannot pass the cap together.
 */
export async function insertGrant(
  tx: Queryable,
  g: {
    grantId: string;
    mainAccount: string;
    mainAddress: string;
    agentAddress: string;
    scope: GrantScope;
    createdAt: Date;
    expiresAt: Date;
    maxLive: number;
    approval?: ApprovalPolicy | null;
  },
): Promise<InsertGrantResult> {
  await tx.query(`SELECT pg_advisory_xact_lock(hashtextextended('grants:' || $1, 0))`, [g.mainAccount]);
  const existing = await tx.query<GrantRow>(`SELECT ${COLUMNS} FROM grants WHERE grant_id = $1`, [g.grantId]);
  if (existing.rows[0]) return existing.rows[0].main_account === g.mainAccount ? { outcome: 'existing', grant: existing.rows[0] } : { outcome: 'foreign' };
  const live = await tx.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM grants
      WHERE main_account = $1 AND revoked_at IS NULL AND declined_at IS NULL AND left_at IS NULL AND expires_at > $2`,
    [g.mainAccount, g.createdAt],
  );
  const n = live.rows[0]?.n ?? 0;
  if (n >= g.maxLive) return { outcome: 'capped', live: n };
  const r = await tx.query<GrantRow>(
    `INSERT INTO grants (grant_id, main_account, main_address, agent_address, scope, created_at, expires_at, approval)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     RETURNING ${COLUMNS}`,
    [
      g.grantId,
      g.mainAccount,
      g.mainAddress.toLowerCase(),
      g.agentAddress.toLowerCase(),
      JSON.stringify(g.scope),
      g.createdAt,
      g.expiresAt,
      g.approval ? JSON.stringify(g.approval) : null,
    ],
  );
  return { outcome: 'created', grant: r.rows[0] as GrantRow };
}

/** One grant by id (any owner), or undefined. `forUpdate` locks the row for the transaction. */
export async function findGrant(q: Queryable, grantId: string, opts: { forUpdate?: boolean } = {}): Promise<GrantRow | undefined> {
  const r = await q.query<GrantRow>(`SELECT ${COLUMNS} FROM grants WHERE grant_id = $1${opts.forUpdate ? ' FOR UPDATE' : ''}`, [grantId]);
  return r.rows[0];
}

/** Whose grants a listing holds: the account's own (as main account), or those naming a wallet as agent (any owner). */
export type GrantListing = { mainAccount: string } | { agentAddress: string };

export interface GrantListOptions {
  /** At most this many. */
  limit: number;
  /** Only grants in one of these states at `at` (grantStatus's rule, in SQL); every state when absent. */
  statuses?: readonly GrantStatus[];
  /** Only the grants after this one in the listing's order (the last grant of the previous page). */
  before?: string;
  /** The moment the states are taken at. */
  at: Date;
}

/**
 * The listing's grants, newest first (created_at, then grant_id, the order every page keeps), at
 * most `limit`, filtered by state when `statuses` is given, after the grant `before` when given.
 * Undefined when `before` names no grant of this listing (another account's or agent's included).
 */
export async function listGrants(q: Queryable, listing: GrantListing, opts: GrantListOptions): Promise<GrantRow[] | undefined> {
  const [column, owner] = 'mainAccount' in listing ? ['main_account', listing.mainAccount] : ['agent_address', listing.agentAddress.toLowerCase()];
  if (opts.before !== undefined) {
    const cursor = await q.query(`SELECT 1 FROM grants WHERE grant_id = $1 AND ${column} = $2`, [opts.before, owner]);
    if (!cursor.rowCount) return undefined;
  }
  const r = await q.query<GrantRow>(
    `SELECT ${COLUMNS} FROM grants
      WHERE ${column} = $1
        AND ($3::text[] IS NULL OR ${statusSql('$4::timestamptz')} = ANY($3::text[]))
        AND ($5::text IS NULL OR EXISTS (
              SELECT 1 FROM grants c WHERE c.grant_id = $5
                 AND (grants.created_at < c.created_at OR (grants.created_at = c.created_at AND grants.grant_id > c.grant_id))))
      ORDER BY created_at DESC, grant_id
      LIMIT $2`,
    [owner, opts.limit, opts.statuses ? [...opts.statuses] : null, opts.at, opts.before ?? null],
  );
  return r.rows;
}

/**
 * Revokes the grant when `mainAccount` owns it and it is not revoked yet. Returns the grant as it
 * is now (revoked) or undefined when the account owns no such grant; `changed` says whether this
 * call revoked it.
 */
export async function revokeGrant(q: Queryable, grantId: string, mainAccount: string, at: Date): Promise<{ grant: GrantRow; changed: boolean } | undefined> {
  const updated = await q.query<GrantRow>(
    `UPDATE grants SET revoked_at = $3 WHERE grant_id = $1 AND main_account = $2 AND revoked_at IS NULL RETURNING ${COLUMNS}`,
    [grantId, mainAccount, at],
  );
  if (updated.rows[0]) return { grant: updated.rows[0], changed: true };
  const existing = await q.query<GrantRow>(`SELECT ${COLUMNS} FROM grants WHERE grant_id = $1 AND main_account = $2`, [grantId, mainAccount]);
  return existing.rows[0] ? { grant: existing.rows[0], changed: false } : undefined;
}

/** Marks a pending grant accepted at `at`; undefined when it is no longer pending (lost a race). */
export async function markGrantAccepted(q: Queryable, grantId: string, at: Date): Promise<GrantRow | undefined> {
  const r = await q.query<GrantRow>(
    `UPDATE grants SET accepted_at = $2
      WHERE grant_id = $1 AND accepted_at IS NULL AND declined_at IS NULL AND revoked_at IS NULL AND expires_at > $2
      RETURNING ${COLUMNS}`,
    [grantId, at],
  );
  return r.rows[0];
}

/**
 * The agent ends its part of the grant: a grant it never accepted is declined, one it accepted is
 * left (whatever its state: a revoked or expired grant is left too, so the agent's own mints come
 * back). Returns the grant as it is now and whether this call changed it; undefined when the grant
 * does not name `agentAddress` as its agent.
 */
export async function endGrantByAgent(
  q: Queryable,
  grantId: string,
  agentAddress: string,
  at: Date,
  opts: { onlyPending?: boolean } = {},
): Promise<{ grant: GrantRow; changed: 'declined' | 'left' | null } | undefined> {
  const agent = agentAddress.toLowerCase();
  const declined = await q.query<GrantRow>(
    `UPDATE grants SET declined_at = $3 WHERE grant_id = $1 AND agent_address = $2 AND accepted_at IS NULL AND declined_at IS NULL RETURNING ${COLUMNS}`,
    [grantId, agent, at],
  );
  if (declined.rows[0]) return { grant: declined.rows[0], changed: 'declined' };
  if (!opts.onlyPending) {
    const left = await q.query<GrantRow>(
      `UPDATE grants SET left_at = $3 WHERE grant_id = $1 AND agent_address = $2 AND accepted_at IS NOT NULL AND left_at IS NULL RETURNING ${COLUMNS}`,
      [grantId, agent, at],
    );
    if (left.rows[0]) return { grant: left.rows[0], changed: 'left' };
  }
  const existing = await q.query<GrantRow>(`SELECT ${COLUMNS} FROM grants WHERE grant_id = $1 AND agent_address = $2`, [grantId, agent]);
  return existing.rows[0] ? { grant: existing.rows[0], changed: null } : undefined;
}

/** The account's grants naming `agentAddress` as their agent, every state, locked for the transaction (an agent's revocation). */
export async function lockGrantsOfAccountForAgent(q: Queryable, mainAccount: string, agentAddress: string): Promise<GrantRow[]> {
  const r = await q.query<GrantRow>(`SELECT ${COLUMNS} FROM grants WHERE main_account = $1 AND agent_address = $2 ORDER BY created_at, grant_id FOR UPDATE`, [
    mainAccount,
    agentAddress.toLowerCase(),
  ]);
  return r.rows;
}
