import { LOGIN_METHOD_IDS, LOGIN_METHODS, type LoginFlow } from './login-methods';
import { SYSTEM_FLOW_METADATA } from './system-flow-metadata';
/**
 * Temporal user metadata of each broker workflow: the one-line summary the Web UI's list shows
 * and the details its workflow page shows. Fixed words only — never an email, a wallet address,
 * an account, a code or a token — so the list is readable to anyone who may see the workflow. The
 * run's current stage and outcome follow as its current details (workflows/progress.ts) and in
 * the AkStage / AkOutcome search attributes.
 */
export interface FlowMetadata {
  staticSummary: string;
  staticDetails: string;
}

/** The login methods' metadata, keyed by their flow (from the registry, lib/login-methods.ts). */
const LOGIN_FLOW_METADATA = Object.fromEntries(LOGIN_METHOD_IDS.map((id) => [LOGIN_METHODS[id].flow, LOGIN_METHODS[id].metadata])) as Record<
  LoginFlow,
  FlowMetadata
>;

export const FLOW_METADATA = {
  ...LOGIN_FLOW_METADATA,
  ...SYSTEM_FLOW_METADATA,
} as const satisfies Record<string, FlowMetadata>;
