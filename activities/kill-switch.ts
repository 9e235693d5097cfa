import { FailureType } from '../lib/errors';
import { rename, writeFile } from 'node:fs/promises';
import { log } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { IAMClient } from '@aws-sdk/client-iam';
import { createIamClient, setRolePolicy } from '../adapters/iam-client';
import { agentEpoch, liveKillSwitchEntries, purgeKillSwitchEntries } from '../db/kill-switch';
import { KILL_SWITCH_POLICY_NAME, killSwitchPolicy, killSwitchRoleNames } from '../lib/kill-switch';
import { killSwitchCollapsedWallets, killSwitchEntries, killSwitchRoleWide } from '../lib/metrics';
import type { ActingContext } from '../lib/oidc-claims';
import type { Db } from '../db/pool';
import type { KillSwitchApplied } from '../workflows/kill-switch.definitions';
import type { ActivityDeps } from './deps';

/**
 * What a credential minted under this grant names (lib/oidc-claims.ts withActingClaims): the agent,
 * the grant and the agent's current revocation epoch for the grant's main wallet. A mint authorised
 * just before a revocation may sign just after it, with the next epoch: its credential still carries
 * the revoked grant's id, which the grant's deny entry names (every revocation of an accepted grant
 * leaves one, and entries outlast the longest lifetime by 300 s, far beyond a mint's one-minute run).
 */
export async function actingContextFor(
  db: Db,
  grant: { grantId: string; mainAddress: string; agentAddress: string } | undefined,
): Promise<ActingContext | undefined> {
  if (grant === undefined) return undefined;
  let epoch;
  try {
    epoch = await agentEpoch(db, grant.mainAddress, grant.agentAddress);
  } catch (e) {
    throw ApplicationFailure.retryable(`could not read the agent's revocation epoch: ${(e as Error).message}`, FailureType.killSwitchReadFailed);
  }
  return { agentWallet: grant.agentAddress, grantId: grant.grantId, epoch };
}

export function createKillSwitchActivities(deps: ActivityDeps) {
  let iam: IAMClient | undefined;
  return {
    /**
     * Drops expired entries and applies the rest: PutRolePolicy (DeleteRolePolicy when none is
     * left) on each configured role whose policy differs, or the document written to
     * BROKER_KILL_SWITCH_POLICY_FILE. Idempotent: it applies the whole document each time, and a
     * role already holding it is not written again (adapters/iam-client.ts). Never refused for its
     * size: entries that do not fit one by one are denied by issue time (lib/kill-switch.ts), and
     * the result says so.
     */
    async applyKillSwitch(): Promise<KillSwitchApplied> {
      const { config } = deps;
      const at = new Date(deps.now());
      const dropped = await purgeKillSwitchEntries(deps.db, at);
      const entries = await liveKillSwitchEntries(deps.db, at);
      const { document, collapsedWallets, roleWide } = killSwitchPolicy(
        entries.map((e) => ({
          kind: e.kind,
          userWallet: e.user_wallet,
          agentAddress: e.agent_address,
          grantId: e.grant_id,
          epoch: e.epoch,
          revokedAt: e.revoked_at,
        })),
        { oidcTtlSeconds: config.BROKER_OIDC_JWT_TTL_SECONDS },
      );
      if (collapsedWallets.length > 0) {
        log.warn('kill switch entries over the policy size: denied by issue time', {
          entries: entries.length,
          collapsedWallets: collapsedWallets.length,
          roleWide,
        });
      }
      if (config.BROKER_KILL_SWITCH === 'iam') {
        iam ??= createIamClient(config);
        const unread: string[] = [];
        for (const role of killSwitchRoleNames(config.BROKER_KILL_SWITCH_ROLE_NAMES, config.BROKER_DATA_ROLE_ARN)) {
          if ((await setRolePolicy(iam, role, KILL_SWITCH_POLICY_NAME, document)).readRefused) unread.push(role);
        }
        if (unread.length > 0) {
          log.warn('kill switch policy not readable (iam:GetRolePolicy refused): written without comparing, so every wake-up spends IAM writes', {
            roles: unread,
          });
        }
      } else if (config.BROKER_KILL_SWITCH === 'file' && config.BROKER_KILL_SWITCH_POLICY_FILE) {
        const file = config.BROKER_KILL_SWITCH_POLICY_FILE;
        const empty = JSON.stringify({ Version: '2012-10-17', Statement: [] });
        await writeFile(`${file}.tmp`, `${document ?? empty}\n`);
        await rename(`${file}.tmp`, file);
      }
      killSwitchEntries.set(entries.length);
      killSwitchCollapsedWallets.set(collapsedWallets.length);
      killSwitchRoleWide.set(roleWide ? 1 : 0);
      const next = entries.reduce<number | null>((min, e) => (min === null || e.expires_at.getTime() < min ? e.expires_at.getTime() : min), null);
      return { entries: entries.length, dropped, nextExpiryMs: next, collapsedWallets: collapsedWallets.length, roleWide };
    },
  };
}
