import { ApplicationFailure } from '@temporalio/common';
import { appendAudit } from '../db/audit';
import { withTransaction } from '../db/pool';
import { recordTeeLogin, recordWalletSlot, walletRequestText } from '../db/tee';
import { recordMainWallet, upsertUserOnLogin } from '../db/users';
import { IdentityError, omniAccountOf } from '../lib/omni';
import { FailureType } from '../workflows/definitions';
import type { HeimaLoginRecord, HeimaLoginRecorded, WalletSlotRecorded, WalletSlotRequest } from '../workflows/tee-account.definitions';
import type { ActivityDeps } from './deps';

export interface RecordHeimaLoginInput extends HeimaLoginRecord {
  omniAccount: string;
}

export interface RecordWalletSlotInput extends WalletSlotRequest {
  omniAccount: string;
}

const retryableDbFailure = (what: string, e: unknown): ApplicationFailure =>
  // Retryable (the database may come back); after the last attempt the flow reports audit_error.
  ApplicationFailure.retryable(`could not record ${what}: ${(e as Error).message}`, FailureType.auditError);

export function createTeeActivities(deps: ActivityDeps) {
  return {
    /**
     * First-time bookkeeping of a TEE login (post_heima_login): creates the user on the first
     * login, bumps last_login_at after; records an EVM identity as the account's main wallet;
     * keeps the callback (opaque ClientAuth) and its audit row, all in one transaction.
     * Idempotent per token digest: the same callback twice is one tee_logins row, one audit row
     * and the same user_id.
     */
    async recordHeimaLogin(input: RecordHeimaLoginInput): Promise<HeimaLoginRecorded> {
      let derived: string;
      try {
        derived = omniAccountOf(input.clientId, input.identity);
      } catch (e) {
        if (e instanceof IdentityError) throw ApplicationFailure.nonRetryable(e.message, FailureType.badRequest);
        throw e;
      }
      if (derived !== input.omniAccount) throw ApplicationFailure.nonRetryable('userId does not derive to this account', FailureType.forbidden);
      const identity =
        input.identity.type === 'evm' || input.identity.type === 'email' ? { ...input.identity, value: input.identity.value.toLowerCase() } : input.identity;
      try {
        return await withTransaction(deps.db, async (tx) => {
          const user = await upsertUserOnLogin(tx, { clientId: input.clientId, omniAccount: input.omniAccount, identity });
          if (identity.type === 'evm') await recordMainWallet(tx, input.omniAccount, identity.value.startsWith('0x') ? identity.value : `0x${identity.value}`);
          await recordTeeLogin(tx, {
            tokenDigest: input.tokenDigest,
            omniAccount: input.omniAccount,
            clientId: input.clientId,
            userId: user.userId,
            clientAuth: input.clientAuth,
          });
          await appendAudit(tx, {
            event: 'tee.post_heima_login',
            outcome: 'ok',
            omniAccount: input.omniAccount,
            requestId: input.requestId,
            idemKey: `tee.post_heima_login:${input.tokenDigest}`,
            details: {
              user_id: user.userId,
              first_login: user.created,
              client_id: input.clientId,
              identity_type: identity.type,
              token_digest: input.tokenDigest.slice(0, 32),
            },
          });
          return { user_id: user.userId, first_login: user.created };
        });
      } catch (e) {
        throw retryableDbFailure('the TEE login', e);
      }
    },

    /**
     * Records a wallet slot (add_wallet) and its audit row in one transaction; idempotent per
     * requestKey. A key reused for another slot, and a new slot beyond BROKER_WALLET_SLOTS_MAX,
     * fail non-retryably with FailureType.conflict (409) and write nothing.
     */
    async recordTeeWalletSlot(input: RecordWalletSlotInput): Promise<WalletSlotRecorded> {
      const maxSlots = deps.config.BROKER_WALLET_SLOTS_MAX;
      let slot;
      try {
        slot = await withTransaction(deps.db, async (tx) => {
          const r = await recordWalletSlot(tx, { requestKey: input.requestKey, omniAccount: input.omniAccount, walletIndex: input.walletIndex, maxSlots });
          if (r.outcome !== 'recorded') return r;
          await appendAudit(tx, {
            event: 'tee.add_wallet',
            outcome: 'ok',
            omniAccount: input.omniAccount,
            requestId: input.requestId,
            idemKey: `tee.add_wallet:${input.requestKey}`,
            details: { wallet_index: r.walletIndex, created: r.created, requested_index: input.walletIndex ?? null },
          });
          return r;
        });
      } catch (e) {
        throw retryableDbFailure('the wallet slot', e);
      }
      if (slot.outcome === 'key_reused') {
        throw ApplicationFailure.nonRetryable(
          `this Idempotency-Key was already used for another add_wallet request (${walletRequestText(slot.requested)}); use a new key`,
          FailureType.conflict,
        );
      }
      if (slot.outcome === 'full') {
        throw ApplicationFailure.nonRetryable(
          `this account already holds ${slot.slots} wallet slots, the most allowed (BROKER_WALLET_SLOTS_MAX = ${maxSlots})`,
          FailureType.conflict,
        );
      }
      return { wallet_index: slot.walletIndex, created: slot.created };
    },
  };
}
