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
  /** When it was revoked: a statement collapsed by issue time denies what was issued until revokedAt + the exchange window. */
  revokedAt: Date;
}

/**
 * What ALL the inline policies of one role may hold together: 10,240 characters ("IAM and AWS STS
 * quotas": "the total aggregate policy size (the sum size of all inline policies) per entity", role
 * policy size 10,240; IAM does not count white space). The kill switch's policy shares it with
 * every other inline policy on the role (docs/deploy.md's data permissions, if put inline), so each
 * role's document is rendered against what the others leave (`maxChars`, inlinePolicySize).
 */
export const ROLE_POLICY_MAX_CHARS = 10_240;

/**
 * The characters assumed taken by a role's other inline policies when they cannot be read (no
 * iam:ListRolePolicies or iam:GetRolePolicy), and in the `file` mode, which never sees the role:
 * the document is then rendered against 10,240 − 4,096 = 6,144. docs/deploy.md's data policy is
 * some 250 characters; a role whose others take more is refused with LimitExceeded, and the kill
 * switch then renders smaller (activities/kill-switch.ts).
 */
export const UNREAD_INLINE_RESERVE_CHARS = 4_096;

/**
 * The size IAM counts for a policy document against ROLE_POLICY_MAX_CHARS, assumed on the safe
 * side: AWS documents that white space is not counted, and not exactly which, so only JSON's own
 * white space between tokens (space, tab, CR, LF) is left out and white space inside strings is
 * counted; and IAM's LimitExceeded message speaks of bytes, so a character outside ASCII counts as
 * its UTF-8 bytes. Both can only make the count larger than IAM's, never smaller. (Every document
 * the kill switch renders is compact ASCII JSON: its size is its length.)
 */
export function inlinePolicySize(text: string): number {
  let size = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (!inString) {
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) continue;
      if (c === 0x22) inString = true;
    } else if (c === 0x5c) {
      // A backslash and the (ASCII) character it escapes, which cannot end the string.
      size += Math.min(2, text.length - i);
      i += 1;
      continue;
    } else if (c === 0x22) inString = false;
    if (c < 0x80) size += 1;
    else if (c < 0x800) size += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      // A surrogate pair: one code point, four bytes.
      size += 4;
      i += 1;
    } else size += 3;
  }
  return size;
}

export const KILL_SWITCH_POLICY_NAME = 'agentkeys-kill-switch';

/** Clock skew allowed between the broker, STS and IAM, in every bound of the kill switch. */
const SKEW_SECONDS = 300;

export interface KillSwitchPolicy {
  /** The policy document (JSON text), or undefined when nothing is revoked. */
  document: string | undefined;
  /** User wallets whose entries did not fit one by one: every agent session of theirs issued before a cutoff is denied. */
  collapsedWallets: string[];
  /** Not even that fitted: every agent session of every wallet issued before the latest cutoff is denied. */
  roleWide: boolean;
}

const USER_WALLET_KEY = 'aws:PrincipalTag/agentkeys_user_wallet';
/** Present on every credential an agent minted, absent from an account's own (lib/oidc-claims.ts). */
const AGENT_KEY = `aws:PrincipalTag/${AGENT_TAG}`;

const deny = (Sid: string, Condition: object) => ({ Sid, Effect: 'Deny', Action: '*', Resource: '*', Condition });

