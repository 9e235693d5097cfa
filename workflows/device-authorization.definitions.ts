/** Device authorization grant (RFC 8628; workflow `device-authorization/…`): its input, updates, query and outcomes. */
import { defineQuery, defineUpdate } from '@temporalio/workflow';
import type { LoginOutcome } from './definitions';

export const DEVICE_AUTHORIZATION_ID_PREFIX = 'device-authorization/';

export interface DeviceAuthorizationSettings {
  /** Seconds the request lives (RFC 8628 §3.2 `expires_in`): the person's decision and the device's collection both fall inside. */
  ttlSeconds: number;
  /** Seconds the device waits between polls at first (§3.2 `interval`); slow_down adds 5 for that device. */
  intervalSeconds: number;
  /** Seconds after expiry the flow still answers expired_token (then it ends, and any poll is invalid_grant). */
  graceSeconds: number;
  /** Polls the run records (default MAX_POLLS_PER_RUN, workflows/poll-pacing.ts); the workflow tests lower it. */
  pollsPerRun?: number;
}

/**
 * Input of deviceAuthorizationWorkflow (workflow id device-authorization/<request id>, the request
 * id a keyed digest of the user code). The device_code itself is never here: only its keyed digest.
 */
export interface DeviceAuthorizationInput {
  device_code_digest: string;
  /** What the device said it is and asks for: its own claims, never verified. */
  client_id?: string;
  scope?: string;
  /**
   * The network the code was requested from (IPv4 /24, IPv6 /48: lib/client-address.ts
   * requesterNetwork), shown on the verify page. Here only, in the input the payload codec
   * encrypts (never in the id or a search attribute). Absent in runs an older API started.
   */
  requester_network?: string;
  /** Unix seconds. */
  requested_at: number;
  /** Unix seconds: after this no decision is taken and no session handed out. */
  expires_at: number;
  settings: DeviceAuthorizationSettings;
}

/** Argument of the Update-with-Start that opens the request: the same digest as the input, so a user code already taken is seen (another digest → conflict). */
export interface RegisterDeviceCodeInput {
  device_code_digest: string;
}

export interface RegisterDeviceCodeResult {
  expires_at: number;
  interval: number;
}

/** The person's decision, sent by the verify route for the account its bearer names. */
export interface DeviceDecisionInput {
  action: 'approve' | 'deny';
  omni_account: string;
}

export interface DeviceDecisionResult {
  status: 'approved' | 'denied';
}

/** The device's poll (RFC 8628 §3.4): the keyed digest of the device_code it presents. */
export interface DeviceTokenPollInput {
  device_code_digest: string;
}

/** What the token endpoint answers (§3.5), or the session once. */
export type DeviceTokenPollResult =
  | { status: 'authorization_pending' | 'slow_down' | 'access_denied' | 'expired_token' | 'invalid_grant'; interval: number }
  | { status: 'ready'; session: LoginOutcome };

/** What the verify page shows before the person decides. */
export interface DeviceRequestView {
  status: 'pending' | 'approving' | 'approved' | 'denied' | 'expired';
  requested_at: number;
  expires_at: number;
  client_id?: string;
  scope?: string;
  /** The input's requester_network, when the run has one. */
  requester_network?: string;
}

export type DeviceAuthorizationOutcome = 'succeeded' | 'uncollected' | 'denied' | 'expired';

export const registerDeviceCodeUpdate = defineUpdate<RegisterDeviceCodeResult, [RegisterDeviceCodeInput]>('registerDeviceCode');
export const deviceDecisionUpdate = defineUpdate<DeviceDecisionResult, [DeviceDecisionInput]>('deviceDecision');
export const deviceTokenPollUpdate = defineUpdate<DeviceTokenPollResult, [DeviceTokenPollInput]>('deviceTokenPoll');
export const deviceRequestQuery = defineQuery<DeviceRequestView>('deviceRequest');
