import { ApplicationFailure, condition, proxyLocalActivities, setHandler, upsertSearchAttributes, uuid4 } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { AkStage } from '../lib/search-attributes';
import { showAccount } from './account-attribute';
import { finishFlow, showStage } from './progress';
import { buildEip191ChallengeMessage, buildSiweMessage, checkSiweMessage, normalizeWalletSignature, SIWE_STATEMENT } from '../lib/wallet-message';
import { FailureType } from './definitions';
import { flowFailure, unixSeconds } from './failures';
import {
  issueWalletChallengeUpdate,
  submitWalletSignatureUpdate,
  WALLET_PROOF_PURPOSE,
  type SubmitWalletSignatureInput,
  type WalletChallenge,
  type WalletLoginInput,
  type WalletLoginOutcome,
} from './wallet-login.definitions';

// Both steps are short and sit on the latency path of an HTTP request: local activities, so a
// login costs one workflow task (no activity task round trips through the server).
const { verifyWalletSignature } = proxyLocalActivities<Activities>({
  startToCloseTimeout: '10 seconds',
  retry: { initialInterval: '200 ms', backoffCoefficient: 2, maximumInterval: '2 seconds', maximumAttempts: 3 },
});
const { completeLogin } = proxyLocalActivities<Activities>({
  startToCloseTimeout: '10 seconds',
  retry: { initialInterval: '200 ms', backoffCoefficient: 2, maximumInterval: '2 seconds', maximumAttempts: 5, nonRetryableErrorTypes: [FailureType.replayed] },
});

type Status = 'waiting' | 'pending' | 'completing' | 'succeeded' | 'rejected' | 'replayed' | 'expired';

/** How long a challenge flow waits for its challenge to be asked for (it comes with the start). */
const ISSUE_WAIT_MS = 60_000;

function failureType(e: unknown): string | undefined {
  for (let c: unknown = e; c instanceof Error; c = c.cause) {
    if (c instanceof ApplicationFailure) return c.type ?? undefined;
  }
  return undefined;
}

/**
 * One wallet challenge login (`wallet-login/<keyed digest of request_id>`; the stateless form runs in the API
 * without a workflow, api/routes/wallet-login.ts). Update-with-Start issues an EIP-191 or SIWE challenge with a fresh nonce, a timer expires it,
 * and submitWalletSignature Updates verify signatures over exactly the issued text (wrong ones
 * leave the challenge open; the first right one consumes it). The signature is checked by a local
 * activity, and the login is recorded together with the replay guard row in one transaction.
 */