/** ISO 8601 in whole seconds, rounded up (the cutoff must not fall before what it has to cover). */
const isoCeil = (ms: number) => new Date(Math.ceil(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');

/**
 * How coarsely the cutoffs of collapsed wallets may be rounded up so that wallets share a statement,
 * finest first: one second (each wallet its own cutoff), then a minute, five, fifteen, an hour.
 * Rounding up only lengthens a collapsed wallet's own deny (its agents' sessions issued in those
 * extra seconds mint again); it never reaches another wallet.
 */
const CUTOFF_GRAINS_SECONDS = [1, 60, 300, 900, 3600];

/** What one wallet listed in a collapsed statement costs at least: its quoted address and a comma. */
const LISTED_WALLET_CHARS = 45;

/**
 * The policy document for the entries. Precise while it fits: one statement listing the revoked
 * grants, one per revoked agent and wallet listing the epochs that ended. When the precise form is
 * over `maxChars` (counted as inlinePolicySize; default the role's whole 10,240, but the activity
 * passes what the role's other inline policies leave), the wallets with the most entries (largest
 * first) are collapsed one by one into a deny by issue time — every agent session of that wallet
 * issued before its last revocation + the exchange window (`aws:TokenIssueTime`, AWS's own "revoke
 * active sessions" condition). Collapsed wallets whose cutoffs round up to the same instant share
 * one statement listing them (a listed wallet costs ~45 characters, a statement ~200), the rounding
 * made coarser until they fit; only past that (some two hundred revoking accounts at once) does one
 * statement cover every agent session. So the deny always covers every credential revoked, and what
 * the size costs is collateral: a collapsed wallet's other agents mint again after the cutoff. One
 * account revoking on purpose can only collapse itself first (docs/kill-switch.md, "Limits"). The
 * role-wide form (~240 characters) is the smallest there is: below that `maxChars` it is returned
 * all the same, and IAM decides.
 */
export function killSwitchPolicy(entries: KillSwitchEntry[], opts: { oidcTtlSeconds: number; maxChars?: number }): KillSwitchPolicy {
  if (entries.length === 0) return { document: undefined, collapsedWallets: [], roleWide: false };
  const maxChars = opts.maxChars ?? ROLE_POLICY_MAX_CHARS;
  const windowMs = (opts.oidcTtlSeconds + SKEW_SECONDS) * 1000;
  const byWallet = new Map<string, KillSwitchEntry[]>();
  for (const e of entries) {
    const w = e.userWallet.toLowerCase();
    const list = byWallet.get(w);
    if (list) list.push(e);
    else byWallet.set(w, [e]);
  }
  const cutoffMs = (list: KillSwitchEntry[]) => list.reduce((max, e) => Math.max(max, e.revokedAt.getTime()), 0) + windowMs;
  const collapsedStatements = (collapsed: Set<string>, grainSeconds: number) => {
    const grainMs = grainSeconds * 1000;
    const byCutoff = new Map<number, string[]>();
    for (const wallet of [...collapsed].sort()) {
      const cutoff = Math.ceil(cutoffMs(byWallet.get(wallet) ?? []) / grainMs) * grainMs;
      const listed = byCutoff.get(cutoff);
      if (listed) listed.push(wallet);
      else byCutoff.set(cutoff, [wallet]);
    }
    return [...byCutoff.entries()]
      .sort(([a], [b]) => a - b)
      .map(([cutoff, wallets], i) =>
        deny(`AgentKeysRevokedWallets${i}`, {
          StringEquals: { [USER_WALLET_KEY]: wallets.length === 1 ? wallets[0] : wallets },
          Null: { [AGENT_KEY]: 'false' },
          DateLessThan: { 'aws:TokenIssueTime': isoCeil(cutoff) },
        }),
      );
  };
  const grantIds = (list: KillSwitchEntry[]) => [...new Set(list.filter((e) => e.kind === 'grant' && e.grantId).map((e) => e.grantId as string))].sort();
  /** The statements naming each revoked agent and wallet, with the epochs that ended. */
  const agentStatements = (list: KillSwitchEntry[]) => {
    const epochs = new Map<string, { agent: string; wallet: string; epochs: Set<string> }>();
    for (const e of list) {
      if (e.kind !== 'agent' || e.epoch === null || e.epoch === undefined) continue;
      const agent = e.agentAddress.toLowerCase();
      const wallet = e.userWallet.toLowerCase();
      const key = `${agent}/${wallet}`;
      const seen = epochs.get(key) ?? { agent, wallet, epochs: new Set<string>() };
      seen.epochs.add(String(e.epoch));
      epochs.set(key, seen);
    }
    return [...epochs.values()].map((a, i) => {
      const ended = [...a.epochs].sort((x, y) => Number(x) - Number(y));
      return deny(`AgentKeysRevokedAgent${i}`, {
        StringEquals: { [AGENT_KEY]: a.agent, [USER_WALLET_KEY]: a.wallet, [`aws:PrincipalTag/${EPOCH_TAG}`]: ended.length === 1 ? ended[0] : ended },
      });
    });
  };
  const render = (collapsed: Set<string>, grainSeconds: number) => {
    const precise = entries.filter((e) => !collapsed.has(e.userWallet.toLowerCase()));
    const statements: object[] = [];
    const grants = grantIds(precise);
    if (grants.length > 0) statements.push(deny('AgentKeysRevokedGrants', { StringEquals: { [`aws:PrincipalTag/${GRANT_TAG}`]: grants } }));
    statements.push(...agentStatements(precise), ...collapsedStatements(collapsed, grainSeconds));
    return JSON.stringify({ Version: '2012-10-17', Statement: statements });
  };
  const fits = (text: string) => inlinePolicySize(text) <= maxChars;
  const exact = render(new Set(), 1);
  if (fits(exact)) return { document: exact, collapsedWallets: [], roleWide: false };
  // What each wallet's precise entries weigh at least (its agent statements, its grant ids in the
  // shared list): the heaviest are collapsed first, and no document is rendered before what is kept
  // could fit.
  const weight = new Map<string, number>();
  for (const [wallet, list] of byWallet) {
    const agents = agentStatements(list).reduce((n, st) => n + JSON.stringify(st).length + 1, 0);
    weight.set(wallet, agents + grantIds(list).reduce((n, id) => n + id.length + 3, 0));
  }
  const order = [...weight.entries()].sort(([a, x], [b, y]) => y - x || (a < b ? -1 : 1)).map(([w]) => w);
  const total = [...weight.values()].reduce((a, b) => a + b, 0);
  // The finest rounding at which the collapsed wallets fit, and at it as few collapsed as will fit:
  // a coarser rounding lengthens every collapsed wallet's deny, one more wallet collapsed only its own.
  for (const grain of CUTOFF_GRAINS_SECONDS) {
    const collapsed = new Set<string>();
    let kept = total;
    for (const w of order) {
      collapsed.add(w);
      kept -= weight.get(w) ?? 0;
      // Past this many listed wallets the collapsed statements alone are too large at any rounding.
      if (collapsed.size * LISTED_WALLET_CHARS > maxChars) break;
      if (kept + collapsed.size * LISTED_WALLET_CHARS > maxChars) continue;
      const text = render(collapsed, grain);
      if (fits(text)) return { document: text, collapsedWallets: [...collapsed].sort(), roleWide: false };
    }
  }
  const everyAgent = deny('AgentKeysRevokedAll', {
    Null: { [AGENT_KEY]: 'false' },
    DateLessThan: { 'aws:TokenIssueTime': isoCeil(cutoffMs(entries)) },
  });
  return { document: JSON.stringify({ Version: '2012-10-17', Statement: [everyAgent] }), collapsedWallets: [...byWallet.keys()].sort(), roleWide: true };
}

/**
 * How long an entry must stay: a credential minted before the revocation lives at most the OIDC
 * token's lifetime (it can be exchanged at STS until it expires) plus the longest session a data
 * role grants (MaxSessionDuration, at most 12 hours; role chaining keeps the tags but caps the
 * chained session at one hour, inside that), plus clock skew.
 */
export function killSwitchEntryExpiry(revokedAt: Date, opts: { oidcTtlSeconds: number; maxSessionSeconds: number }): Date {
  return new Date(revokedAt.getTime() + (opts.oidcTtlSeconds + opts.maxSessionSeconds + SKEW_SECONDS) * 1000);
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
