import { AGENT_TAG, EPOCH_TAG, GRANT_TAG } from './oidc-claims';

/**
 * The kill switch's deny policy (docs/kill-switch.md): an inline policy on each data role that
 * denies every action to sessions whose session tags name what was revoked.
 *
 * - Revoked grants: one statement, `StringEquals` on `aws:PrincipalTag/agentkeys_grant_id` with
 *   the grant ids as a list (several values of one key match when any matches).
 * - Revoked agents: one statement each, `StringEquals` on the agent, user-wallet and epoch tags
 *   together (several keys in one operator must all match), so only credentials the agent minted
 *   for that wallet before its revocation are denied; a later grant to the same agent mints under
 *   a new epoch.
 *
 * Only string operators apply: `aws:PrincipalTag/*` is a String key (IAM User Guide, "AWS global
 * condition context keys", aws:PrincipalTag), and IAM chooses the operators a key can use by its
 * type ("IAM JSON policy elements: Condition operators"). So the epoch is matched by equality of
 * the epoch each revocation ended, not by a numeric comparison. AND/OR of keys and values:
 * "Create a condition with multiple context keys or values" (IAM User Guide).
 */

export interface KillSwitchEntry {
  kind: 'grant' | 'agent';
  userWallet: string;
  agentAddress: string;
  grantId?: string | null;
  epoch?: number | null;
}

/** An inline role policy may hold 10,240 characters (IAM quotas, "IAM and AWS STS quotas"; whitespace not counted). */
export const ROLE_POLICY_MAX_CHARS = 10_240;

export const KILL_SWITCH_POLICY_NAME = 'agentkeys-kill-switch';

export class KillSwitchPolicyTooLarge extends Error {
  override name = 'KillSwitchPolicyTooLarge';
}

/** The policy document for the entries (JSON text), or undefined when nothing is revoked. */
export function killSwitchPolicy(entries: KillSwitchEntry[]): string | undefined {
  const statements: object[] = [];
  const grants = [...new Set(entries.filter((e) => e.kind === 'grant' && e.grantId).map((e) => e.grantId as string))].sort();
  if (grants.length > 0) {
    statements.push({
      Sid: 'AgentKeysRevokedGrants',
      Effect: 'Deny',
      Action: '*',
      Resource: '*',
      Condition: { StringEquals: { [`aws:PrincipalTag/${GRANT_TAG}`]: grants } },
    });
  }
  const agents = entries.filter((e) => e.kind === 'agent' && e.epoch !== null && e.epoch !== undefined);
  agents.forEach((e, i) => {
    statements.push({
      Sid: `AgentKeysRevokedAgent${i}`,
      Effect: 'Deny',
      Action: '*',
      Resource: '*',
      Condition: {
        StringEquals: {
          [`aws:PrincipalTag/${AGENT_TAG}`]: e.agentAddress.toLowerCase(),
          'aws:PrincipalTag/agentkeys_user_wallet': e.userWallet.toLowerCase(),
          [`aws:PrincipalTag/${EPOCH_TAG}`]: String(e.epoch),
        },
      },
    });
  });
  if (statements.length === 0) return undefined;
  const text = JSON.stringify({ Version: '2012-10-17', Statement: statements });
  if (text.length > ROLE_POLICY_MAX_CHARS) {
    throw new KillSwitchPolicyTooLarge(
      `the kill switch's deny policy would be ${text.length} characters, over the ${ROLE_POLICY_MAX_CHARS} IAM allows for a role's inline policies`,
    );
  }
  return text;
}

/**
 * How long an entry must stay: a credential minted before the revocation lives at most the OIDC
 * token's lifetime (it can be exchanged at STS until it expires) plus the longest session a data
 * role grants (MaxSessionDuration, at most 12 hours; role chaining keeps the tags but caps the
 * chained session at one hour, inside that), plus clock skew.
 */
export function killSwitchEntryExpiry(revokedAt: Date, opts: { oidcTtlSeconds: number; maxSessionSeconds: number; skewSeconds?: number }): Date {
  return new Date(revokedAt.getTime() + (opts.oidcTtlSeconds + opts.maxSessionSeconds + (opts.skewSeconds ?? 300)) * 1000);
}

/** The role names the deny policy goes on: BROKER_KILL_SWITCH_ROLE_NAMES, else the data role's name. */
export function killSwitchRoleNames(configured: string, dataRoleArn: string | undefined): string[] {
  const listed = configured
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (listed.length > 0) return listed;
  const name = dataRoleArn?.split('/').pop();
  return name ? [name] : [];
}