export async function walletLoginWorkflow(input: WalletLoginInput): Promise<WalletLoginOutcome> {
  const s = input.settings;
  const windowMs = s.windowSeconds * 1000;
  // Since 1.2.0 the workflow id holds only a digest of it; in runs 1.1.0 started the two were the same text.
  const requestId = input.requestId;
  const state: { status: Status } = { status: 'waiting' };
  let challenge: (WalletChallenge & { expiresAtMs: number; nonce: string }) | undefined;
  let deadlineMs = Date.now() + ISSUE_WAIT_MS;

  const stage = (value: string) => {
    showStage(value);
    upsertSearchAttributes([{ key: AkStage, value }]);
  };

  setHandler(issueWalletChallengeUpdate, () => {
    if (challenge) return { request_id: challenge.request_id, message: challenge.message, expires_at: challenge.expires_at };
    const issuedAtMs = unixSeconds(Date.now()) * 1000;
    const expiresAtMs = issuedAtMs + windowMs;
    const nonce = uuid4().replace(/-/g, '');
    const message =
      input.format === 'siwe'
        ? buildSiweMessage({
            domain: input.domain,
            address: input.checksumAddress,
            statement: SIWE_STATEMENT,
            uri: input.uri,
            version: '1',
            chainId: input.chainId,
            nonce,
            issuedAt: new Date(issuedAtMs).toISOString(),
            expirationTime: new Date(expiresAtMs).toISOString(),
          })
        : buildEip191ChallengeMessage(input.address, nonce, unixSeconds(issuedAtMs));
    challenge = { request_id: input.requestId, message, expires_at: unixSeconds(expiresAtMs), expiresAtMs, nonce };
    deadlineMs = expiresAtMs;
    state.status = 'pending';
    stage('challenge_issued');
    return { request_id: challenge.request_id, message, expires_at: challenge.expires_at };
  });

  /** The message the signature must be over, and how long its proof row must be kept; or a refusal. */
  function messageToVerify(now: number): { message: string; proofExpiresAt: number; purpose: string } {
    if (!challenge || now >= challenge.expiresAtMs) {
      state.status = 'expired';
      throw flowFailure(FailureType.expired, 'this challenge has expired; ask for a new one');
    }
    if (input.format === 'siwe') {
      // The text is the broker's own, so this catches time only; the same checker is what vets every field.
      const problem = checkSiweMessage(
        challenge.message,
        {
          domain: input.domain,
          address: input.checksumAddress,
          uri: input.uri,
          chainId: input.chainId,
          nonce: challenge.nonce,
          windowSeconds: s.windowSeconds,
        },
        now,
      );
      if (problem) throw flowFailure(FailureType.expired, `this challenge can no longer be used: ${problem}`);
    }
    return { message: challenge.message, proofExpiresAt: unixSeconds(challenge.expiresAtMs), purpose: WALLET_PROOF_PURPOSE[input.format] };
  }

  setHandler(
    submitWalletSignatureUpdate,
    async (submission: SubmitWalletSignatureInput) => {
      if (state.status === 'completing' || state.status === 'succeeded' || state.status === 'replayed') {
        throw flowFailure(FailureType.replayed, 'this challenge has already been used (or is being used right now); sign a new message');
      }
      if (state.status === 'rejected') throw flowFailure(FailureType.unauthorized, 'this signature was refused');
      if (state.status !== 'pending') throw flowFailure(FailureType.expired, 'this login request has expired; start again');
      const { message, proofExpiresAt, purpose } = messageToVerify(Date.now());
      state.status = 'completing';
      stage('verifying');
      let check: Awaited<ReturnType<typeof verifyWalletSignature>>;
      try {
        check = await verifyWalletSignature({ address: input.address, message, signature: submission.signature });
      } catch {
        state.status = 'pending';
        throw flowFailure(FailureType.chainUnavailable, 'the chain needed to check a contract-wallet signature did not answer; try again');
      }
      if (!check.valid) {
        // The challenge stays open for the right signature.
        state.status = 'pending';
        stage('challenge_issued');
        throw flowFailure(check.malformed ? FailureType.badRequest : FailureType.unauthorized, check.reason);
      }
      stage('completing');
      try {
        const session = await completeLogin({
          method: input.format === 'siwe' ? 'siwe' : 'wallet',
          identity: { type: 'evm', value: input.address },
          requestId,
          wallet: input.address,
          consumeProof: { hash: check.replayKey, purpose, expiresAt: proofExpiresAt },
        });
        showAccount(session);
        state.status = 'succeeded';
        return session;
      } catch (e) {
        if (failureType(e) === FailureType.replayed) {
          state.status = 'replayed';
          throw flowFailure(FailureType.replayed, 'this signature has already been used; sign a new message');
        }
        state.status = 'pending';
        stage('challenge_issued');
        throw flowFailure(FailureType.auditError, 'the login could not be recorded; try again');
      }
    },
    {
      validator: (submission: SubmitWalletSignatureInput) => {
        if (typeof submission?.signature !== 'string') throw flowFailure(FailureType.badRequest, 'signature is missing');
        try {
          normalizeWalletSignature(submission.signature, s.contractWallets);
        } catch (e) {
          throw flowFailure(FailureType.badRequest, (e as Error).message);
        }
        if (submission.request_id !== input.requestId) throw flowFailure(FailureType.badRequest, 'request_id does not match this challenge');
      },
    },
  );

  // Wait for the challenge to be asked for, then for a signature or the deadline.
  if (!(await condition(() => state.status !== 'waiting', ISSUE_WAIT_MS))) state.status = 'expired';
  while (state.status === 'pending' || state.status === 'completing') {
    if (state.status === 'completing') {
      await condition(() => state.status !== 'completing');
      continue;
    }
    const remaining = deadlineMs - Date.now();
    const woke = remaining > 0 && (await condition(() => state.status !== 'pending', remaining));
    if (!woke && state.status === 'pending') state.status = 'expired';
  }

  const outcome: WalletLoginOutcome =
    state.status === 'succeeded'
      ? 'succeeded'
      : state.status === 'replayed'
        ? 'replayed'
        : state.status === 'expired' || state.status === 'waiting'
          ? 'expired'
          : 'rejected';
  return finishFlow(outcome);
}
