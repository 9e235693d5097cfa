/**
 * A loopback JSON-RPC stand-in for the chain that contract-wallet signatures (ERC-1271 through
 * viem's ERC-6492 universal validator) are checked against: no chain is reachable here, so the
 * stand-in plays the chain. It decodes the validator call viem sends (address, message hash,
 * signature), unwraps an ERC-6492 envelope as the validator does, and answers like a one-owner
 * wallet would (a contract, or an EOA delegated under EIP-7702 whose delegate checks the account's
 * own key): valid when the signature is the owner's signature of the hash, as 0x00 || 65 bytes,
 * 65 bytes (any s, v 0/1 or 27/28, like ecrecover) or 64 bytes compact (EIP-2098).
 *
 * Shared by test/wallet-contract.test.ts (wallet login) and test/grant-acceptance-respelled.test.ts
 * (grant acceptance): start the broker with BROKER_EVM_RPC_URL set to `url`.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  compactSignatureToSignature,
  decodeDeployData,
  erc6492SignatureValidatorAbi,
  erc6492SignatureValidatorByteCode,
  isErc6492Signature,
  parseCompactSignature,
  parseErc6492Signature,
  parseSignature,
  recoverAddress,
  serializeCompactSignature,
  serializeErc6492Signature,
  serializeSignature,
  signatureToCompactSignature,
  type Hex,
} from 'viem';
import { newWallet, withHighS, withRecoveryBitV, type TestWallet } from '../wallet-client';

export interface ChainStandIn {
  url: string;
  /** contract wallet address (lower) → owner address (lower) */
  wallets: Map<string, string>;
  calls: { address: string; hash: string }[];
  down: boolean;
  close(): Promise<void>;
}

export async function startChainStandIn(): Promise<ChainStandIn> {
  const state = { wallets: new Map<string, string>(), calls: [] as { address: string; hash: string }[], down: false };
  const isValid = async (address: string, hash: Hex, signature: Hex): Promise<boolean> => {
    const owner = state.wallets.get(address.toLowerCase());
    if (!owner) return false;
    // The universal validator unwraps an ERC-6492 envelope (its factory is for accounts without
    // code; the stand-in's accounts all have code) and hands the inner signature to the wallet.
    const inner = isErc6492Signature(signature) ? parseErc6492Signature(signature).signature : signature;
    const bytes = (inner.length - 2) / 2;
    let ecdsa: Hex | undefined;
    try {
      if (bytes === 66 && inner.startsWith('0x00')) ecdsa = `0x${inner.slice(4)}`;
      else if (bytes === 65) ecdsa = inner;
      else if (bytes === 64) ecdsa = serializeSignature(compactSignatureToSignature(parseCompactSignature(inner)));
    } catch {
      ecdsa = undefined;
    }
    if (!ecdsa) return false;
    const signer = await recoverAddress({ hash, signature: ecdsa }).catch(() => undefined);
    return signer?.toLowerCase() === owner;
  };
  const server: Server = createServer((req, res) => {
    let raw = '';
    req.on('data', (c: Buffer) => (raw += c.toString('utf8')));
    req.on('end', () => {
      void (async () => {
        if (state.down) {
          res.writeHead(503).end('down');
          return;
        }
        const rpc = JSON.parse(raw) as { id: number; method: string; params: unknown[] };
        let result: unknown;
        if (rpc.method === 'eth_chainId') result = '0x1';
        else if (rpc.method === 'eth_call') {
          const data = (rpc.params[0] as { data: Hex }).data;
          const { args } = decodeDeployData({ abi: erc6492SignatureValidatorAbi, bytecode: erc6492SignatureValidatorByteCode, data });
          const [address, hash, signature] = args as unknown as [string, Hex, Hex];
          state.calls.push({ address: address.toLowerCase(), hash });
          result = (await isValid(address, hash, signature)) ? `0x${'0'.repeat(63)}1` : `0x${'0'.repeat(64)}`;
        } else {
          res
            .writeHead(200, { 'content-type': 'application/json' })
            .end(JSON.stringify({ jsonrpc: '2.0', id: rpc.id, error: { code: -32601, message: 'no such method' } }));
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: rpc.id, result }));
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return Object.assign(state, {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  });
}

/** A contract wallet at a random address on `chain`, owned by a fresh key. */
export function contractWallet(chain: ChainStandIn) {
  const owner = newWallet();
  const address = newWallet().lower;
  chain.wallets.set(address, owner.lower);
  return { address, owner, sign: async (message: string) => `0x00${(await owner.sign(message)).slice(2)}` };
}

/**
 * An EOA delegated under EIP-7702 to a wallet contract that accepts the account's own ECDSA
 * signature in isValidSignature (common): on the stand-in, an account that is its own owner.
 */
export function delegatedEoa(chain: ChainStandIn): TestWallet {
  const w = newWallet();
  chain.wallets.set(w.lower, w.lower);
  return w;
}

/**
 * Other encodings of one ECDSA signature that such a delegate accepts on chain. None is 65 bytes,
 * so the broker's normaliser takes each as a contract-wallet signature and asks the chain.
 */
export function reencodings(signature: Hex): [string, Hex][] {
  const factory = newWallet().address;
  const envelope = (inner: Hex) => serializeErc6492Signature({ address: factory, data: '0xdeadbeef', signature: inner });
  return [
    ['ERC-6492 envelope', envelope(signature)],
    ['ERC-6492 envelope, v as 0/1', envelope(withRecoveryBitV(signature))],
    ['ERC-6492 envelope, high-s twin', envelope(withHighS(signature))],
    ['64-byte compact (EIP-2098)', serializeCompactSignature(signatureToCompactSignature(parseSignature(signature)))],
    ['0x00 || signature', `0x00${signature.slice(2)}`],
  ];
}
