import type { GrantScope } from './grant-scope';

/**
 * The text an agent wallet signs (EIP-191 personal_sign) to accept a grant. It names the broker,
 * the grant, both wallets, the scope and the expiry, so a signature accepts exactly that grant on
 * exactly that broker and nothing else. Lines joined by "\n", no trailing newline; addresses
 * lower-case; lists comma-separated in the order of the grant, `any` when absent.
 *
 * ```
 * AgentKeys: accept a grant.
 * Signing this lets the main wallet below use this agent wallet to mint credentials for it. It sends no transaction and costs no gas.
 * Broker: broker.example.com
 * Grant: grt_0123456789abcdef0123456789abcdef
 * Main wallet: 0x70997970c51812dc3a010c7d01b50e0d17dc79c8
 * Agent wallet: 0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc
 * Services: s3,dynamodb
 * Roles: any
 * Expires at: 1767225900
 * ```
 */
export interface GrantAcceptanceFields {
  /** Host (and port) of BROKER_PUBLIC_URL. */
  broker: string;
  grantId: string;
  mainAddress: string;
  agentAddress: string;
  scope: GrantScope;
  /** Unix seconds. */
  expiresAt: number;
}

/** Other mint targets' scope sections (e.g. gcp), one line per field, in a fixed order; none when absent. */
function otherScopeLines(scope: GrantScope): string[] {
  const lines: string[] = [];
  for (const section of Object.keys(scope)
    .filter((k) => k !== 'services' && k !== 'roles')
    .sort()) {
    const fields = (scope[section] ?? {}) as Record<string, unknown>;
    for (const key of Object.keys(fields).sort()) {
      const value = fields[key];
      if (Array.isArray(value) && value.length) lines.push(`Scope ${section}.${key}: ${value.map(String).join(',')}`);
    }
  }
  return lines;
}

export function buildGrantAcceptanceMessage(f: GrantAcceptanceFields): string {
  const list = (items: string[] | undefined) => (items?.length ? items.join(',') : 'any');
  return [
    'AgentKeys: accept a grant.',
    'Signing this lets the main wallet below use this agent wallet to mint credentials for it. It sends no transaction and costs no gas.',
    `Broker: ${f.broker}`,
    `Grant: ${f.grantId}`,
    `Main wallet: ${f.mainAddress.toLowerCase()}`,
    `Agent wallet: ${f.agentAddress.toLowerCase()}`,
    `Services: ${list(f.scope.services)}`,
    `Roles: ${list(f.scope.roles)}`,
    ...otherScopeLines(f.scope),
    `Expires at: ${f.expiresAt}`,
  ].join('\n');
}

/** used_signatures.purpose of an accepted grant's signature. */
export const GRANT_ACCEPT_PROOF_PURPOSE = 'grant_accept';
