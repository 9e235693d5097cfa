/** Google login (workflow `google-login/…`): its input, settings, updates and outcomes. */
import { defineUpdate } from '@temporalio/workflow';
import type { LoginOutcome } from './definitions';

export const GOOGLE_LOGIN_ID_PREFIX = 'google-login/';

export interface GoogleLoginSettings {
  /** Seconds the flow waits for the provider's callback; then, after a sign-in, for its session to be collected. */
  ttlSeconds: number;
  /** Tries of each provider call on a 5xx or timeout. */
  maxAttempts: number;
  /** Seconds one provider call may take. */
  httpTimeoutSeconds: number;
  /** Collects the run records (default MAX_POLLS_PER_RUN, workflows/poll-pacing.ts); the workflow tests lower it. */
  pollsPerRun?: number;
}

/**
 * Input of googleLoginWorkflow (workflow id google-login/<request id>, the request id a keyed
 * digest of `state`). The secrets of the authorization request live here only, encrypted in
 * history by the payload codec; never in the id or a search attribute.
 */
export interface GoogleLoginInput {
  state: string;
  nonce: string;
  code_verifier: string;
  format: 'browser' | 'cli';
  /** Browser form: where the callback sends the person (origin on BROKER_GOOGLE_RETURN_ORIGINS). */
  return_to?: string;
  /**
   * Browser form: keyed digest of the cookie the start set in the person's browser. The callback
   * must come from that browser (no login CSRF: someone else's callback URL is refused).
   */
  browser_binding_digest?: string;
  /** CLI form: keyed digest of the poll secret; only its holder collects the session. */
  poll_secret_digest?: string;
  /** Unix seconds: when the flow stops waiting for the callback. */
  expires_at: number;
  settings: GoogleLoginSettings;
}

/** Argument of the callback Update: the provider's answer, as the browser brought it. */
export interface GoogleCallbackInput {
  /** The callback's query parameters (code, state, or error, …), passed to openid-client as they came. */
  params: Record<string, string>;
  /**
   * Browser form: keyed digest of the one-time exchange code the API will put in the redirect,
   * bound to the app's code challenge (carried in `state`); the exchange presents the verifier.
   */
  exchange_code_digest?: string;
  /** Browser form: keyed digest of the binding cookie the callback request carried, if any. */
  browser_binding_digest?: string;
  /**
   * CLI form: keyed digest of the confirmation code the callback page shows the person, who types
   * it into the CLI that started the sign-in (the collect must carry it; see CollectSessionInput).
   */
  confirmation_digest?: string;
}

export interface GoogleCallbackResult {
  format: 'browser' | 'cli';
  return_to?: string;
}

/**
 * What a finished Google login hands the API: the session as the shared login completion recorded
 * it (jti, times, account), not a token. The API signs the bearer when it hands it out, so no
 * usable token ever sits in workflow history.
 */
export type GoogleSessionClaims = LoginOutcome;

/** Argument of the collect Update: a keyed digest of the poll secret (CLI) or of the exchange code (browser). */
export interface CollectSessionInput {
  secret_digest: string;
  /**
   * CLI form: keyed digest of the confirmation code the person typed, absent while the CLI only
   * asks whether the sign-in is done. The poll secret alone no longer collects a finished sign-in:
   * whoever started it must also have the code from the browser that finished it.
   */
  confirmation_digest?: string;
}

/**
 * The CLI form's collect needs the callback page's confirmation code (patched in after 1.0.0:
 * runs recorded before it hand the session to the poll secret alone). docs/versioning.md.
 */
export const GOOGLE_CLI_CONFIRMATION_PATCH = 'google-cli-confirmation';

/** Wrong confirmation codes a CLI sign-in takes before its session is never handed out. */
export const MAX_CONFIRMATION_ATTEMPTS = 5;

export type CollectSessionResult = { status: 'pending' } | { status: 'ready'; session: GoogleSessionClaims };

export type GoogleLoginOutcome = 'succeeded' | 'uncollected' | 'expired' | 'denied' | 'failed';

export const googleCallbackUpdate = defineUpdate<GoogleCallbackResult, [GoogleCallbackInput]>('googleCallback');
export const collectSessionUpdate = defineUpdate<CollectSessionResult, [CollectSessionInput]>('collectSession');
