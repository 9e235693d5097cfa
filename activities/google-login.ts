import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { GoogleOidc, GoogleProviderError, type GoogleIdentityClaims } from '../adapters/google-oidc';
import { recordVerifiedEmail } from '../db/users';
import { hmacHex } from '../lib/digest';
import { FailureType } from '../lib/errors';
import type { GoogleSessionClaims } from '../workflows/google-login.definitions';
import { currentRun } from './context';
import type { ActivityDeps } from './deps';
import { createLoginActivities } from './login-completion';

export interface ExchangeGoogleCodeInput {
  params: Record<string, string>;
  state: string;
  nonce: string;
  code_verifier: string;
}

export interface CompleteGoogleLoginInput {
  sub: string;
  /** Set only when the provider said it is verified. */
  verified_email?: string;
  requestId: string;
}

/** 5xx, timeouts and network errors are retried by the activity's policy; anything else ends the flow. */
function providerFailure(e: unknown): ApplicationFailure {
  if (!(e instanceof GoogleProviderError))
    return ApplicationFailure.retryable((e as Error)?.message ?? String(e), FailureType.googleProviderFailed, { reason: 'internal' });
  return ApplicationFailure.create({ message: e.message, type: FailureType.googleProviderFailed, nonRetryable: !e.retryable, details: [{ reason: e.reason }] });
}

export function createGoogleLoginActivities(deps: ActivityDeps) {
  const google = deps.googleOidc ?? new GoogleOidc(deps.config);
  const login = createLoginActivities(deps);

  /**
   * The provider's access token passes from the exchange to userinfo through history: sealed with
   * a key only this run's activities derive (HMAC of the broker secret and the run), so not even
   * an operator decoding history with the payload key can use it.
   */
  const runKey = (): Buffer => {
    const run = currentRun();
    return Buffer.from(hmacHex(deps.secrets.hmacSecret, 'google-access-token', run.workflowId, run.runId), 'hex');
  };
  const seal = (text: string): string => {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', runKey(), iv);
    return Buffer.concat([iv, cipher.update(text, 'utf8'), cipher.final(), cipher.getAuthTag()]).toString('base64url');
  };
  const unseal = (sealed: string): string => {
    const data = Buffer.from(sealed, 'base64url');
    const decipher = createDecipheriv('aes-256-gcm', runKey(), data.subarray(0, 12));
    decipher.setAuthTag(data.subarray(data.length - 16));
    return Buffer.concat([decipher.update(data.subarray(12, data.length - 16)), decipher.final()]).toString('utf8');
  };

  return {
    /**
     * The code exchange at the token endpoint, the id_token checked by openid-client. Not
     * idempotent at the provider (a code works once): a retry after a lost answer gets a 4xx and
     * the flow fails cleanly; the person signs in again.
     */
    async exchangeGoogleCode(input: ExchangeGoogleCodeInput): Promise<GoogleIdentityClaims & { access_token_sealed: string }> {
      try {
        const { accessToken, ...claims } = await google.exchangeCode({
          callbackParams: input.params,
          state: input.state,
          nonce: input.nonce,
          codeVerifier: input.code_verifier,
        });
        return { ...claims, access_token_sealed: seal(accessToken) };
      } catch (e) {
        throw providerFailure(e);
      }
    },

    /** Userinfo for the id_token's subject; a different subject is refused by openid-client. */
    async fetchGoogleUserinfo(input: { access_token_sealed: string; sub: string }): Promise<GoogleIdentityClaims> {
      let accessToken: string;
      try {
        accessToken = unseal(input.access_token_sealed);
      } catch {
        throw ApplicationFailure.nonRetryable('the sealed access token does not open in this run', FailureType.googleProviderFailed, { reason: 'internal' });
      }
      try {
        return await google.userinfo(accessToken, input.sub);
      } catch (e) {
        throw providerFailure(e);
      }
    },

    /**
     * The shared login completion (user upsert, session row, audit row in one transaction), then
     * the verified email on the user. Answers the session as recorded (its jti and times), never a
     * token: the API signs the bearer when it hands it out (api/session-issue.ts).
     */
    async completeGoogleLogin(input: CompleteGoogleLoginInput): Promise<GoogleSessionClaims> {
      const session = await login.completeLogin({ method: 'google', identity: { type: 'google', value: input.sub }, requestId: input.requestId });
      if (input.verified_email) await recordVerifiedEmail(deps.db, session.omni_account, input.verified_email);
      return session;
    },
  };
}
