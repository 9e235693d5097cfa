import { z } from 'zod';

/**
 * What a grant's scope allows an agent, and how the broker enforces it (docs/mint.md):
 *
 * - `services`: IAM service prefixes (`s3`, `dynamodb`, `execute-api`, …). AWS credentials minted
 *   under the grant carry an inline session policy on AssumeRoleWithWebIdentity that allows
 *   `<service>:*` for exactly these services, so the session can do at most what the data role
 *   allows within them. The OIDC token sent to STS also carries them as the session tag
 *   `agentkeys_scope_services` (space-separated) and the claim `agentkeys_scope`.
 * - `roles`: IAM role ARNs the agent may get credentials for. The broker assumes only
 *   BROKER_DATA_ROLE_ARN; a grant whose roles do not name it mints no AWS credentials.
 * - No scope (or `{}`): the agent mints exactly what the main wallet mints.
 *
 * A bare OIDC token (mint-oidc-jwt) can be presented to STS for any role that trusts the broker,
 * without a session policy, so the broker cannot make STS enforce a scope on it: an agent whose
 * grant has a scope gets AWS credentials only through mint-aws-creds.
 */

export interface GrantScope {
  services?: string[];
  roles?: string[];
}

export const MAX_SCOPE_SERVICES = 16;
export const MAX_SCOPE_ROLES = 16;
/** The session tag value limit of AWS: the joined services must fit. */
export const MAX_SCOPE_TAG_LENGTH = 256;
/** The session tag that carries the services of a scoped grant. */
export const SCOPE_SERVICES_TAG = 'agentkeys_scope_services';

const SERVICE_RE = /^[a-z0-9][a-z0-9-]{0,31}$/;
const ROLE_ARN_RE = /^arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@/-]{1,512}$/;

const unique = (items: string[]) => new Set(items).size === items.length;

/** The scope of POST /v1/grants: only fields the broker enforces, each entry checked. */
export const grantScopeSchema = z
  .object({
    services: z
      .array(z.string().regex(SERVICE_RE, 'scope.services entries are IAM service prefixes: 1-32 lower-case letters, digits and hyphens (e.g. s3, dynamodb)'))
      .min(1, 'scope.services must name at least one service (omit it for all services)')
      .max(MAX_SCOPE_SERVICES, `scope.services: at most ${MAX_SCOPE_SERVICES} services`)
      .refine(unique, 'scope.services has a duplicate entry')
      .refine(
        (s) => s.join(' ').length <= MAX_SCOPE_TAG_LENGTH,
        `scope.services joined by spaces must fit ${MAX_SCOPE_TAG_LENGTH} characters (an AWS session tag)`,
      )
      .optional(),
    roles: z
      .array(z.string().regex(ROLE_ARN_RE, 'scope.roles entries are IAM role ARNs (arn:aws:iam::<12-digit account>:role/<name>)'))
      .min(1, 'scope.roles must name at least one role (omit it for any role)')
      .max(MAX_SCOPE_ROLES, `scope.roles: at most ${MAX_SCOPE_ROLES} roles`)
      .refine(unique, 'scope.roles has a duplicate entry')
      .optional(),
  })
  .strict();

/** Whether the scope restricts anything. */
export function isScoped(scope: GrantScope | undefined): boolean {
  return Boolean(scope?.services?.length || scope?.roles?.length);
}

/** Whether credentials for `roleArn` may be minted under the scope. */
export function scopeAllowsRole(scope: GrantScope | undefined, roleArn: string): boolean {
  return !scope?.roles?.length || scope.roles.includes(roleArn);
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
