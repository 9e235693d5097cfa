import type { Queryable } from './pool';
import type { KillSwitchEntry } from '../lib/kill-switch';

/**
 * The kill switch's tables (db/migrations/014_kill_switch.sql, docs/kill-switch.md). The epoch a
 * mint's credential carries is read with the mint's grant, in its one statement (db/grants.ts
 * agentGrantStanding), not here.
 */

export interface KillSwitchEntryRow {
  entry_id: string;
  kind: 'grant' | 'agent';
  main_account: string;
  user_wallet: string;
  agent_address: string;
  grant_id: string | null;
  epoch: number | null;
  revoked_at: Date;
  expires_at: Date;
}

const COLUMNS = 'entry_id, kind, main_account, user_wallet, agent_address, grant_id, epoch, revoked_at, expires_at';

/** When the agent's current epoch for this user wallet began (its last revocation), or undefined if it was never revoked. */
export async function agentEpochStart(q: Queryable, userWallet: string, agentAddress: string): Promise<Date | undefined> {
  const r = await q.query<{ revoked_at: Date }>('SELECT revoked_at FROM agent_epochs WHERE user_wallet = $1 AND agent_address = $2', [
    userWallet.toLowerCase(),
    agentAddress.toLowerCase(),
  ]);
  return r.rows[0]?.revoked_at;
}

/**
 * Raises the agent's epoch for this user wallet by one and returns the epoch it ended. The row
 * lock serialises concurrent revocations of one agent: each ends a different epoch.
 */
export async function bumpAgentEpoch(q: Queryable, userWallet: string, agentAddress: string, at: Date): Promise<number> {
  const r = await q.query<{ epoch: number }>(
    `INSERT INTO agent_epochs (user_wallet, agent_address, epoch, revoked_at) VALUES ($1, $2, 1, $3)
     ON CONFLICT (user_wallet, agent_address) DO UPDATE SET epoch = agent_epochs.epoch + 1, revoked_at = $3
     RETURNING epoch`,
    [userWallet.toLowerCase(), agentAddress.toLowerCase(), at],
  );
  return (r.rows[0] as { epoch: number }).epoch - 1;
}

/** Adds a deny entry; a second entry for the same grant (or agent epoch) keeps the first. */
export async function insertKillSwitchEntry(
  q: Queryable,
  e: {
    kind: 'grant' | 'agent';
    mainAccount: string;
    userWallet: string;
    agentAddress: string;
    grantId?: string;
    epoch?: number;
    revokedAt: Date;
    expiresAt: Date;
  },
): Promise<void> {
  await q.query(
    `INSERT INTO kill_switch_entries (kind, main_account, user_wallet, agent_address, grant_id, epoch, revoked_at, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`,
    [e.kind, e.mainAccount, e.userWallet.toLowerCase(), e.agentAddress.toLowerCase(), e.grantId ?? null, e.epoch ?? null, e.revokedAt, e.expiresAt],
  );
}

/** An entry as the policy renderer takes it (lib/kill-switch.ts). */
export function killSwitchEntryOf(e: KillSwitchEntryRow): KillSwitchEntry {
  return { kind: e.kind, userWallet: e.user_wallet, agentAddress: e.agent_address, grantId: e.grant_id, epoch: e.epoch, revokedAt: e.revoked_at };
}

/** Entries still in force at `at`, oldest first. */
export async function liveKillSwitchEntries(q: Queryable, at: Date): Promise<KillSwitchEntryRow[]> {
  const r = await q.query<KillSwitchEntryRow>(`SELECT ${COLUMNS} FROM kill_switch_entries WHERE expires_at > $1 ORDER BY entry_id`, [at]);
  return r.rows;
}

/** Drops entries no credential minted before their revocation can outlive; returns how many. */
export async function purgeKillSwitchEntries(q: Queryable, at: Date): Promise<number> {
  const r = await q.query('DELETE FROM kill_switch_entries WHERE expires_at <= $1', [at]);
  return r.rowCount ?? 0;
}
