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
import { accountAttributes } from './account-attribute';
import { FailureType, type LoginOutcome } from './definitions';
import {
  DEVICE_AUTHORIZATION_ID_PREFIX,
  deviceDecisionUpdate,
  deviceRequestQuery,
  deviceTokenPollUpdate,
  registerDeviceCodeUpdate,
  type DeviceAuthorizationInput,
  type DeviceAuthorizationOutcome,
  type DeviceDecisionInput,
  type DeviceTokenPollInput,
  type DeviceTokenPollResult,
  type RegisterDeviceCodeInput,
} from './device-authorization.definitions';
import { flowFailure } from './failures';
import { pollBudget, pollPacer } from './poll-pacing';
import { finishFlow, showStage } from './progress';

type Status = 'pending' | 'approving' | 'approved' | 'denied' | 'expired';

const DIGEST_RE = /^[0-9a-f]{64}$/;

/**
 * One device authorization request (RFC 8628). The API starts it with the keyed digest of the
 * device_code (Update-with-Start registerDeviceCode) and hands the device its device_code and the
 * person the user code. The person's decision arrives as deviceDecision (the verify route, for the
 * account of its bearer): the first approval records the login (session row and audit row, as every
 * login) in a local activity; every later decision is a conflict. The device polls with
 * deviceTokenPoll and gets authorization_pending, slow_down, access_denied or expired_token
 * (§3.5), or the session exactly once. A timer ends the request at expires_at; the flow answers
 * expired_token for a grace period after, then ends.
 */
