import { KeyObject, sign } from 'node:crypto';
import type { JWTPayload } from 'jose';
import { isScoped, SCOPE_SERVICES_TAG, scopeServicesTag, type GrantScope } from './grant-scope';
import { bareOmniHex } from './omni';
import type { SigningKey } from './signing-key';

/**
 * The OIDC tokens the broker issues for AWS STS AssumeRoleWithWebIdentity (docs/contracts.md §4), as the
 * AgentKeys Rust broker shapes them: ES256, header kid + typ "JWT", aud BROKER_STS_AUDIENCE
 * (default OIDC_AUDIENCE, "sts.amazonaws.com"),
 * sub "agentkeys:agent:<wallet>", and the AWS session-tag claim that turns the wallet into the
 * `agentkeys_user_wallet` principal tag (transitive across role chaining).
 */
export const OIDC_AUDIENCE = 'sts.amazonaws.com';
export const AWS_TAGS_CLAIM = 'https://aws.amazon.com/tags';
/** The claim STS takes as the session's SourceIdentity (IAM User Guide, "Monitor and control actions taken with assumed roles"). */
export const AWS_SOURCE_IDENTITY_CLAIM = 'https://aws.amazon.com/source_identity';
/** RFC 8693 §4.1: the party acting for the subject. */
export const ACT_CLAIM = 'act';
/** Session tags naming the acting agent, its grant and the agent's revocation epoch (docs/kill-switch.md). */
export const AGENT_TAG = 'agentkeys_agent_wallet';
export const GRANT_TAG = 'agentkeys_grant_id';
export const EPOCH_TAG = 'agentkeys_revocation_epoch';

export const OIDC_CLAIMS_SUPPORTED = [
  'iss',
  'sub',
  'aud',
  'iat',
  'exp',
  'nbf',
  'agentkeys_user_wallet',
  'agentkeys_child_wallet',
  'agentkeys_grant_id',
  'agentkeys_operation',
  'agentkeys_scope',
  'agentkeys_actor_omni',
  AWS_TAGS_CLAIM,
  AWS_SOURCE_IDENTITY_CLAIM,
  ACT_CLAIM,
] as const;

/** An agent wallet minting under a grant of the main wallet. */
export interface OidcGrantClaims {
  grantId: string;
  /** The agent's EVM address, lower-case. */
  childWallet: string;
  /** The grant's scope: carried as the `agentkeys_scope` claim and the `agentkeys_scope_services` session tag. */
  scope?: GrantScope;
}

/**
 * The AWS session-tag claim: one value per tag; the wallet tag always, the actor tag when the
 * caller is known, the scope tag under a grant with services.
 */
export interface AwsTagsClaim {
  principal_tags: {
    agentkeys_user_wallet: [string];
    agentkeys_actor_omni?: [string];
    [SCOPE_SERVICES_TAG]?: [string];
    [AGENT_TAG]?: [string];
    [GRANT_TAG]?: [string];
    [EPOCH_TAG]?: [string];
  };
  transitive_tag_keys: string[];
}

export interface OidcTokenClaims extends JWTPayload {
  iss: string;
  sub: string;
  /** The target's audience (sts.amazonaws.com for AWS; a pool provider for Google Cloud). */
  aud: string;
  iat: number;
  nbf: number;
  exp: number;
  agentkeys_user_wallet: string;
  agentkeys_child_wallet?: string;
  agentkeys_grant_id?: string;
  agentkeys_scope?: GrantScope;
  /** The caller's AgentKeys actor identifier (lib/actor-omni.ts): bare lower-case hex, no 0x. */
  agentkeys_actor_omni?: string;
  [AWS_TAGS_CLAIM]: AwsTagsClaim;
  /** RFC 8693 §4.1 actor claim: who acts for `sub` (an agent under a grant). */
  act?: { sub: string };
  [AWS_SOURCE_IDENTITY_CLAIM]?: string;
}

const EVM_WALLET_RE = /^0x[0-9a-f]{40}$/;

/** An actor identifier in the form claims and tags carry it: trimmed, no `0x`, lower-case (as `build_oidc_jwt_claims` normalises it). */
function bareActor(actor: string): string {
  return actor.trim().replace(/^0x/i, '').toLowerCase();
}

/**
 * The wallet as `sub`, `agentkeys_user_wallet` and its tag carry it: the lower-case 0x address of a
 * wallet; for an account without one (minting for its OmniAccount), the bare actor identifier, as
 * AgentKeys' `build_oidc_jwt_claims` falls back (litentry/agent-terrier c348357,
 * `crates/agentkeys-broker-server/src/handlers/oidc.rs`): never a `0x`, which breaks S3 prefix
 * policies that interpolate `${aws:PrincipalTag/…}` into `bots/<id>/…` (its incident #242).
 */
