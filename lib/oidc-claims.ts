import { SignJWT, type JWTPayload } from 'jose';
import { isScoped, SCOPE_SERVICES_TAG, scopeServicesTag, type GrantScope } from './grant-scope';
import { bareOmniHex, OMNI_ACCOUNT_RE } from './omni';
import type { SigningKey } from './signing-key';

/**
 * The OIDC tokens the broker issues for AWS STS AssumeRoleWithWebIdentity (docs/contracts.md §4), as the
 * AgentKeys Rust broker shapes them: ES256, header kid + typ "JWT", aud "sts.amazonaws.com",
 * sub "agentkeys:agent:<wallet>", and the AWS session-tag claim that turns the wallet into the
 * `agentkeys_user_wallet` principal tag (transitive across role chaining).
 */
export const OIDC_AUDIENCE = 'sts.amazonaws.com';
export const AWS_TAGS_CLAIM = 'https://aws.amazon.com/tags';

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
  principal_tags: { agentkeys_user_wallet: [string]; agentkeys_actor_omni?: [string]; [SCOPE_SERVICES_TAG]?: [string] };
  transitive_tag_keys: string[];
}

export interface OidcTokenClaims extends JWTPayload {
  iss: string;
  sub: string;
  aud: typeof OIDC_AUDIENCE;
  iat: number;
  nbf: number;
  exp: number;
  agentkeys_user_wallet: string;
  agentkeys_child_wallet?: string;
  agentkeys_grant_id?: string;
  agentkeys_scope?: GrantScope;
  /** The caller's OmniAccount as bare lower-case hex (the AgentKeys v2 actor; no 0x). */
  agentkeys_actor_omni?: string;
  [AWS_TAGS_CLAIM]: AwsTagsClaim;
}

/**
 * An AWS principal-tag value: an OmniAccount is tagged as bare lower-case hex, never with `0x`
 * (litentry/agent-terrier `agentkeys-broker-server`, incident #242: a `0x` in the tag breaks S3
 * prefix policies that interpolate `${aws:PrincipalTag/…}` into `bots/<omni>/…`). An EVM address
 * keeps its `0x` form, as those policies expect.
 */
export function principalTagValue(wallet: string): string {
  return OMNI_ACCOUNT_RE.test(wallet.toLowerCase()) ? bareOmniHex(wallet) : wallet;
}

/**
 * The claims of one token: `wallet` is the main wallet (lower-case 0x address) or the OmniAccount;
 * `actorOmni` is the caller's OmniAccount, carried as `agentkeys_actor_omni` (claim and transitive
 * principal tag, bare hex) as the AgentKeys v2 broker does.
 */
export function oidcTokenClaims(opts: {
  issuer: string;
  wallet: string;
  nowSeconds: number;
  ttlSeconds: number;
  grant?: OidcGrantClaims;
  actorOmni?: string;
}): OidcTokenClaims {
  const actor = opts.actorOmni === undefined ? undefined : bareOmniHex(opts.actorOmni);
  const tags: AwsTagsClaim = { principal_tags: { agentkeys_user_wallet: [principalTagValue(opts.wallet)] }, transitive_tag_keys: ['agentkeys_user_wallet'] };
  if (actor !== undefined) {
    tags.principal_tags.agentkeys_actor_omni = [actor];
    tags.transitive_tag_keys.push('agentkeys_actor_omni');
  }
  const claims: OidcTokenClaims = {
    iss: opts.issuer,
    sub: `agentkeys:agent:${opts.wallet}`,
    aud: OIDC_AUDIENCE,
    iat: opts.nowSeconds,
    nbf: opts.nowSeconds,
    exp: opts.nowSeconds + opts.ttlSeconds,
    agentkeys_user_wallet: opts.wallet,
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
  return claims;
}

/** Signs the claims with the active OIDC key (header alg ES256, kid, typ JWT). */
export async function signOidcToken(key: SigningKey, claims: OidcTokenClaims): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: 'JWT' }).sign(key.privateKey);
}

const STS_SESSION_NAME_MAX = 64;

/** STS RoleSessionName: `agentkeys-<wallet filtered to [A-Za-z0-9_-]>-<unix s>`, cut to 64 characters. */
export function stsSessionName(wallet: string, nowSeconds: number): string {
  return `agentkeys-${wallet.replace(/[^A-Za-z0-9_-]/g, '')}-${nowSeconds}`.slice(0, STS_SESSION_NAME_MAX);
}
