import { condition, proxyLocalActivities, setHandler, sleep, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { Identity } from '../lib/omni';
import { AkStage } from '../lib/search-attributes';
import { showAccount } from './account-attribute';
import { FailureType, type LoginOutcome } from './definitions';
import { failureOf, failureTypeOf, flowFailure, unixSeconds } from './failures';
import {
  openPasskeyChallengeUpdate,
  PASSKEY_CEREMONY_ID_PREFIX,
  PASSKEY_PROOF_PURPOSE,
  submitPasskeyResponseUpdate,
  type PasskeyCeremonyInput,
  type PasskeyCeremonyOutcome,
  type PasskeyCeremonyResult,
  type SubmitPasskeyResponseInput,
} from './passkey-ceremony.definitions';
import { finishFlow, showStage } from './progress';

// Verification and the login sit on the latency path of one HTTP request: local activities.
const { verifyPasskeyRegistration, verifyPasskeyAssertion } = proxyLocalActivities<Activities>({
  startToCloseTimeout: '10 seconds',
  retry: { initialInterval: '200 ms', backoffCoefficient: 2, maximumInterval: '2 seconds', maximumAttempts: 3 },
});
const { completeLogin } = proxyLocalActivities<Activities>({
  startToCloseTimeout: '10 seconds',
  retry: { initialInterval: '200 ms', backoffCoefficient: 2, maximumInterval: '2 seconds', maximumAttempts: 5, nonRetryableErrorTypes: [FailureType.replayed] },
});

type Status = 'waiting' | 'pending' | 'verifying' | 'used' | 'refused' | 'expired';

/** How long a ceremony waits for its challenge to be asked for (it comes with the start). */
const ISSUE_WAIT_MS = 60_000;

/**
 * One WebAuthn ceremony (`passkey/<request_id>`): Update-with-Start opens the challenge the API
 * drew and starts its timer; the first submitPasskeyResponse that arrives in time is verified by a
 * local activity and uses the challenge up, whatever the verdict (a ceremony answers once). A
 * registration stores the passkey; a sign-up stores it and signs the new account in; a login
 * signs in the account the passkey belongs to, through the shared completeLogin (the same session
 * and audit row as every login). The run stays until the challenge would have expired, so a
 * second answer hears "already used" (409), and a late one "expired" (410).
 */
export async function passkeyCeremonyWorkflow(input: PasskeyCeremonyInput): Promise<PasskeyCeremonyOutcome> {
  const requestId = workflowInfo().workflowId.slice(PASSKEY_CEREMONY_ID_PREFIX.length);
  const state: { status: Status } = { status: 'waiting' };
  let expiresAtMs = 0;

  const stage = (value: string) => {
    showStage(value);
    upsertSearchAttributes([{ key: AkStage, value }]);
  };

  setHandler(openPasskeyChallengeUpdate, () => {
    if (state.status === 'waiting') {
      expiresAtMs = (unixSeconds(Date.now()) + input.settings.ttlSeconds) * 1000;
      state.status = 'pending';
      stage('challenge_issued');
    }
    return { request_id: requestId, expires_at: unixSeconds(expiresAtMs) };
  });

  /** Signs in `identity` with this challenge as the login's one-time proof. */
  async function signIn(identity: Identity): Promise<LoginOutcome> {
    stage('completing');
    try {
      const session = await completeLogin({
        method: 'passkey',
        identity,
        requestId,
        consumeProof: { hash: `passkey:${requestId}`, purpose: PASSKEY_PROOF_PURPOSE, expiresAt: unixSeconds(expiresAtMs) },
      });
      showAccount(session);
      return session;
    } catch (e) {
      if (failureTypeOf(e) === FailureType.replayed) {
        state.status = 'used';
        throw flowFailure(FailureType.replayed, 'this challenge has already been used; ask for a new one');
      }
      state.status = 'pending';
      stage('challenge_issued');
      throw flowFailure(FailureType.auditError, 'the login could not be recorded; try again');
    }
  }

  setHandler(
    submitPasskeyResponseUpdate,
    async (submission: SubmitPasskeyResponseInput): Promise<PasskeyCeremonyResult> => {
      if (state.status === 'verifying' || state.status === 'used' || state.status === 'refused') {
        throw flowFailure(FailureType.replayed, 'this challenge has already been used (or is being used right now); ask for a new one');
      }
      if (state.status !== 'pending' || Date.now() >= expiresAtMs) {
        state.status = 'expired';
        throw flowFailure(FailureType.expired, 'this challenge has expired; ask for a new one');
      }
      state.status = 'verifying';
      stage('verifying');
      const common = { challenge: input.challenge, rpId: input.rpId, origins: input.origins, response: submission.response, requestId };
      let verdict: Awaited<ReturnType<typeof verifyPasskeyRegistration>> | Awaited<ReturnType<typeof verifyPasskeyAssertion>>;
      try {
        verdict =
          input.kind === 'login'
            ? await verifyPasskeyAssertion(common)
            : await verifyPasskeyRegistration({
                ...common,
                kind: input.kind,
                omniAccount: input.omniAccount ?? '',
                userHandle: input.userHandle ?? '',
                name: submission.name ?? 'Passkey',
              });
      } catch {
        state.status = 'pending';
        stage('challenge_issued');
        throw flowFailure(FailureType.auditError, 'the passkey could not be checked or recorded; try again');
      }
      if (!verdict.ok) {
        state.status = 'refused';
        stage('refused');
        throw failureOf(verdict.code, verdict.reason);
      }
      if ('passkey' in verdict && input.kind === 'register') {
        state.status = 'used';
        return { kind: 'registered', passkey: verdict.passkey };
      }
      const identity: Identity = 'identity' in verdict ? verdict.identity : { type: 'passkey', value: input.userHandle ?? '' };
      const session = await signIn(identity);
      state.status = 'used';
      return { kind: 'session', session, passkey_id: verdict.credentialId };
    },
    {
      validator: (submission: SubmitPasskeyResponseInput) => {
        if (typeof submission?.response !== 'object' || submission.response === null) throw flowFailure(FailureType.badRequest, 'response is missing');
        if ((submission.door === 'register') !== (input.kind === 'register'))
          throw flowFailure(
            FailureType.badRequest,
            `this challenge is for ${input.kind === 'register' ? 'adding a passkey' : 'signing in'}; send it to that route`,
          );
        // Only the account that asked for a registration challenge may answer it (nothing is used up otherwise).
        if (input.kind === 'register' && submission.omniAccount !== input.omniAccount)
          throw flowFailure(FailureType.forbidden, 'this registration challenge was issued to another account');
      },
    },
  );

  if (!(await condition(() => state.status !== 'waiting', ISSUE_WAIT_MS))) return finishFlow('expired');
  // The challenge lives its whole window, used or not, so a second answer is told it was used.
  const remaining = expiresAtMs - Date.now();
  if (remaining > 0) await sleep(remaining);
  if (state.status === 'pending') state.status = 'expired';
  await condition(() => state.status !== 'verifying');
  const outcome: PasskeyCeremonyOutcome = state.status === 'used' ? 'succeeded' : state.status === 'refused' ? 'refused' : 'expired';
  return finishFlow(outcome);
}