export function userWalletValue(wallet: string, actor: string | undefined): string {
  const lower = wallet.toLowerCase();
  if (EVM_WALLET_RE.test(lower)) return lower;
  return actor !== undefined ? bareActor(actor) : bareOmniHex(wallet);
}

/**
 * The claims of one token: `wallet` is the main wallet (lower-case 0x address) or, for an account
 * without one, its OmniAccount; `actorId` is the caller's AgentKeys actor identifier
 * (lib/actor-omni.ts), carried as `agentkeys_actor_omni` (claim and transitive principal tag, bare
 * hex) as the AgentKeys broker does. Runs started before the actor was carried pass none.
 */
export function oidcTokenClaims(opts: {
  issuer: string;
  wallet: string;
  nowSeconds: number;
  ttlSeconds: number;
  grant?: OidcGrantClaims;
  actorId?: string;
  /**
   * The mint target's audience (activities/mint-targets): required, no default — each target names
   * its own (BROKER_STS_AUDIENCE for the AWS targets), so a target whose audience went missing cannot
   * sign a token for another's.
   */
  audience: string;
  /** The agent acting under the grant: adds `act`, the source identity and the agent/grant/epoch tags (withActingClaims). */
  acting?: ActingContext;
}): OidcTokenClaims {
  // Typed as required, and checked where it is used: a parameter lost on its way (a flow's history is untyped) fails the mint.
  if (typeof opts.audience !== 'string' || opts.audience === '') throw new RangeError('the token names no audience');
  const actor = opts.actorId === undefined ? undefined : bareActor(opts.actorId);
  const userWallet = userWalletValue(opts.wallet, actor);
  const tags: AwsTagsClaim = { principal_tags: { agentkeys_user_wallet: [userWallet] }, transitive_tag_keys: ['agentkeys_user_wallet'] };
  if (actor !== undefined) {
    tags.principal_tags.agentkeys_actor_omni = [actor];
    tags.transitive_tag_keys.push('agentkeys_actor_omni');
  }
  const claims: OidcTokenClaims = {
    iss: opts.issuer,
    sub: `agentkeys:agent:${userWallet}`,
    aud: opts.audience,
    iat: opts.nowSeconds,
    nbf: opts.nowSeconds,
    exp: opts.nowSeconds + opts.ttlSeconds,
    agentkeys_user_wallet: userWallet,
    ...(actor !== undefined ? { agentkeys_actor_omni: actor } : {}),
    [AWS_TAGS_CLAIM]: tags,
  };
  if (opts.grant) {
    claims.agentkeys_child_wallet = opts.grant.childWallet;
    claims.agentkeys_grant_id = opts.grant.grantId;
    const scope = opts.grant.scope;
    if (scope && isScoped(scope)) {
      claims.agentkeys_scope = { ...(scope.services ? { services: scope.services } : {}), ...(scope.roles ? { roles: scope.roles } : {}) };
      const servicesTag = scopeServicesTag(scope);
      if (servicesTag !== undefined) {
        // Transitive, so a role chained from the data role keeps the restriction visible to its policies.
        tags.principal_tags[SCOPE_SERVICES_TAG] = [servicesTag];
        tags.transitive_tag_keys.push(SCOPE_SERVICES_TAG);
      }
    }
  }
  return withActingClaims(claims, opts.acting);
}

/** An agent acting for an account under a grant, as credentials name it. */
export interface ActingContext {
  /** The agent's EVM address, lower-case. */
  agentWallet: string;
  grantId: string;
  /** The agent's revocation epoch for this account when the credential was minted (docs/kill-switch.md). */
  epoch: number;
}

/**
 * AWS limits on what a web identity token may ask for (IAM User Guide, "Pass session tags in AWS
 * STS" and "Passing session tags using AssumeRoleWithWebIdentity"; "Monitor and control actions
 * taken with assumed roles" for source identity): at most 50 tags, keys 1-128 and values 0-256
 * characters of letters, digits, spaces and `_ . : / = + - @`, no `aws:` prefix, keys unique
 * ignoring case; a source identity is 2-64 characters of `[\w+=,.@-]` and does not start with `aws:`.
 * The STS stand-in (fixtures/sts.ts) refuses what breaks them, as STS does.
 */
