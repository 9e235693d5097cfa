import {
  ActivityFailure,
  ApplicationFailure,
  condition,
  patched,
  proxyLocalActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { constantTimeEqual } from '../lib/constant-time';
import { AkStage } from '../lib/search-attributes';
import { accountAttributes } from './account-attribute';
import { finishFlow, showStage } from './progress';
import { FailureType } from './definitions';
import { flowFailure } from './failures';
import {
  collectSessionUpdate,
  GOOGLE_CLI_CONFIRMATION_PATCH,
  GOOGLE_LOGIN_ID_PREFIX,
  googleCallbackUpdate,
  MAX_CONFIRMATION_ATTEMPTS,
  type CollectSessionInput,
  type CollectSessionResult,
  type GoogleCallbackInput,
  type GoogleLoginInput,
  type GoogleLoginOutcome,
  type GoogleSessionClaims,
} from './google-login.definitions';
import { pollBudget } from './poll-pacing';

/** What a collect refused past its run's budget is told to wait: the CLI's own pace (cli/commands/init.ts asks every second). */
const GOOGLE_COLLECT_RETRY_SECONDS = 1;

type Status = 'waiting' | 'exchanging' | 'succeeded' | 'expired' | 'denied' | 'failed';

const DIGEST_RE = /^[0-9a-f]{64}$/;

/** Why a provider activity failed (its ApplicationFailure's details[0].reason), and whether it was the provider being down. */
function providerReason(e: unknown): { reason: string; message: string } {
  const failure = e instanceof ActivityFailure ? e.cause : e;
  if (failure instanceof ApplicationFailure) {
    const details = (failure.details?.[0] ?? {}) as { reason?: unknown };
    return { reason: typeof details.reason === 'string' ? details.reason : 'provider_unavailable', message: failure.message };
  }
  // Retries spent on timeouts end as a TimeoutFailure: the provider did not answer.
  return { reason: 'provider_timeout', message: (failure as Error | undefined)?.message ?? 'the provider did not answer' };
}

/** The wire failure for a provider reason: the person's refusal, a token or account the broker refuses, or the provider down. */
function callbackFailure(reason: string, message: string): ApplicationFailure {
  switch (reason) {
    case 'access_denied':
      return flowFailure(FailureType.forbidden, 'the sign-in was refused at the provider (access_denied)', { reason });
    case 'email_unverified':
      return flowFailure(FailureType.forbidden, "the Google account's email is not verified", { reason });
    case 'provider_unavailable':
    case 'provider_timeout':
    case 'provider_unreachable':
      return flowFailure(FailureType.providerUnavailable, 'Google did not answer in time or kept failing; sign in again', { reason });
    default:
      return flowFailure(FailureType.unauthorized, `the provider's answer was refused: ${message}`, { reason });
  }
}

/**
 * One Google sign-in (workflow id google-login/<request id>; the request id is a keyed digest of
 * the OAuth `state`). The API starts it with the authorization request's state, nonce and PKCE
 * verifier (encrypted in history by the payload codec) and sends the person to the provider. The
 * provider's callback arrives as the googleCallback Update: the code exchange (id_token checked by
 * openid-client), userinfo and the shared login completion run as local activities while the
 * callback waits. Only one callback is ever acted on; a later one, or one after the window, changes
 * nothing. The session is then collected once with collectSession (the CLI's poll secret together
 * with the confirmation code the callback page showed, or the browser's one-time exchange code, as
 * keyed digests); the flow carries the session's claims, and the API signs the bearer as it hands
 * it out. A CLI sign-in refuses its session for good after MAX_CONFIRMATION_ATTEMPTS wrong codes.
 */
export async function googleLoginWorkflow(input: GoogleLoginInput): Promise<GoogleLoginOutcome> {
  const { workflowId } = workflowInfo();
  const requestId = workflowId.slice(GOOGLE_LOGIN_ID_PREFIX.length);
  const s = input.settings;

  const retry = { initialInterval: '200 ms', backoffCoefficient: 2, maximumInterval: '2 seconds', maximumAttempts: s.maxAttempts };
  // One provider call may be two HTTP requests (token + the issuer's JWKS), each under the HTTP timeout.
  const { exchangeGoogleCode, fetchGoogleUserinfo } = proxyLocalActivities<Activities>({
    startToCloseTimeout: `${2 * s.httpTimeoutSeconds + 2} seconds`,
    retry,
  });
  const { completeGoogleLogin } = proxyLocalActivities<Activities>({
    startToCloseTimeout: '10 seconds',
    retry: { initialInterval: '200 ms', backoffCoefficient: 2, maximumInterval: '2 seconds', maximumAttempts: 5 },
  });

  let status: Status = 'waiting';
  let session: GoogleSessionClaims | undefined;
  let exchangeCodeDigest: string | undefined;
  let confirmationDigest: string | undefined;
  let wrongCodes = 0;
  let collected = false;
  const polls = pollBudget(s.pollsPerRun);
  const stage = (value: string) => {
    showStage(value);
    upsertSearchAttributes([{ key: AkStage, value }]);
  };

  setHandler(
    googleCallbackUpdate,
    async (callback: GoogleCallbackInput) => {
      if (status === 'expired') throw flowFailure(FailureType.expired, 'this sign-in has expired; start again');
      if (status !== 'waiting') throw flowFailure(FailureType.conflict, 'this sign-in has already been answered; start again for a new one');
      if (Date.now() >= input.expires_at * 1000) {
        status = 'expired';
        throw flowFailure(FailureType.expired, 'this sign-in has expired; start again');
      }
      status = 'exchanging';
      stage('exchanging');
      let reason: string | undefined;
      try {
        const tokens = await exchangeGoogleCode({ params: callback.params, state: input.state, nonce: input.nonce, code_verifier: input.code_verifier });
        const info = await fetchGoogleUserinfo({ access_token_sealed: tokens.access_token_sealed, sub: tokens.sub });
        const email = tokens.email ?? info.email;
        // An email is only ever used (stored on the user) when the provider vouches for it.
        if (email !== undefined && (tokens.email_verified ?? info.email_verified) !== true) reason = 'email_unverified';
        if (reason === undefined) {
          session = await completeGoogleLogin({ sub: tokens.sub, ...(email !== undefined ? { verified_email: email } : {}), requestId });
        }
      } catch (e) {
        if (e instanceof ActivityFailure && (e.cause as ApplicationFailure | undefined)?.type === FailureType.auditError) {
          status = 'failed';
          stage('failed');
          throw flowFailure(FailureType.auditError, 'the login could not be recorded; sign in again');
        }
        const why = providerReason(e);
        status = why.reason === 'access_denied' ? 'denied' : 'failed';
        stage(status);
        throw callbackFailure(why.reason, why.message);
      }
      if (reason !== undefined || session === undefined) {
        status = 'failed';
        stage('failed');
        throw callbackFailure(reason ?? 'internal', 'no session');
      }
      showStage('signed_in');
      upsertSearchAttributes([...accountAttributes(session), { key: AkStage, value: 'signed_in' }]);
      exchangeCodeDigest = callback.exchange_code_digest;
      confirmationDigest = callback.confirmation_digest;
      status = 'succeeded';
      return { format: input.format, ...(input.return_to !== undefined ? { return_to: input.return_to } : {}) };
    },
    {
      validator: (callback: GoogleCallbackInput) => {
        const state = callback?.params?.state;
        if (typeof state !== 'string' || !constantTimeEqual(state, input.state))
          throw flowFailure(FailureType.badRequest, 'state does not belong to this sign-in');
        if (input.format === 'browser' && (typeof callback.exchange_code_digest !== 'string' || !DIGEST_RE.test(callback.exchange_code_digest))) {
          throw flowFailure(FailureType.badRequest, 'malformed callback');
        }
        // Refused before anything changes: the sign-in stays open for the browser that started it.
        if (
          input.browser_binding_digest !== undefined &&
          (typeof callback.browser_binding_digest !== 'string' || !constantTimeEqual(callback.browser_binding_digest, input.browser_binding_digest))
        ) {
          throw flowFailure(FailureType.forbidden, 'this sign-in was started in another browser; start it again here');
        }
      },
    },
  );

  /**
   * The CLI form's second factor of the collect: the code the callback page showed in the browser
   * that finished the sign-in. The poll secret says who started it, the code that the person who
   * finished it handed it over; a stranger who got someone to open their link has only the first.
   */
  const confirmCode = (request: CollectSessionInput): void => {
    if (wrongCodes >= MAX_CONFIRMATION_ATTEMPTS) throw flowFailure(FailureType.tooManyAttempts, 'too many wrong confirmation codes; start a new sign-in');
    if (request.confirmation_digest === undefined)
      throw flowFailure(FailureType.badRequest, 'the person has signed in: send confirmation_code, the code the browser page shows');
    if (confirmationDigest !== undefined && constantTimeEqual(request.confirmation_digest, confirmationDigest)) return;
    wrongCodes += 1;
    if (wrongCodes >= MAX_CONFIRMATION_ATTEMPTS) throw flowFailure(FailureType.tooManyAttempts, 'too many wrong confirmation codes; start a new sign-in');
    throw flowFailure(FailureType.invalidCode, 'the confirmation code is not the one the browser page shows', {
      attempts_left: MAX_CONFIRMATION_ATTEMPTS - wrongCodes,
    });
  };

  setHandler(
    collectSessionUpdate,
    (request: CollectSessionInput): CollectSessionResult => {
      polls.count();
      if (status === 'waiting' || status === 'exchanging') return { status: 'pending' };
      if (status === 'succeeded' && session && !collected) {
        if (input.format === 'cli' && patched(GOOGLE_CLI_CONFIRMATION_PATCH)) confirmCode(request);
        collected = true;
        return { status: 'ready', session };
      }
      if (status === 'succeeded') throw flowFailure(FailureType.expired, 'the session of this sign-in was already handed out', { outcome: 'collected' });
      throw flowFailure(FailureType.expired, status === 'expired' ? 'this sign-in has expired; start again' : 'this sign-in failed; start again', {
        outcome: status,
      });
    },
    {
      validator: (request: CollectSessionInput) => {
        const expected = input.format === 'cli' ? input.poll_secret_digest : exchangeCodeDigest;
        if (
          typeof request?.secret_digest !== 'string' ||
          !DIGEST_RE.test(request.secret_digest) ||
          expected === undefined ||
          !constantTimeEqual(request.secret_digest, expected)
        ) {
          throw flowFailure(FailureType.forbidden, input.format === 'cli' ? 'poll_secret does not match this sign-in' : 'this exchange code is not valid');
        }
        if (request.confirmation_digest !== undefined && (typeof request.confirmation_digest !== 'string' || !DIGEST_RE.test(request.confirmation_digest))) {
          throw flowFailure(FailureType.badRequest, 'malformed confirmation code');
        }
        polls.check(status === 'waiting', GOOGLE_COLLECT_RETRY_SECONDS);
      },
    },
  );

  // The provider's callback, until the window ends (pushed back by nothing: one sign-in, one window).
  const remaining = input.expires_at * 1000 - Date.now();
  const answered = remaining > 0 && (await condition(() => status !== 'waiting', remaining));
  if (!answered && status === 'waiting') status = 'expired';
  await condition(() => status !== 'exchanging');

  const settled = status as Status; // set by the update handler while this function awaited
  let outcome: GoogleLoginOutcome;
  if (settled === 'succeeded') {
    // The session waits one more window for its holder (the CLI polling, the browser app exchanging),
    // or until wrong confirmation codes have refused it for good.
    const refused = () => wrongCodes >= MAX_CONFIRMATION_ATTEMPTS;
    await condition(() => collected || refused(), s.ttlSeconds * 1000);
    outcome = collected ? 'succeeded' : refused() ? 'failed' : 'uncollected';
  } else {
    outcome = settled === 'denied' ? 'denied' : settled === 'expired' ? 'expired' : 'failed';
  }
  return finishFlow(outcome);
}
