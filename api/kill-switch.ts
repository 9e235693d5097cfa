import type { Client } from '@temporalio/client';
import type { FastifyBaseLogger } from 'fastify';
import { appendAudit } from '../db/audit';
import type { GrantRow } from '../db/grants';
import { insertKillSwitchEntry } from '../db/kill-switch';
import type { Queryable } from '../db/pool';
import type { Config } from '../lib/config';
import { killSwitchEntryExpiry } from '../lib/kill-switch';
import { killSwitchChanged, killSwitchWorkflowId } from '../workflows/kill-switch.definitions';

/**
 * The API's side of the kill switch (docs/kill-switch.md): a revocation adds its deny entry in the
 * revocation's own transaction, then wakes the workflow that applies the entries to IAM.
 */

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
 * After the revocation committed: starts (or signals) the workflow that applies the entries. A
 * failure here leaves the entry recorded; a retried revocation, or the next one, applies it.
 */
export async function wakeKillSwitch(deps: { config: Config; temporal: Client }, log: FastifyBaseLogger): Promise<boolean> {
  if (deps.config.BROKER_KILL_SWITCH === 'off') return false;
  try {
    await deps.temporal.workflow.signalWithStart('killSwitchWorkflow', {
      workflowId: killSwitchWorkflowId(deps.config.BROKER_TASK_QUEUE),
      taskQueue: deps.config.BROKER_TASK_QUEUE,
      signal: killSwitchChanged,
      signalArgs: [],
    });
    return true;
  } catch (e) {
    log.error(
      { flow: 'kill_switch', err: (e as Error).message },
      'could not start the kill switch workflow; the entry is recorded and applied on the next revocation',
    );
    return false;
  }
}
