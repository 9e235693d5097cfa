import { allHandlersFinished, condition, proxyLocalActivities, setHandler, sleep, upsertSearchAttributes, uuid4, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { constantTimeEqual } from '../lib/constant-time';
import { AkOmniAccount, AkOutcome, AkStage } from '../lib/search-attributes';
import { FailureType } from './definitions';
import {
  EMAIL_LOGIN_ID_PREFIX,
  legacyRequestCodeUpdate,
  submitCodeUpdate,
  type EmailLoginOutcome,
  type LegacyEmailLoginInput,
  type SubmitCodeInput,
} from './email-login.definitions';
import { flowFailure, secondsUntil, unixSeconds } from './failures';

// Both steps are on the HTTP caller's latency path and idempotent, so they run as local
// activities (no round trip through the server's task queues).
const { sendLoginCode } = proxyLocalActivities<Activities>({
  startToCloseTimeout: '15 seconds',
  // Throttling and 5xx from SES are retried with backoff while the HTTP caller waits (~3.5 s in
  // all); a refusal (DeliveryFailed) is final and ends the flow.
  retry: {
    initialInterval: '500 ms',
    backoffCoefficient: 2,
    maximumInterval: '4 seconds',
    maximumAttempts: 4,
    nonRetryableErrorTypes: [FailureType.deliveryFailed],
  },
});

const { completeLogin } = proxyLocalActivities<Activities>({
  startToCloseTimeout: '10 seconds',
  retry: { initialInterval: '200 ms', backoffCoefficient: 2, maximumInterval: '2 seconds', maximumAttempts: 5 },
});

type Status = 'pending' | 'completing' | 'succeeded' | 'locked' | 'expired' | 'delivery_failed';

/**
 * RETIRED: started by releases up to 0.1.0, replaced by emailLoginRequestWorkflow (one flow per
 * requester, ./email-login.ts). Kept unchanged and registered so runs already in flight finish;
 * nothing starts it any more. Remove it (and its histories in test/histories) once no run of this
 * type can be open: docs/versioning.md.
 *
 * One live email-code login per address (workflow id email-login/<hmac(email)>). The API starts
 * it with Update-with-Start (requestCode returns once the code is mailed), then sends submitCode
 * Updates carrying a keyed digest of what the user typed. Expiry is a timer that each resend
 * pushes out; wrong codes spend an attempt budget, and a locked flow refuses even the right code
 * until it expires.
 */
export async function emailLoginWorkflow(input: LegacyEmailLoginInput): Promise<EmailLoginOutcome> {
  const { workflowId } = workflowInfo();
  const s = input.settings;
  const requestId = `${workflowId.slice(EMAIL_LOGIN_ID_PREFIX.length)}.${uuid4().replace(/-/g, '')}`;

  const state: { status: Status } = { status: 'pending' };
  let sends = 0;
  let attempts = 0;
  let lastSendMs = 0;
  let expiresAtMs = 0;
  let codeDigest: string | undefined;

  const stage = (value: string) => upsertSearchAttributes([{ key: AkStage, value }]);

  setHandler(legacyRequestCodeUpdate, async () => {
    const now = Date.now();
    if (state.status === 'locked') {
      throw flowFailure(FailureType.tooManyAttempts, 'too many wrong codes; request a new code later', { retry_after: secondsUntil(expiresAtMs, now) });
    }
    if (state.status !== 'pending') throw flowFailure(FailureType.rateLimited, 'a login for this address is finishing; try again', { retry_after: 1 });
    if (sends > 0 && now < lastSendMs + s.resendCooldownSeconds * 1000) {
      throw flowFailure(FailureType.rateLimited, 'a code was sent moments ago; wait before asking again', {
        retry_after: secondsUntil(lastSendMs + s.resendCooldownSeconds * 1000, now),
      });
    }
    if (sends >= s.maxSends) {
      throw flowFailure(FailureType.rateLimited, 'too many codes sent for this address; try again later', { retry_after: secondsUntil(expiresAtMs, now) });
    }
    sends += 1;
    lastSendMs = now; // reserved before the await, so concurrent resends see the cooldown
    const dispatch = sends;
    try {
      const sent = await sendLoginCode({ workflowId, dispatch, email: input.email, ttlSeconds: s.ttlSeconds });
      codeDigest = sent.codeDigest;
    } catch {
      if (dispatch === 1) state.status = 'delivery_failed';
      throw flowFailure(FailureType.deliveryFailed, 'the login code could not be sent; try again later');
    }
    lastSendMs = Date.now();
    expiresAtMs = lastSendMs + s.ttlSeconds * 1000;
    stage('code_sent');
    return {
      request_id: requestId,
      expires_at: unixSeconds(expiresAtMs),
      // Rounded up: a client that waits until resend_after must not be refused by the cooldown.
      resend_after: Math.ceil((lastSendMs + s.resendCooldownSeconds * 1000) / 1000),
    };
  });

  setHandler(
    submitCodeUpdate,
    async (submission: SubmitCodeInput) => {
      if (state.status === 'locked') throw flowFailure(FailureType.tooManyAttempts, 'too many wrong codes; this login is locked');
      if (state.status !== 'pending' || codeDigest === undefined || Date.now() >= expiresAtMs) {
        throw flowFailure(FailureType.expired, 'this login request has expired or was already used; request a new code');
      }
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
        upsertSearchAttributes([{ key: AkOmniAccount, value: session.omni_account }]);
        state.status = 'succeeded';
        return session;
      } catch {
        state.status = 'pending';
        throw flowFailure(FailureType.auditFailed, 'the login could not be recorded; try again');
      }
    },
    {
      validator: (submission: SubmitCodeInput) => {
        if (typeof submission?.code_digest !== 'string' || !/^[0-9a-f]{64}$/.test(submission.code_digest)) {
          throw flowFailure(FailureType.badRequest, 'malformed code submission');
        }
        if (submission.request_id !== requestId) {
          throw flowFailure(FailureType.expired, 'this login request was replaced by a newer one; use the latest code');
        }
      },
    },
  );

  // The first dispatch comes with the start (Update-with-Start); give up if it never does.
  const dispatched = await condition(() => codeDigest !== undefined || state.status !== 'pending', '1 minute');
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

  if (state.status === 'locked') {
    // Keep the lock (and refuse new codes for this address) until the window would have ended.
    const remaining = expiresAtMs - Date.now();
    if (remaining > 0) await sleep(remaining);
  }

  const outcome: EmailLoginOutcome =
    state.status === 'succeeded'
      ? 'succeeded'
      : state.status === 'locked'
        ? 'too_many_attempts'
        : state.status === 'delivery_failed'
          ? 'delivery_failed'
          : 'expired';
  upsertSearchAttributes([
    { key: AkStage, value: 'done' },
    { key: AkOutcome, value: outcome },
  ]);
  await condition(allHandlersFinished);
  return outcome;
}
