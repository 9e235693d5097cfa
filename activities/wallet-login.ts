import { ApplicationFailure } from '@temporalio/common';
import { createEvmSignatureVerifier, EvmRpcUnavailableError, type WalletSignatureCheck, type WalletSignatureInput } from '../adapters/evm-signature';
import { FailureType } from '../workflows/definitions';
import type { ActivityDeps } from './deps';

export type VerifyWalletSignatureInput = WalletSignatureInput;

export function createWalletLoginActivities(deps: ActivityDeps) {
  const verifier = createEvmSignatureVerifier(deps.config.BROKER_EVM_RPC_URL);
  return {
    /**
     * Checks that `signature` over `message` was made by `address` (ecrecover; ERC-1271/6492 when
     * an RPC URL is configured). Pure computation plus, for contract wallets, a read-only chain
     * call: idempotent. A bad signature is a result, not a failure; only an unreachable chain
     * throws (retried, then reported as ChainUnavailable).
     */
    async verifyWalletSignature(input: VerifyWalletSignatureInput): Promise<WalletSignatureCheck> {
      try {
        return await verifier.verify(input);
      } catch (e) {
        // The adapter's EvmRpcUnavailableError names the kind of failure only (an RPC URL may carry an API key).
        throw ApplicationFailure.retryable(e instanceof EvmRpcUnavailableError ? e.message : 'the EVM RPC did not answer', FailureType.chainUnavailable);
      }
    },
  };
}