export async function deviceAuthorizationWorkflow(input: DeviceAuthorizationInput): Promise<DeviceAuthorizationOutcome> {
  const { workflowId } = workflowInfo();
  const requestId = workflowId.slice(DEVICE_AUTHORIZATION_ID_PREFIX.length);
  const expiresAtMs = input.expires_at * 1000;

  const { completeDeviceLogin } = proxyLocalActivities<Activities>({
    startToCloseTimeout: '10 seconds',
    retry: { initialInterval: '200 ms', backoffCoefficient: 2, maximumInterval: '2 seconds', maximumAttempts: 5 },
  });

  let status: Status = 'pending';
  let session: LoginOutcome | undefined;
  let collected = false;
  const pacer = pollPacer(input.settings.intervalSeconds);
  const polls = pollBudget(input.settings.pollsPerRun);
  const stage = (value: string) => {
    showStage(value);
    upsertSearchAttributes([{ key: AkStage, value }]);
  };
  /** Past expires_at while the request was still open: expired, whether or not a handler has marked it yet. */
  const isDue = () => (status === 'pending' || status === 'approved') && Date.now() >= expiresAtMs;
  const expireIfDue = () => {
    if (isDue()) status = 'expired';
  };
  /**
   * Why a decision cannot land now, if it cannot. Read by the decision's validator, so a refused
   * decision takes none of the run's 2,000 Updates (anyone holding the user code could otherwise
   * spend them, and the device's own collecting poll would then be refused), and again by its
   * handler: histories recorded before the validator read it replay their refused decisions there.
   */
  const decisionRefusal = (): ReturnType<typeof flowFailure> | undefined => {
    if (status === 'expired' || isDue()) return flowFailure(FailureType.expired, 'this code has expired or is unknown');
    if (status !== 'pending') return flowFailure(FailureType.conflict, 'this code has already been answered');
    return undefined;
  };

  setHandler(registerDeviceCodeUpdate, () => ({ expires_at: input.expires_at, interval: pacer.interval }), {
    validator: (request: RegisterDeviceCodeInput) => {
      // Another request drew this user code while this one is open: the API draws a new code.
      if (typeof request?.device_code_digest !== 'string' || !constantTimeEqual(request.device_code_digest, input.device_code_digest))
        throw flowFailure(FailureType.conflict, 'this user code is in use');
    },
  });

  // A query changes nothing: an expiry not yet applied is only shown.
  setHandler(deviceRequestQuery, () => {
    return {
      status: isDue() ? 'expired' : status,
      requested_at: input.requested_at,
      expires_at: input.expires_at,
      ...(input.client_id !== undefined ? { client_id: input.client_id } : {}),
      ...(input.scope !== undefined ? { scope: input.scope } : {}),
      // A query issues no command: no patch. A run started before the field existed answers without it.
      ...(input.requester_network !== undefined ? { requester_network: input.requester_network } : {}),
    };
  });

  setHandler(
    deviceDecisionUpdate,
    async (decision: DeviceDecisionInput) => {
      expireIfDue();
      const refused = decisionRefusal();
      if (refused) throw refused;
      if (decision.action === 'deny') {
        status = 'denied';
        stage('denied');
        return { status: 'denied' as const };
      }
      // Set before the first await: concurrent approvals see it and are refused (one account wins).
      status = 'approving';
      stage('approving');
      try {
        session = await completeDeviceLogin({ omni_account: decision.omni_account, requestId });
      } catch (e) {
        // Nothing was recorded: the request stays open for an account that can approve it.
        status = 'pending';
        stage('waiting_decision');
        const cause = e instanceof ActivityFailure ? e.cause : e;
        if (cause instanceof ApplicationFailure && cause.type === FailureType.forbidden) throw flowFailure(FailureType.forbidden, cause.message);
        throw flowFailure(FailureType.auditError, 'the approval could not be recorded; try again');
      }
      status = 'approved';
      upsertSearchAttributes([...accountAttributes(session), { key: AkStage, value: 'approved' }]);
      showStage('approved');
      return { status: 'approved' as const };
    },
    {
      validator: (decision: DeviceDecisionInput) => {
        if (decision?.action !== 'approve' && decision?.action !== 'deny') throw flowFailure(FailureType.badRequest, 'action must be approve or deny');
        if (typeof decision.omni_account !== 'string' || decision.omni_account.length === 0) throw flowFailure(FailureType.badRequest, 'no account');
        const refused = decisionRefusal();
        if (refused) throw refused;
      },
    },
  );

  setHandler(
    deviceTokenPollUpdate,
    (): DeviceTokenPollResult => {
      polls.count();
      expireIfDue();
      if (status === 'approved' && session && !collected) {
        collected = true;
        return { status: 'ready', session };
      }
      const interval = pacer.interval;
      if (collected) return { status: 'invalid_grant', interval };
      if (status === 'denied') return { status: 'access_denied', interval };
      if (status === 'expired') return { status: 'expired_token', interval };
      if (pacer.tooSoon(Date.now())) return { status: 'slow_down', interval: pacer.interval };
      return { status: 'authorization_pending', interval };
    },
    {
      // Only the device_code's holder polls: another digest changes nothing (no history is written).
      validator: (poll: DeviceTokenPollInput) => {
        if (
          typeof poll?.device_code_digest !== 'string' ||
          !DIGEST_RE.test(poll.device_code_digest) ||
          !constantTimeEqual(poll.device_code_digest, input.device_code_digest)
        )
          throw flowFailure(FailureType.forbidden, 'device_code does not belong to this request');
        polls.check(status === 'pending' && !isDue(), pacer.interval);
      },
    },
  );

  stage('waiting_decision');
  // The decision and the collection both happen before expires_at (the timer); an approval under way finishes first.
  await condition(() => collected || status === 'denied', Math.max(0, expiresAtMs - Date.now()));
  await condition(() => status !== 'approving');
  if (collected) return finishFlow('succeeded');
  const settled = status as Status; // set by the update handlers while this function awaited
  const ended: DeviceAuthorizationOutcome = settled === 'denied' ? 'denied' : settled === 'approved' ? 'uncollected' : 'expired';
  if (settled !== 'denied') status = 'expired';
  stage(status);
  // The device hears access_denied / expired_token for a while after, then the request is gone (invalid_grant).
  const graceEndsMs = expiresAtMs + input.settings.graceSeconds * 1000;
  await sleep(Math.max(0, graceEndsMs - Date.now()));
  return finishFlow(ended);
}
