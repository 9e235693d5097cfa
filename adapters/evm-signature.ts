import { createRequire } from 'node:module';
import { createPublicClient, hashMessage, http, keccak256, recoverAddress, type PublicClient } from 'viem';
import { sha256Hex } from '../lib/digest';
import { AgentKeysError } from '../lib/errors';
import { MAX_WALLET_MESSAGE_BYTES, normalizeWalletSignature, parseEoaSignature, SignatureFormatError, type EoaSignature } from '../lib/wallet-message';

/**
 * EVM signature verification for wallet logins.
 *
 * ecrecover is the hot spot of a wallet login. viem's pure-JS path (noble-curves) costs ~1.8 ms a
 * call on this machine; libsecp256k1 through the `secp256k1` package's N-API binding ~0.1 ms.
 * The binding ships prebuilt for linux-x64 (glibc and musl), darwin-arm64 and win32-x64 and loads
 * through node-gyp-build with no install script, so `npm ci` with scripts blocked still gets it.
 * When it cannot load (another platform), recovery falls back to viem's path: slower, same answers.
 * Both refuse high-s signatures before recovery (see parseEoaSignature), so the backends agree.
 *
 * Smart-contract wallets (ERC-1271, and ERC-6492 for not-yet-deployed ones) need a chain: with an
 * RPC URL configured they are verified through viem's public client; without one, EOA only.
 */

interface NativeSecp256k1 {
  ecdsaRecover(signature: Uint8Array, recoveryId: number, message32: Uint8Array, compressed: boolean): Uint8Array;
}

export type Secp256k1Backend = 'native' | 'js';

function loadNative(): { native?: NativeSecp256k1; error?: string } {
  try {
    // `secp256k1/bindings` is the N-API build only; the package's main entry would silently fall
    // back to the `elliptic` library instead, which this module does not want.
    const load = createRequire(__filename);
    const native = load('secp256k1/bindings') as NativeSecp256k1;
    if (typeof native.ecdsaRecover !== 'function') return { error: 'secp256k1 binding has no ecdsaRecover' };
    return { native };
  } catch (e) {
    return { error: (e as Error).message.split('\n')[0] };
  }
}

const loaded = loadNative();
/** Which implementation recovers signers in this process. */
export const SECP256K1_BACKEND: Secp256k1Backend = loaded.native ? 'native' : 'js';
/** Why the native binding did not load (undefined when it did). */
export const SECP256K1_NATIVE_ERROR: string | undefined = loaded.error;

function hexToBytes(hex: string): Uint8Array {
  return Uint8Array.from(Buffer.from(hex.slice(2), 'hex'));
}

/** The EIP-191 (version 0x45, personal_sign) digest of a message. */
export function personalMessageDigest(message: string): Uint8Array {
  return hashMessage(message, 'bytes');
}

/**
 * Recovers the lower-case address that signed `digest`. Throws when the signature does not
 * recover (e.g. r is not the x of a curve point).
 */
export async function recoverSigner(digest: Uint8Array, signature: EoaSignature, backend: Secp256k1Backend = SECP256K1_BACKEND): Promise<string> {
  if (backend === 'native') {
    if (!loaded.native) throw new Error(`the native secp256k1 binding is not loaded: ${loaded.error ?? 'unknown reason'}`);
    const compact = hexToBytes(signature.normalized).subarray(0, 64);
    const publicKey = loaded.native.ecdsaRecover(compact, signature.recoveryBit, digest, false);
    return `0x${keccak256(publicKey.subarray(1), 'hex').slice(-40)}`;
  }
  return (await recoverAddress({ hash: digest, signature: signature.normalized as `0x${string}` })).toLowerCase();
}

/** The key under which a used proof is stored in used_signatures. */
export function eoaReplayKey(normalizedSignature: string): string {
  return sha256Hex(normalizedSignature);
}

/**
 * Contract-wallet signatures have no canonical byte form (a wrapper can be re-encoded), so their
 * replay key is the signed message for that address instead of the signature bytes. The stateless
 * wallet login consumes this key for every signature, an EOA's too (api/routes/wallet-login.ts):
 * an EOA's own signature re-encoded can pass the chain check when the EOA is delegated (EIP-7702).
 */
export function contractReplayKey(address: string, message: string): string {
  return sha256Hex(`erc1271:${address.toLowerCase()}:${hashMessage(message)}`);
}

export type WalletSignatureCheck = { valid: true; via: 'ecrecover' | 'erc1271'; replayKey: string } | { valid: false; malformed: boolean; reason: string };

export interface WalletSignatureInput {
  /** Lower-case 0x address that claims to have signed. */
  address: string;
  message: string;
  signature: string;
}

