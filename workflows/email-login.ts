import {
  ActivityFailure,
  ApplicationFailure,
  condition,
  proxyLocalActivities,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { constantTimeEqual } from '../lib/constant-time';
import { AkStage } from '../lib/search-attributes';
import { showAccount } from './account-attribute';
import { finishFlow, showStage } from './progress';
import { FailureType, type LoginOutcome } from './definitions';
import {
  EMAIL_LOGIN_ID_PREFIX,
  requestCodeUpdate,
  submitCodeUpdate,
  type EmailCodeLoginInput,
  type EmailLoginOutcome,
  type EmailLoginRequestInput,
  type RequestCodeInput,
  type SubmitCodeInput,
} from './email-login.definitions';
import { flowFailure, secondsUntil, unixSeconds } from './failures';

// Both steps are on the HTTP caller's latency path and idempotent, so they run as local
// activities (no round trip through the server's task queues).
/**
 * Throttling and 5xx from SES are retried with backoff while the HTTP caller waits (0.5 + 1 + 2 s
 * by default); a refusal (DeliveryFailed) and a spent address budget (RateLimited) are final.
 * The retry options are not in the run's history: a run replays whatever the backoff.
 */
function sendActivity(backoffMs = 500) {
  return proxyLocalActivities<Activities>({
    startToCloseTimeout: '15 seconds',
    retry: {
      initialInterval: backoffMs,
      backoffCoefficient: 2,
      maximumInterval: 8 * backoffMs,
      maximumAttempts: 4,
      nonRetryableErrorTypes: [FailureType.deliveryFailed, FailureType.rateLimited],
    },
  }).sendEmailLoginCode;
}

const { completeLogin } = proxyLocalActivities<Activities>({
  startToCloseTimeout: '10 seconds',
  retry: { initialInterval: '200 ms', backoffCoefficient: 2, maximumInterval: '2 seconds', maximumAttempts: 5 },
});

type Status = 'pending' | 'completing' | 'succeeded' | 'locked' | 'expired' | 'delivery_failed' | 'rate_limited';

/** The address's send budget refused this dispatch (the activity's RateLimited failure, as a local activity raises it or wrapped). */
function budgetRefusal(e: unknown): { message: string; retryAfter: number } | undefined {
  const failure = e instanceof ActivityFailure ? e.cause : e;
  if (!(failure instanceof ApplicationFailure) || failure.type !== FailureType.rateLimited) return undefined;
  const details = (failure.details?.[0] ?? {}) as { retry_after?: unknown };
  return { message: failure.message, retryAfter: typeof details.retry_after === 'number' ? details.retry_after : 1 };
}

/**
 * One requester's email-code login (workflow id email-login/<keyed digest of the request id>, the
 * request id random, handed to that requester alone and carried in the encrypted input). The API
 * starts it with Update-with-Start (requestCode
 * returns once the code is mailed); the same requester resends with requestCode on the same flow,
 * and exchanges the code with submitCode Updates carrying a keyed digest of what was typed.
 * Expiry is a timer each resend pushes out; wrong codes spend this flow's attempt budget only, and
 * a locked flow refuses even its right code until it expires. The mailbox's send budget (the
 * requester network's cooldown and allowance, the mailbox's ceiling), shared by every flow of the
 * mailbox, is enforced by the send activity.
 */
export async function emailCodeLoginWorkflow(input: EmailCodeLoginInput): Promise<EmailLoginOutcome> {
  return emailLogin(input, input.request_id);
}

/**
 * Retired in 1.2.0: the same login under workflow id email-login/<request id>, so the request id
 * could be read from a workflow listing. Registered until the last run started by 1.1.0 has closed
 * (docs/versioning.md, "Retired workflow types"); nothing starts it any more.
 */
export async function emailLoginRequestWorkflow(input: EmailLoginRequestInput): Promise<EmailLoginOutcome> {
  return emailLogin(input, workflowInfo().workflowId.slice(EMAIL_LOGIN_ID_PREFIX.length));
}

async function emailLogin(input: EmailLoginRequestInput, requestId: string): Promise<EmailLoginOutcome> {
  const s = input.settings;
  const sendEmailLoginCode = sendActivity(s.sendBackoffMs);

  const state: { status: Status } = { status: 'pending' };
  let dispatches = 0; // numbers every dispatch, refused ones too, so no two share a code
  let sends = 0; // codes mailed (or being mailed) by this flow
  let attempts = 0;
  let lastSendMs = 0;
  let expiresAtMs = 0;
  let codeDigest: string | undefined;
  /** Set by a keyed success: what a repeat must bring, until when, and the one session repeats share. */
  let retry: { keyDigest: string; codeDigest: string; untilMs: number; session?: Promise<LoginOutcome> } | undefined;

  const expiredOrUsed = () => flowFailure(FailureType.expired, 'this login request has expired or was already used; request a new code');

  /**
   * A repeat of the successful submission (same key digest, same code digest, inside the window):
   * a fresh session for the same identity, recorded and audited as a retry. Concurrent repeats
   * share one: the code is consumed once more at most, whatever number of repeats arrives.
   */
  async function repeatLogin(submission: SubmitCodeInput): Promise<LoginOutcome> {
    const r = retry;
    if (!r || Date.now() >= r.untilMs || !constantTimeEqual(submission.retry_key_digest ?? '', r.keyDigest)) throw expiredOrUsed();
    if (!constantTimeEqual(submission.code_digest, r.codeDigest)) {
      // Guesses under the right key spend the request's attempt budget; when it is spent the window closes.
      attempts += 1;
      if (attempts >= s.maxAttempts) r.untilMs = 0;
      throw expiredOrUsed();
    }
    r.session ??= completeLogin({ method: 'email', identity: { type: 'email', value: input.email }, requestId, reissue: true });
    try {
      return await r.session;
    } catch {
      r.session = undefined;
      throw flowFailure(FailureType.auditError, 'the login could not be recorded; try again');
    }
  }

  const stage = (value: string) => {
    showStage(value);
    upsertSearchAttributes([{ key: AkStage, value }]);
  };

  setHandler(
    requestCodeUpdate,
    async (request: RequestCodeInput) => {
      const now = Date.now();
      if (state.status === 'locked') {
        throw flowFailure(FailureType.tooManyAttempts, 'too many wrong codes; this login is locked, ask for a new code without request_id later', {
          retry_after: secondsUntil(expiresAtMs, now),
        });
      }
      if (state.status !== 'pending') throw flowFailure(FailureType.rateLimited, 'this login is finishing; try again', { retry_after: 1 });
      if (sends > 0 && now < lastSendMs + s.resendCooldownSeconds * 1000) {
        throw flowFailure(FailureType.rateLimited, 'a code was sent moments ago; wait before asking again', {
          retry_after: secondsUntil(lastSendMs + s.resendCooldownSeconds * 1000, now),
        });
      }
      if (sends >= s.maxSends) {
        throw flowFailure(FailureType.rateLimited, 'too many codes sent for this request; ask for a new code without request_id later', {
          retry_after: secondsUntil(expiresAtMs, now),
        });
      }
      const previousSendMs = lastSendMs;
      sends += 1;
      dispatches += 1;
      lastSendMs = now; // reserved before the await, so concurrent resends see the cooldown
      const dispatch = dispatches;
      let sentAtMs: number;
      try {
        const sent = await sendEmailLoginCode({
          email: input.email,
          dispatch,
          salt: input.code_salt,
          ttlSeconds: s.ttlSeconds,
          networkKey: request.network_key,
        });
        codeDigest = sent.codeDigest;
        sentAtMs = sent.sentAtMs;
      } catch (e) {
        const refusal = budgetRefusal(e);
        if (refusal) {
          // Nothing was mailed: the earlier code (if any) stays the valid one.
          sends -= 1;
          if (lastSendMs === now) lastSendMs = previousSendMs;
          if (codeDigest === undefined) state.status = 'rate_limited';
          throw flowFailure(FailureType.rateLimited, refusal.message, { retry_after: refusal.retryAfter });
        }
        if (codeDigest === undefined) state.status = 'delivery_failed';
        throw flowFailure(FailureType.deliveryFailed, 'the login code could not be sent; try again later');
      }
      // Workflow time does not move during a local activity: the send may have been reserved later
      // than Date.now() says, and the address's cooldown counts from that reservation.
      lastSendMs = Math.max(Date.now(), sentAtMs);
      expiresAtMs = lastSendMs + s.ttlSeconds * 1000;
      stage('code_sent');
      return {
        request_id: requestId,
        expires_at: unixSeconds(expiresAtMs),
        // Rounded up: a client that waits until resend_after must not be refused by the cooldown.
        resend_after: Math.ceil((lastSendMs + s.resendCooldownSeconds * 1000) / 1000),
      };
    },
    {
      validator: (request: RequestCodeInput) => {
        if (typeof request?.email_key !== 'string' || !constantTimeEqual(request.email_key, input.email_key)) {
          throw flowFailure(FailureType.badRequest, 'this request_id was issued for another address');
        }
        if (typeof request.network_key !== 'string' || !/^[0-9a-f]{32}$/.test(request.network_key)) {
          throw flowFailure(FailureType.badRequest, 'malformed code request');
        }
      },
    },
  );

  setHandler(
    submitCodeUpdate,
    async (submission: SubmitCodeInput) => {
      const keyed = submission.retry_key_digest !== undefined;
      // A keyed repeat that arrives while its first try is being recorded waits for that outcome.
      if (keyed && state.status === 'completing') await condition(() => state.status !== 'completing');
      if (keyed && state.status === 'succeeded') return repeatLogin(submission);
      if (state.status === 'locked') throw flowFailure(FailureType.tooManyAttempts, 'too many wrong codes; this login is locked');
      if (state.status !== 'pending' || codeDigest === undefined || Date.now() >= expiresAtMs) throw expiredOrUsed();
      if (!constantTimeEqual(submission.code_digest, codeDigest)) {
        attempts += 1;
        if (attempts >= s.maxAttempts) {
          state.status = 'locked';
          stage('locked');
          throw flowFailure(FailureType.tooManyAttempts, 'too many wrong codes; this login is locked');
        }
        throw flowFailure(FailureType.invalidCode, 'the code is not correct', { attempts_left: s.maxAttempts - attempts });
      }
      state.status = 'completing';
      stage('verifying');
      try {
        const session = await completeLogin({ method: 'email', identity: { type: 'email', value: input.email }, requestId });
        showAccount(session);
        state.status = 'succeeded';
        if (submission.retry_key_digest !== undefined) {
          retry = { keyDigest: submission.retry_key_digest, codeDigest: submission.code_digest, untilMs: Date.now() + s.retryWindowSeconds * 1000 };
        }
        return session;
      } catch {
        state.status = 'pending';
        throw flowFailure(FailureType.auditError, 'the login could not be recorded; try again');
      }
    },
    {
      validator: (submission: SubmitCodeInput) => {
        if (typeof submission?.code_digest !== 'string' || !/^[0-9a-f]{64}$/.test(submission.code_digest)) {
          throw flowFailure(FailureType.badRequest, 'malformed code submission');
        }
        if (
          submission.retry_key_digest !== undefined &&
          (typeof submission.retry_key_digest !== 'string' || !/^[0-9a-f]{64}$/.test(submission.retry_key_digest))
        ) {
          throw flowFailure(FailureType.badRequest, 'malformed code submission');
        }
        if (submission.request_id !== requestId) throw flowFailure(FailureType.badRequest, 'the submission names another request');
      },
    },
  );

  // The first dispatch comes with the start (Update-with-Start); give up if it never does.
  const firstDispatchMs = s.firstDispatchSeconds * 1000;
  const dispatched = await condition(() => codeDigest !== undefined || state.status !== 'pending', firstDispatchMs);
  if (!dispatched) state.status = 'expired';

  while (state.status === 'pending' || state.status === 'completing') {
    if (state.status === 'completing') {
      await condition(() => state.status !== 'completing');
      continue;
    }
    const deadline = expiresAtMs;
    const remaining = deadline - Date.now();
    const woke = remaining > 0 && (await condition(() => state.status !== 'pending' || expiresAtMs !== deadline, remaining));
    if (!woke && state.status === 'pending' && expiresAtMs === deadline) state.status = 'expired';
  }

  if (state.status === 'succeeded' && retry) {
    // Only after a keyed success: stay open for repeats of it until the window ends.
    const remaining = retry.untilMs - Date.now();
    if (remaining > 0) await sleep(remaining);
  }

  if (state.status === 'locked') {
    // Keep refusing this flow's code (429, not 410) until its window would have ended.
    const remaining = expiresAtMs - Date.now();
    if (remaining > 0) await sleep(remaining);
  }

  const outcome: EmailLoginOutcome =
    state.status === 'succeeded'
      ? 'succeeded'
      : state.status === 'locked'
        ? 'too_many_attempts'
        : state.status === 'delivery_failed' || state.status === 'rate_limited'
          ? state.status
          : 'expired';
  return finishFlow(outcome);
}
