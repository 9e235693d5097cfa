import type { Queryable } from './pool';

/**
 * Grants (docs/contracts.md §6): a main account binds an agent wallet with a scope and an expiry.
 * Addresses are stored and compared lower-case (`0x` + 40 hex). A grant is active when it is
 * neither revoked nor expired at the moment asked (`at`, default the database clock).
 */

export interface GrantScope {
  services?: string[];
  roles?: string[];
}

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
}

const COLUMNS = 'grant_id, main_account, main_address, agent_address, scope, created_at, expires_at, revoked_at';

/** `at` as a query parameter: the caller's clock when given, else the database's now(). */
const atParam = (at: Date | undefined): Date | null => at ?? null;

/**
 * The newest active grant naming `agentAddress` as its agent (any owner), or the grant `grantId`
 * when given and it is active and names that agent. Undefined when there is none.
 */
export async function findActiveGrantForAgent(q: Queryable, agentAddress: string, grantId?: string, at?: Date): Promise<GrantRow | undefined> {
  const r = await q.query<GrantRow>(
    `SELECT ${COLUMNS} FROM grants
      WHERE agent_address = $1
        AND ($2::text IS NULL OR grant_id = $2)
        AND revoked_at IS NULL
        AND expires_at > COALESCE($3::timestamptz, now())
      ORDER BY created_at DESC, grant_id
      LIMIT 1`,
    [agentAddress.toLowerCase(), grantId ?? null, atParam(at)],
  );
  return r.rows[0];
}

/** Whether any grant (active, expired or revoked) ever named `agentAddress` as its agent. */
export async function hasAnyGrantForAgent(q: Queryable, agentAddress: string): Promise<boolean> {
  const r = await q.query('SELECT 1 FROM grants WHERE agent_address = $1 LIMIT 1', [agentAddress.toLowerCase()]);
  return (r.rowCount ?? 0) > 0;
}

/** Whether an active grant binds exactly this main address and agent address. */
export async function isAgentBound(q: Queryable, mainAddress: string, agentAddress: string, at?: Date): Promise<boolean> {
  const r = await q.query(
    `SELECT 1 FROM grants
      WHERE main_address = $1 AND agent_address = $2
        AND revoked_at IS NULL AND expires_at > COALESCE($3::timestamptz, now())
      LIMIT 1`,
    [mainAddress.toLowerCase(), agentAddress.toLowerCase(), atParam(at)],
  );
  return (r.rowCount ?? 0) > 0;
}

/**
 * Inserts the grant; when a grant with that id already exists (a retried request carrying the
 * same Idempotency-Key) returns the existing one with `created: false` if the same account owns it.
 */
export async function insertGrant(
  q: Queryable,
  g: { grantId: string; mainAccount: string; mainAddress: string; agentAddress: string; scope: GrantScope; createdAt: Date; expiresAt: Date },
): Promise<{ grant: GrantRow; created: boolean } | undefined> {
  const r = await q.query<GrantRow>(
    `INSERT INTO grants (grant_id, main_account, main_address, agent_address, scope, created_at, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (grant_id) DO NOTHING
     RETURNING ${COLUMNS}`,
    [g.grantId, g.mainAccount, g.mainAddress.toLowerCase(), g.agentAddress.toLowerCase(), JSON.stringify(g.scope), g.createdAt, g.expiresAt],
  );
  if (r.rows[0]) return { grant: r.rows[0], created: true };
  const existing = await q.query<GrantRow>(`SELECT ${COLUMNS} FROM grants WHERE grant_id = $1 AND main_account = $2`, [g.grantId, g.mainAccount]);
  return existing.rows[0] ? { grant: existing.rows[0], created: false } : undefined;
}

/** The account's grants, newest first, revoked and expired ones included. */
export async function listGrantsOfAccount(q: Queryable, mainAccount: string): Promise<GrantRow[]> {
  const r = await q.query<GrantRow>(`SELECT ${COLUMNS} FROM grants WHERE main_account = $1 ORDER BY created_at DESC, grant_id`, [mainAccount]);
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