export interface EvmSignatureVerifier {
  /** True when an RPC URL is configured and contract wallets can be verified. */
  readonly contractWallets: boolean;
  /**
   * Verifies a personal_sign signature. Bad signatures resolve `{valid: false}`; only an
   * unreachable chain throws (worth retrying).
   */
  verify(input: WalletSignatureInput): Promise<WalletSignatureCheck>;
  /** For /readyz: which wallets can log in, and whether the chain answers. */
  readiness(): Promise<{ ok: boolean; detail: string }>;
}

/**
 * The chain did not answer a contract-wallet check or the readiness probe. Its message names the
 * failure's kind and HTTP status only: an RPC URL often carries an API key in its path (Alchemy,
 * Infura), and viem's errors quote the URL, so none of their text is passed on (to a client's 503,
 * a log line, /readyz or a workflow's failure).
 */
export class EvmRpcUnavailableError extends AgentKeysError {
  override readonly code: string = 'ERR_EVM_RPC_UNAVAILABLE';
}

/** What may be said of an RPC failure: the error's name and the HTTP status it carries, if any. */
function rpcFailure(e: unknown, status?: number): EvmRpcUnavailableError {
  const name = e instanceof Error && /^\w{1,64}$/.test(e.name) ? e.name : 'error';
  const s = status ?? (e as { status?: unknown } | undefined)?.status;
  return new EvmRpcUnavailableError(`the EVM RPC did not answer (${name}${typeof s === 'number' ? `, HTTP ${s}` : ''})`);
}

/**
 * viem's verifyMessage reads a failed validator call (an unreachable RPC included) as "invalid
 * signature". Each contract-wallet check therefore gets a client whose fetch records transport
 * failures, so an outage is reported as such (and retried) instead of refusing a good signature.
 */
async function verifyOnChain(rpcUrl: string, timeoutMs: number, input: WalletSignatureInput & { signature: `0x${string}` }): Promise<boolean> {
  let unreachable: EvmRpcUnavailableError | undefined;
  const fetchFn: typeof fetch = async (url, init) => {
    try {
      const res = await fetch(url, init);
      if (!res.ok) unreachable = rpcFailure(undefined, res.status);
      return res;
    } catch (e) {
      unreachable = rpcFailure(e);
      throw e;
    }
  };
  const client = createPublicClient({ transport: http(rpcUrl, { timeout: timeoutMs, retryCount: 1, fetchFn }) });
  let ok: boolean;
  try {
    ok = await client.verifyMessage({ address: input.address as `0x${string}`, message: input.message, signature: input.signature });
  } catch (e) {
    throw unreachable ?? rpcFailure(e);
  }
  if (!ok && unreachable !== undefined) throw unreachable;
  return ok;
}

export function createEvmSignatureVerifier(rpcUrl?: string, opts: { timeoutMs?: number } = {}): EvmSignatureVerifier {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const client: PublicClient | undefined = rpcUrl ? createPublicClient({ transport: http(rpcUrl, { timeout: timeoutMs, retryCount: 1 }) }) : undefined;
  const recovery = SECP256K1_BACKEND === 'native' ? 'native libsecp256k1' : `pure-JS (native binding unavailable: ${SECP256K1_NATIVE_ERROR ?? '?'})`;
  return {
    contractWallets: client !== undefined,
    async verify({ address, message, signature }) {
      if (Buffer.byteLength(message, 'utf8') > MAX_WALLET_MESSAGE_BYTES) {
        return { valid: false, malformed: true, reason: `message is larger than ${MAX_WALLET_MESSAGE_BYTES} bytes` };
      }
      let normalized: string;
      try {
        normalized = normalizeWalletSignature(signature, client !== undefined);
      } catch (e) {
        if (e instanceof SignatureFormatError) return { valid: false, malformed: true, reason: e.message };
        throw e;
      }
      if (normalized.length === 132) {
        let signer: string | undefined;
        try {
          signer = await recoverSigner(personalMessageDigest(message), parseEoaSignature(normalized));
        } catch {
          signer = undefined;
        }
        if (signer === address) return { valid: true, via: 'ecrecover', replayKey: eoaReplayKey(normalized) };
        if (!client) return { valid: false, malformed: false, reason: 'the signature was not made by this address' };
      }
      if (!rpcUrl) return { valid: false, malformed: true, reason: 'contract-wallet signatures need BROKER_EVM_RPC_URL' };
      const ok = await verifyOnChain(rpcUrl, timeoutMs, { address, message, signature: normalized as `0x${string}` });
      return ok
        ? { valid: true, via: 'erc1271', replayKey: contractReplayKey(address, message) }
        : { valid: false, malformed: false, reason: 'neither this address nor its contract wallet accepts the signature' };
    },
    async readiness() {
      if (!client) return { ok: true, detail: `EOA signatures only (BROKER_EVM_RPC_URL unset); ecrecover: ${recovery}` };
      let chainId: number;
      try {
        chainId = await client.getChainId();
      } catch (e) {
        throw rpcFailure(e);
      }
      return { ok: true, detail: `EOA and contract wallets (ERC-1271/6492) via chain ${chainId}; ecrecover: ${recovery}` };
    },
  };
}
