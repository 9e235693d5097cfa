/**
 * Definitions of the wallet challenge flow (EIP-191 and SIWE challenges):
 * inputs, updates and ids shared by the workflow, its activities and the API. Deterministic.
 */
import { defineUpdate } from '@temporalio/workflow';
import type { LoginOutcome } from './definitions';

/** `wallet-login/<requestIdDigest(secret, 'wallet-login', request_id)>` (lib/digest.ts) (since 1.2.0; `wallet-login/<request_id>` before). */
export const WALLET_LOGIN_ID_PREFIX = 'wallet-login/';

export type WalletMessageFormat = 'eip191' | 'siwe';

export interface WalletLoginSettings {
  /** ± window around the broker's clock for stateless timestamps; challenge lifetime. */
  windowSeconds: number;
  /** Contract wallets (ERC-1271/6492) are verified (an RPC URL is configured). */
  contractWallets: boolean;
}

export interface WalletChallengeRequest {
  kind: 'challenge';
  /** 32 lower-case hex, the client's handle on the challenge (the workflow id holds only its keyed digest). */
  requestId: string;
  format: WalletMessageFormat;
  /** Lower-case 0x address. */
  address: string;
  /** EIP-55 form of the address (SIWE messages carry it). */
  checksumAddress: string;
  chainId: number;
  /** SIWE domain: the authority (host[:port]) of the broker's public URL. */
  domain: string;
  /** SIWE URI: the broker's public URL. */
  uri: string;
  settings: WalletLoginSettings;
}

export type WalletLoginInput = WalletChallengeRequest;

export interface WalletChallenge {
  request_id: string;
  /** The exact text to sign with personal_sign. */
  message: string;
  /** Unix seconds. */
  expires_at: number;
}

export interface SubmitWalletSignatureInput {
  /** The request_id issued. */
  request_id: string;
  /** Normalised signature hex (lib/wallet-message.ts normalizeWalletSignature). */
  signature: string;
}

export type WalletLoginOutcome = 'succeeded' | 'rejected' | 'replayed' | 'expired';

export const issueWalletChallengeUpdate = defineUpdate<WalletChallenge, []>('issueWalletChallenge');
export const submitWalletSignatureUpdate = defineUpdate<LoginOutcome, [SubmitWalletSignatureInput]>('submitWalletSignature');

/** used_signatures.purpose of the proofs this flow consumes. */
export const WALLET_PROOF_PURPOSE = { stateless: 'wallet_login', eip191: 'wallet_challenge_eip191', siwe: 'wallet_challenge_siwe' } as const;
