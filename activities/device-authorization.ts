import { ApplicationFailure } from '@temporalio/common';
import { findUserByOmni } from '../db/users';
import type { Identity } from '../lib/omni';
import { FailureType, type LoginOutcome } from '../workflows/definitions';
import type { ActivityDeps } from './deps';
import { createLoginActivities } from './login-completion';

export interface CompleteDeviceLoginInput {
  /** The account whose bearer approved the request on the verify route. */
  omni_account: string;
  requestId: string;
}

export function createDeviceAuthorizationActivities(deps: ActivityDeps) {
  const login = createLoginActivities(deps);
  return {
    /**
     * The approving account's login on the device: the shared completion (session row and
     * `login.device` audit row in one transaction), for the identity the account was created with,
     * so the device's session names the same account as the approver's. Idempotent per run (the
     * completion derives the jti from it). An account the broker has never recorded (a bare TEE
     * token) cannot approve: nothing is written and the request stays open.
     */
    async completeDeviceLogin(input: CompleteDeviceLoginInput): Promise<LoginOutcome> {
      const user = await findUserByOmni(deps.db, input.omni_account);
      if (!user)
        throw ApplicationFailure.nonRetryable(
          'this account has never signed in to the broker; sign in to the broker first, then approve',
          FailureType.forbidden,
        );
      const identity = { type: user.identity_type, value: user.identity_value } as Identity;
      return login.completeLogin({ method: 'device', identity, requestId: input.requestId });
    },
  };
}
