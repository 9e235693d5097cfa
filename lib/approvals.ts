/**
 * Approval of a mint (docs/approvals.md): a grant's approval policy, whether a mint needs the
 * holder's decision under it, the request's hash and the EIP-712 typed data a wallet holder signs
 * over it. Pure: shared by the activities, the API and the CLI (which shows what it signs).
 */
import { canonicalJson } from './canonical-json';
import { sha256Hex } from './digest';

/**
 * Bounds of a grant's decision timeout (seconds): long enough for a person, short enough that a
 * waiting agent is not stuck. The lower bound is BROKER_APPROVAL_TIMEOUT_MIN_SECONDS (30 by default).
 */
export const APPROVAL_TIMEOUT_MAX_SECONDS = 3600;
export const APPROVAL_TIMEOUT_DEFAULT_SECONDS = 300;
/** The agent's stated reason, at most this many characters. */
export const APPROVAL_REASON_MAX_LENGTH = 280;

/**
 * A grant's approval policy as stored on the grant. `always`: every mint waits for the holder.
 * `beyond`: a mint waits when it asks for more than the standing limit — a longer duration than
 * `max_duration_seconds` (or, under that limit, a target that takes no duration and is not named in
 * `targets`), or a target not in `targets` — and mints at once otherwise.
 */
export interface ApprovalPolicy {
  mode: 'always' | 'beyond';
  max_duration_seconds?: number;
  /** Mint targets (aws, oidc, gcp) that mint without a decision under `beyond`. */
  targets?: string[];
  timeout_seconds: number;
  /** Where the notification goes (normalised), once proven; else the account's own verified address, if it has one. */
  notify_email?: string;
  /**
   * Unix seconds: when the broker found that the holder controls `notify_email` — the account's own
   * verified address, or shown a live session of that address. A policy without it (written before
   * the check) is never mailed at its `notify_email`.
   */
  notify_email_proven_at?: number;
}

/** A policy as the holder asks for it: `notify_email_proof` is a live session of `notify_email`, checked and never stored. */
export type ApprovalPolicyRequest = Omit<ApprovalPolicy, 'notify_email_proven_at'> & { notify_email_proof?: string };

/** The account's own verified address: its email login identity, else the verified email its Google login reported. */
export function verifiedEmailOf(user: { identity_type: string; identity_value: string; email: string | null } | undefined): string | undefined {
  if (user?.identity_type === 'email') return user.identity_value;
  return user?.email ?? undefined;
}

/** Where a policy's notices may go: its `notify_email` only when proven (undefined: the account's own verified address). */
export function provenNotifyEmail(policy: ApprovalPolicy | null | undefined): string | undefined {
  return policy?.notify_email !== undefined && policy.notify_email_proven_at !== undefined ? policy.notify_email : undefined;
}

/**
 * Why a mint under this policy needs a decision, or undefined when it mints at once. Under
 * `max_duration_seconds` a target without a numeric `duration_seconds` (a bare OIDC token, a Google
 * token) waits too unless `targets` names it: its holder, not the broker, picks the lifetime of
 * what it gets with it (AssumeRoleWithWebIdentity's DurationSeconds, Google's STS), so the broker
 * cannot hold that to the limit.
 */
export function approvalNeeded(policy: ApprovalPolicy | null | undefined, target: string, params: Record<string, string | number>): string | undefined {
  if (!policy) return undefined;
  if (policy.mode === 'always') return 'the grant asks for approval of every mint';
  if (policy.targets && !policy.targets.includes(target)) return `the grant mints ${target} only with approval`;
  if (policy.max_duration_seconds === undefined) return undefined;
  const duration = params.duration_seconds;
  if (typeof duration !== 'number')
    return policy.targets?.includes(target)
      ? undefined
      : `${target} takes no duration_seconds: the broker cannot hold the lifetime of the credential its token is exchanged for to the grant's standing ${policy.max_duration_seconds} s (name ${target} in approval.targets to mint it at once)`;
  if (duration > policy.max_duration_seconds) return `duration_seconds ${duration} is beyond the grant's standing ${policy.max_duration_seconds}`;
  return undefined;
}

/** What the holder decides on: the fields of the request the hash (and so the signature) covers. */
export interface ApprovalRequestFields {
  approval_id: string;
  grant_id: string;
  main_address: string;
  agent_address: string;
  target: string;
  params: Record<string, string | number>;
  /** The grant's scope the mint runs under (roles, services, other targets' sections). */
  scope: Record<string, unknown>;
  reason: string | null;
  /** Unix seconds. */
  requested_at: number;
  expires_at: number;
}

/** 0x + sha256 of the request's canonical JSON (RFC 8785 style, lib/canonical-json.ts). */
export function approvalRequestHash(f: ApprovalRequestFields): `0x${string}` {
  return `0x${sha256Hex(canonicalJson(f))}`;
}

export type ApprovalDecision = 'approve' | 'deny';

export const APPROVAL_EIP712_TYPES = {
  MintApproval: [
    { name: 'approvalId', type: 'string' },
    { name: 'requestHash', type: 'bytes32' },
    { name: 'decision', type: 'string' },
  ],
} as const;

/**
 * The EIP-712 typed data a wallet holder signs to decide (viem's signTypedData / hashTypedData
 * shape). The domain names the broker (its public host) so a signature for one broker is not one
 * for another; the message binds the approval id, the request's hash and the decision, so it
 * decides this request only, and only this way.
 */
export function approvalTypedData(broker: string, approvalId: string, requestHash: `0x${string}`, decision: ApprovalDecision) {
  const salt: `0x${string}` = `0x${sha256Hex(`agentkeys-broker:${broker}`)}`;
  return {
    domain: { name: 'AgentKeys', version: '1', salt },
    types: APPROVAL_EIP712_TYPES,
    primaryType: 'MintApproval' as const,
    message: { approvalId, requestHash, decision },
  };
}

/** What a mint answers when its grant asks for the holder's decision first (the request's row and audit row written). */
export interface ApprovalOpened {
  approval_id: string;
  /** Unix seconds. */
  requested_at: number;
  expires_at: number;
  /** Seconds the agent waits between polls at first. */
  interval: number;
}

/**
 * The holder's decision, as the API checked it: the account that decides and its proof — the
 * EIP-712 signature (the receipt), or the re-authenticated session's handle.
 */
export interface ApprovalDecisionInput {
  decision: ApprovalDecision;
  omni_account: string;
  proof: { via: 'eip712'; signer: string; signature: string; replay_key: string } | { via: 'fresh-session'; session_hash: string; auth_time: number };
  http_request_id?: string;
}