export const AWS_LIMITS = {
  maxTags: 50,
  tagKey: /^[\p{L}\p{Z}\p{N}_.:/=+\-@]{1,128}$/u,
  tagValue: /^[\p{L}\p{Z}\p{N}_.:/=+\-@]{0,256}$/u,
  sourceIdentity: /^[\w+=,.@-]{2,64}$/,
  reservedPrefix: /^aws:/i,
} as const;

export function isValidSourceIdentity(value: string): boolean {
  return AWS_LIMITS.sourceIdentity.test(value) && !AWS_LIMITS.reservedPrefix.test(value);
}

export function isValidTag(key: string, value: string): boolean {
  return AWS_LIMITS.tagKey.test(key) && !AWS_LIMITS.reservedPrefix.test(key) && AWS_LIMITS.tagValue.test(value);
}

/**
 * Names the acting agent in the claims, beside the account they are minted for: the RFC 8693 §4.1
 * `act` claim (`act.sub` in the same subject form as `sub`), the agent as the AWS SourceIdentity
 * (set once, kept across role chaining, shown in CloudTrail) and transitive session tags for the
 * agent, the grant and the agent's revocation epoch, on which the kill switch's deny statements key.
 * Returns new claims; throws a RangeError for a value AWS would refuse (the mint fails rather than
 * minting a credential that names nobody).
 */
export function withActingClaims(claims: OidcTokenClaims, acting: ActingContext | undefined): OidcTokenClaims {
  if (acting === undefined) return claims;
  const agent = acting.agentWallet.toLowerCase();
  const epoch = String(acting.epoch);
  if (!isValidSourceIdentity(agent)) throw new RangeError(`the agent ${JSON.stringify(agent)} is not a valid AWS source identity`);
  for (const [k, v] of [
    [AGENT_TAG, agent],
    [GRANT_TAG, acting.grantId],
    [EPOCH_TAG, epoch],
  ] as const) {
    if (!isValidTag(k, v)) throw new RangeError(`session tag ${k}=${JSON.stringify(v)} breaks the AWS tag limits`);
  }
  const old = claims[AWS_TAGS_CLAIM];
  const tags: AwsTagsClaim = {
    principal_tags: { ...old.principal_tags, [AGENT_TAG]: [agent], [GRANT_TAG]: [acting.grantId], [EPOCH_TAG]: [epoch] },
    transitive_tag_keys: [...old.transitive_tag_keys.filter((k) => k !== AGENT_TAG && k !== GRANT_TAG && k !== EPOCH_TAG), AGENT_TAG, GRANT_TAG, EPOCH_TAG],
  };
  if (Object.keys(tags.principal_tags).length > AWS_LIMITS.maxTags) throw new RangeError(`more than ${AWS_LIMITS.maxTags} session tags`);
  return { ...claims, act: { sub: `agentkeys:agent:${agent}` }, [AWS_SOURCE_IDENTITY_CLAIM]: agent, [AWS_TAGS_CLAIM]: tags };
}

/** node:crypto's handle on each WebCrypto signing key, made once per key. */
const nativeKeys = new WeakMap<SigningKey['privateKey'], KeyObject>();

/**
 * Signs the claims with the active OIDC key (header alg ES256, kid, typ JWT): the compact JWS that
 * jose's SignJWT makes (RFC 7515; the signature r‖s, RFC 7518 §3.4), signed with node:crypto's
 * synchronous sign instead of a WebCrypto round trip through the thread pool (docs/performance.md).
 */
export async function signOidcToken(key: SigningKey, claims: OidcTokenClaims): Promise<string> {
  let native = nativeKeys.get(key.privateKey);
  if (!native) {
    native = KeyObject.from(key.privateKey);
    nativeKeys.set(key.privateKey, native);
  }
  const part = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const signingInput = `${part({ alg: 'ES256', kid: key.kid, typ: 'JWT' })}.${part(claims)}`;
  const signature = sign('sha256', Buffer.from(signingInput), { key: native, dsaEncoding: 'ieee-p1363' });
  return `${signingInput}.${signature.toString('base64url')}`;
}

const STS_SESSION_NAME_MAX = 64;

/** STS RoleSessionName: `agentkeys-<wallet filtered to [A-Za-z0-9_-]>-<unix s>`, cut to 64 characters. */
export function stsSessionName(wallet: string, nowSeconds: number): string {
  return `agentkeys-${wallet.replace(/[^A-Za-z0-9_-]/g, '')}-${nowSeconds}`.slice(0, STS_SESSION_NAME_MAX);
}
