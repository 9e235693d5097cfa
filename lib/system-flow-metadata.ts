import type { FlowMetadata } from './flow-metadata';

/**
 * Temporal user metadata of the broker's flows that are not login methods (a login method's is in
 * its registry entry, lib/login-methods.ts; lib/flow-metadata.ts lists them all). Nothing but
 * constants: the workflow bundle reads it too (the mint workflow starts the approval flow).
 */
export const SYSTEM_FLOW_METADATA = {
  maintenance: {
    staticSummary: 'Maintenance: purge expired rows',
    staticDetails:
      'Hourly Schedule: drops rows that no longer decide anything: expired replay guards, sessions, refresh tokens and TEE token revocations, old email-send counts, finished approval requests.',
  },
  audit_anchor: {
    staticSummary: 'Audit anchor: sign the chain head',
    staticDetails: "Schedule: signs the audit chain's newest head with the audit key.",
  },
  kill_switch: {
    staticSummary: 'Kill switch: deny revoked agents at IAM',
    staticDetails:
      "Started by a revocation: writes the deny policy of revoked agents' sessions onto the data roles, again as entries expire; ends when none is left.",
  },
  approval: {
    staticSummary: 'Approval of a mint',
    staticDetails: "Waits for the grant holder's decision on one mint, then hands the credential to the agent once.",
  },
} as const satisfies Record<string, FlowMetadata>;
