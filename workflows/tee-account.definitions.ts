/**
 * Definitions of the per-account TEE bookkeeping workflow (tee-account/<tag>): its input, the
 * Updates the TEE callbacks send and their results. Deterministic: no Node built-ins, no I/O.
 */
import { defineUpdate } from '@temporalio/workflow';
import type { Identity } from '../lib/omni';

/**
 * The workflow id is this prefix and the account's keyed tag (lib/digest.ts accountTag): the id is
 * what a namespace reader lists, so it carries no OmniAccount. Until 1.2.0 it was `account/<omni>`
 * (the same type; such runs idle out after BROKER_TEE_ACCOUNT_IDLE_SECONDS, and the database, not
 * the run, is what keeps two concurrent bookkeeping steps of one account correct: db/tee.ts).
 */
export const TEE_ACCOUNT_ID_PREFIX = 'tee-account/';

export interface TeeAccountSettings {
  /** The run completes after this long without an Update. */
  idleSeconds: number;
  /** Updates one run handles before it continues as new. */
  maxUpdatesPerRun: number;
}

export interface TeeAccountInput {
  /** The OmniAccount (itself a SHA-256 digest: no PII). */
  omniAccount: string;
  settings: TeeAccountSettings;
}

/** JSON as it travels: the TEE's ClientAuth, its secret-bearing values already replaced by digests. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** A verified post_heima_login callback. */
export interface HeimaLoginRecord {
  clientId: string;
  identity: Identity;
  clientAuth: JsonValue;
  /** Keyed digest of the TEE access JWT: the idempotency key of the callback. Never the token. */
  tokenDigest: string;
  /** The HTTP request id, for the audit row. */
  requestId: string;
}

export interface HeimaLoginRecorded {
  user_id: string;
  first_login: boolean;
}

/** A verified add_wallet callback. */
export interface WalletSlotRequest {
  /** Unique per callback (or derived from an Idempotency-Key): a retry answers the same slot. */
  requestKey: string;
  /** The slot asked for; absent = the lowest free slot. */
  walletIndex?: number;
  requestId: string;
}

export interface WalletSlotRecorded {
  wallet_index: number;
  created: boolean;
}

export const recordHeimaLoginUpdate = defineUpdate<HeimaLoginRecorded, [HeimaLoginRecord]>('recordHeimaLogin');
export const addWalletSlotUpdate = defineUpdate<WalletSlotRecorded, [WalletSlotRequest]>('addWalletSlot');
