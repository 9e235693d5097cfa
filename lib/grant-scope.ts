/**
 * What a grant's scope is: one section per mint target that restricts it (each target validates
 * and enforces its own: activities/mint-targets/). `services` and `roles` are the AWS target's
 * (top-level, as the grants API has always taken them); other targets name theirs (`gcp`). No
 * scope (or `{}`): the agent mints exactly what the main wallet mints. A scope that names any
 * section mints only the targets whose section it names.
 *
 * The AWS helpers stay here because the OIDC claims (lib/oidc-claims.ts) carry them:
 *
 * - `services`: IAM service prefixes. AWS credentials minted under the grant carry an inline
 *   session policy allowing `<service>:*` for exactly these; the token sent to STS also carries
 *   them as the session tag `agentkeys_scope_services` and the claim `agentkeys_scope`.
 * - `roles`: IAM role ARNs the agent may get credentials for (the broker assumes only
 *   BROKER_DATA_ROLE_ARN).
 */

export interface GrantScope {
  services?: string[];
  roles?: string[];
  /** Other targets' sections (e.g. `gcp`), as each target's schema validated them. */
  [section: string]: unknown;
}

/** The session tag value limit of AWS: the joined services must fit. */
export const MAX_SCOPE_TAG_LENGTH = 256;
/** The session tag that carries the services of a scoped grant. */
export const SCOPE_SERVICES_TAG = 'agentkeys_scope_services';

function restricts(value: unknown): boolean {
  if (Array.isArray(value)) return value.length > 0;
  if (value && typeof value === 'object') return Object.values(value).some(restricts);
  return false;
}

/** Whether the scope restricts anything (any section with an entry). */
export function isScoped(scope: GrantScope | undefined): boolean {
  return Object.values(scope ?? {}).some(restricts);
}

/** Whether the scope restricts through one of these sections. */
export function namesSection(scope: GrantScope | undefined, sections: string[]): boolean {
  return sections.some((s) => restricts(scope?.[s]));
}

/**
 * The inline session policy (the `Policy` parameter of AssumeRoleWithWebIdentity) of a scope:
 * allow `<service>:*` on every resource for its services, sorted. Undefined when the scope names
 * no services (the session then has the data role's permissions).
 */
export function scopeSessionPolicy(scope: GrantScope | undefined): string | undefined {
  const services = scope?.services;
  if (!services?.length) return undefined;
  const actions = [...new Set(services)].sort().map((s) => `${s}:*`);
  return JSON.stringify({ Version: '2012-10-17', Statement: [{ Sid: 'AgentKeysGrantScope', Effect: 'Allow', Action: actions, Resource: '*' }] });
}

/** The value of the `agentkeys_scope_services` session tag: the services sorted, space-separated. */
export function scopeServicesTag(scope: GrantScope | undefined): string | undefined {
  const services = scope?.services;
  return services?.length ? [...new Set(services)].sort().join(' ') : undefined;
}
