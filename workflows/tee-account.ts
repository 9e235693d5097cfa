import { allHandlersFinished, condition, continueAsNew, proxyActivities, setHandler, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { AkOutcome, AkStage } from '../lib/search-attributes';
import { FailureType } from './definitions';
import { showOutcome, showStage } from './progress';
import { flowFailure } from './failures';
import {
  addWalletSlotUpdate,
  recordHeimaLoginUpdate,
  type HeimaLoginRecord,
  type HeimaLoginRecorded,
  type TeeAccountInput,
  type WalletSlotRecorded,
  type WalletSlotRequest,
} from './tee-account.definitions';

const { recordHeimaLogin, recordTeeWalletSlot } = proxyActivities<Activities>({
  startToCloseTimeout: '10 seconds',
  // Database hiccups are retried while the TEE waits (~3 s in all); a refused input is final.
  retry: {
    initialInterval: '200 ms',
    backoffCoefficient: 2,
    maximumInterval: '2 seconds',
    maximumAttempts: 5,
    nonRetryableErrorTypes: [FailureType.badRequest, FailureType.forbidden],
  },
});

const DIGEST_RE = /^[0-9a-f]{64}$/;

function failureOf(e: unknown, what: string): Error {
  const cause = (e as { cause?: { type?: string; message?: string } }).cause;
  if (cause?.type === FailureType.badRequest) return flowFailure(FailureType.badRequest, cause.message ?? 'bad request');
  if (cause?.type === FailureType.forbidden) return flowFailure(FailureType.forbidden, cause.message ?? 'forbidden');
  if (cause?.type === FailureType.conflict) return flowFailure(FailureType.conflict, cause.message ?? 'conflict');
  return flowFailure(FailureType.auditError, `${what} could not be recorded; try again`);
}

/**
 * One entity workflow per account (workflow id tee-account/<tag>) that does the TEE callbacks'
 * bookkeeping, one at a time: first-time user creation on post_heima_login, wallet slots on
 * add_wallet. The API drives it with Update-with-Start (USE_EXISTING), so concurrent callbacks for
 * the same account meet here; identical logins (same token digest) share one activity call and
 * one result. The run completes after an idle period and continues as new after a number of
 * Updates, keeping its history short.
 */
export async function teeAccountWorkflow(input: TeeAccountInput): Promise<void> {
  const { settings, omniAccount } = input;
  let handled = 0;
  // Bookkeeping runs one step at a time (a wallet slot never races a login of the same account).
  let tail: Promise<unknown> = Promise.resolve();
  const serially = <T>(step: () => Promise<T>): Promise<T> => {
    const next = tail.then(step);
    tail = next.catch(() => undefined);
    return next;
  };
  const logins = new Map<string, Promise<HeimaLoginRecorded>>();

  setHandler(
    recordHeimaLoginUpdate,
    async (record: HeimaLoginRecord) => {
      handled += 1;
      let pending = logins.get(record.tokenDigest);
      if (!pending) {
        pending = serially(() => recordHeimaLogin({ ...record, omniAccount }));
        logins.set(record.tokenDigest, pending);
        const digest = record.tokenDigest;
        // A failed attempt must not be memoised: the TEE (or an operator) may send it again.
        void pending.catch(() => logins.delete(digest));
      }
      try {
        const recorded = await pending;
        showStage('login_recorded');
        upsertSearchAttributes([{ key: AkStage, value: 'login_recorded' }]);
        return recorded;
      } catch (e) {
        throw failureOf(e, 'the login');
      }
    },
    {
      validator: (record: HeimaLoginRecord) => {
        if (typeof record?.tokenDigest !== 'string' || !DIGEST_RE.test(record.tokenDigest)) throw flowFailure(FailureType.badRequest, 'malformed login record');
      },
    },
  );

  setHandler(
    addWalletSlotUpdate,
    async (request: WalletSlotRequest) => {
      handled += 1;
      try {
        const recorded: WalletSlotRecorded = await serially(() => recordTeeWalletSlot({ ...request, omniAccount }));
        showStage('wallet_recorded');
        upsertSearchAttributes([{ key: AkStage, value: 'wallet_recorded' }]);
        return recorded;
      } catch (e) {
        throw failureOf(e, 'the wallet');
      }
    },
    {
      validator: (request: WalletSlotRequest) => {
        if (typeof request?.requestKey !== 'string' || request.requestKey.length === 0) throw flowFailure(FailureType.badRequest, 'malformed wallet request');
        const i = request.walletIndex;
        if (i !== undefined && (!Number.isInteger(i) || i < 0 || i > 2_147_483_647))
          throw flowFailure(FailureType.badRequest, 'wallet_index must be a non-negative integer');
      },
    },
  );

  let seen = 0;
  for (;;) {
    const active = await condition(() => handled !== seen, settings.idleSeconds * 1000);
    if (active) {
      seen = handled;
      if (handled >= settings.maxUpdatesPerRun || workflowInfo().continueAsNewSuggested) {
        await condition(allHandlersFinished);
        await continueAsNew<typeof teeAccountWorkflow>(input);
      }
      continue;
    }
    // Idle: finish what is in flight; an Update that arrived meanwhile keeps the run alive.
    await condition(allHandlersFinished);
    if (handled === seen) break;
  }
  showOutcome('idle');
  upsertSearchAttributes([
    { key: AkStage, value: 'done' },
    { key: AkOutcome, value: 'idle' },
  ]);
}
