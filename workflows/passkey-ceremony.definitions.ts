/**
 * Definitions of the passkey ceremony flow (WebAuthn registration, sign-up and login): inputs,
 * updates and ids shared by the workflow, its activities and the API. Deterministic.
 */
import { defineUpdate } from '@temporalio/workflow';
import type { PasskeyView } from '../lib/passkeys';
import type { LoginOutcome } from './definitions';

/** `passkey/<request_id>`, request_id = the first 32 hex digits of sha256(challenge). */
export const PASSKEY_CEREMONY_ID_PREFIX = 'passkey/';

/**
 * register: a signed-in account adds a passkey; signup: a passkey alone makes a new account (its
 * identity is {type: passkey, value: user handle}); login: a discoverable passkey signs in.
 */
export type PasskeyCeremonyKind = 'register' | 'signup' | 'login';

export interface PasskeyCeremonySettings {
  /** How long the challenge can be answered. */
  ttlSeconds: number;
}

export interface PasskeyCeremonyInput {
  kind: PasskeyCeremonyKind;
  /** base64url of 32 random bytes: the WebAuthn challenge (not a secret; single-use). */
  challenge: string;
  /** register: the signed-in account; signup: the account the user handle derives. */
  omniAccount?: string;
  /** register and signup: the WebAuthn user.id the options carried (base64url). */
  userHandle?: string;
  /** The relying party id and the accepted origins at the time the challenge was issued. */
  rpId: string;
  origins: string[];
  settings: PasskeyCeremonySettings;
}

export interface PasskeyChallengeIssued {
  request_id: string;
  /** Unix seconds. */
  expires_at: number;
}

export interface SubmitPasskeyResponseInput {
  /** Which door it came through: the registration route (register) or the session route (signup, login). */
  door: 'register' | 'session';
  /** The browser's PublicKeyCredential as JSON (RegistrationResponseJSON or AuthenticationResponseJSON). */
  response: Record<string, unknown>;
  /** register: the account of the session that submits (must be the one that asked). */
  omniAccount?: string;
  /** register and signup: a name for the passkey. */
  name?: string;
}

/** What a verified registration stored. */
export type RegisteredPasskey = PasskeyView;

export type PasskeyCeremonyResult = { kind: 'registered'; passkey: RegisteredPasskey } | { kind: 'session'; session: LoginOutcome; passkey_id: string };

export type PasskeyCeremonyOutcome = 'succeeded' | 'refused' | 'expired';

export const openPasskeyChallengeUpdate = defineUpdate<PasskeyChallengeIssued, []>('openPasskeyChallenge');
export const submitPasskeyResponseUpdate = defineUpdate<PasskeyCeremonyResult, [SubmitPasskeyResponseInput]>('submitPasskeyResponse');

/** used_signatures.purpose of the challenge a passkey login consumes with its session. */
export const PASSKEY_PROOF_PURPOSE = 'passkey_login';
