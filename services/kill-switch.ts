/**
 * The kill switch's state changes (docs/kill-switch.md): a revoked grant's deny entry, and an
 * agent's revocation — its grants, its raised epochs and their entries — each in the revocation's
 * own transaction with its audit rows. Applying the entries to IAM is the kill switch workflow's
 * (woken by the API after the commit, api/kill-switch.ts).
 *
 * Checks here: that the caller's account granted the agent (else nothing changes); that only live
 * grants are revoked; that a grant never accepted (it minted nothing) gets no entry; that an
 * agent's epoch is ended (and gets an entry) only when one of the account's grants to it was
 * accepted during that epoch — else no credential carries it, and a revocation repeated on purpose
 * would only spend the deny policy's shared size (docs/kill-switch.md, "Limits").
 */
import { appendAudit } from '../db/audit';
import { grantStatus, lockGrantsOfAccountForAgent, revokeGrant, type GrantRow } from '../db/grants';
import { agentEpochStart, bumpAgentEpoch, insertKillSwitchEntry } from '../db/kill-switch';
import { withTransaction, type Db, type Queryable } from '../db/pool';
import type { Config } from '../lib/config';
import { killSwitchEntryExpiry } from '../lib/kill-switch';

export function killSwitchExpiry(config: Pick<Config, 'BROKER_OIDC_JWT_TTL_SECONDS' | 'BROKER_KILL_SWITCH_MAX_SESSION_SECONDS'>, at: Date): Date {
  return killSwitchEntryExpiry(at, { oidcTtlSeconds: config.BROKER_OIDC_JWT_TTL_SECONDS, maxSessionSeconds: config.BROKER_KILL_SWITCH_MAX_SESSION_SECONDS });
}

/** In the revocation's transaction: the grant's deny entry and its audit row. A grant never accepted minted nothing and gets none. */
export async function recordGrantKill(tx: Queryable, config: Config, grant: GrantRow, at: Date, requestId: string): Promise<void> {
  if (!grant.accepted_at) return;
  const expiresAt = killSwitchExpiry(config, at);
  await insertKillSwitchEntry(tx, {
    kind: 'grant',
    mainAccount: grant.main_account,
    userWallet: grant.main_address,
    agentAddress: grant.agent_address,
    grantId: grant.grant_id,
    revokedAt: at,
    expiresAt,
  });
  await appendAudit(tx, {
    event: 'kill_switch.grant',
    outcome: 'ok',
    omniAccount: grant.main_account,
    requestId,
    idemKey: `kill_switch.grant:${grant.grant_id}`,
    details: {
      grant_id: grant.grant_id,
      agent_address: grant.agent_address,
      user_wallet: grant.main_address,
      until: Math.floor(expiresAt.getTime() / 1000),
      mode: config.BROKER_KILL_SWITCH,
    },
  });
}

/**
 * Whether the grant could have minted after `began` (the agent's current epoch's start): accepted,
 * and neither revoked, left nor expired by then. A grant the epoch's own revocation ended carries
 * that revocation's instant exactly, so it counts for the epoch before; the comparison leans to
 * writing an entry, never to missing one.
 */
function mayHaveMintedSince(g: GrantRow, began: Date | undefined): boolean {
  if (g.accepted_at === null) return false;
  if (began === undefined) return true;
  const after = (t: Date | null) => t === null || t.getTime() > began.getTime();
  return after(g.revoked_at) && after(g.left_at) && g.expires_at.getTime() > began.getTime();
}

export interface AgentRevocation {
  revoked: string[];
  ended: { user_wallet: string; epoch: number }[];
  until: Date;
}

/**
 * The account holder revokes an agent wallet: every live grant of the account naming it, the
 * agent's epoch raised for each main wallet it was granted by, deny entries for both. Undefined
 * when this account never granted that wallet (nothing changes).
 */
export async function revokeAgent(
  deps: { db: Db; config: Config; now: () => number },
  caller: { omniAccount: string; kind: string },
  agent: string,
  requestId: string,
): Promise<AgentRevocation | undefined> {
  const { db, config } = deps;
  const at = new Date(deps.now());
  const until = killSwitchExpiry(config, at);
  return withTransaction(db, async (tx) => {
    const grants = await lockGrantsOfAccountForAgent(tx, caller.omniAccount, agent);
    if (grants.length === 0) return undefined;
    const revoked: string[] = [];
    for (const g of grants) {
      const status = grantStatus(g, at.getTime());
      if (status !== 'pending' && status !== 'active') continue;
      const r = await revokeGrant(tx, g.grant_id, caller.omniAccount, at);
      if (!r?.changed) continue;
      revoked.push(g.grant_id);
      await appendAudit(tx, {
        event: 'grant.revoke',
        outcome: 'ok',
        omniAccount: caller.omniAccount,
        requestId: requestId,
        idemKey: `grant.revoke:${g.grant_id}`,
        details: { grant_id: g.grant_id, main_address: g.main_address, agent_address: agent, via: caller.kind, by: 'agent.revoke' },
      });
      await recordGrantKill(tx, config, r.grant, at, requestId);
    }
    const ended: { user_wallet: string; epoch: number }[] = [];
    for (const wallet of [...new Set(grants.map((g) => g.main_address))]) {
      // The row lock of lockGrantsOfAccountForAgent serialises this read with other revocations of the agent by this account.
      const began = await agentEpochStart(tx, wallet, agent);
      if (!grants.some((g) => g.main_address === wallet && mayHaveMintedSince(g, began))) continue;
      const epoch = await bumpAgentEpoch(tx, wallet, agent, at);
      ended.push({ user_wallet: wallet, epoch });
      await insertKillSwitchEntry(tx, {
        kind: 'agent',
        mainAccount: caller.omniAccount,
        userWallet: wallet,
        agentAddress: agent,
        epoch,
        revokedAt: at,
        expiresAt: until,
      });
    }
    if (revoked.length === 0 && ended.length === 0) return { revoked, ended, until };
    await appendAudit(tx, {
      event: 'agent.revoke',
      outcome: 'ok',
      omniAccount: caller.omniAccount,
      requestId: requestId,
      idemKey: `agent.revoke:${agent}:${ended.map((e) => `${e.user_wallet}:${e.epoch}`).join(',')}:${revoked.join(',')}`,
      details: {
        agent_address: agent,
        revoked_grants: revoked,
        ended_epochs: ended,
        until: Math.floor(until.getTime() / 1000),
        mode: config.BROKER_KILL_SWITCH,
        via: caller.kind,
      },
    });
    return { revoked, ended, until };
  });
}
