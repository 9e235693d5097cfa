/**
 * Smart-contract wallets (ERC-1271 through viem's ERC-6492 universal validator) against a loopback
 * JSON-RPC stand-in: no chain is reachable here, so the stand-in plays the chain. It decodes the
 * validator call viem sends (address, message hash, signature) and answers like a one-owner
 * contract wallet would: valid when the signature is 0x00 || the owner's signature of the hash.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { decodeDeployData, erc6492SignatureValidatorAbi, erc6492SignatureValidatorByteCode, hashMessage, recoverAddress, type Hex } from 'viem';
import { contractReplayKey } from '../adapters/evm-signature';
import { buildStatelessWalletMessage } from '../lib/wallet-message';
import { startStack, type TestStack } from './harness';
import { newWallet, nowSeconds, rowCounts } from './wallet-client';

interface ChainStandIn {
  url: string;
  /** contract wallet address (lower) → owner address (lower) */
  wallets: Map<string, string>;
  calls: { address: string; hash: string }[];
  down: boolean;
  close(): Promise<void>;
}

async function startChainStandIn(): Promise<ChainStandIn> {
  const state = { wallets: new Map<string, string>(), calls: [] as { address: string; hash: string }[], down: false };
  const isValid = async (address: string, hash: Hex, signature: Hex): Promise<boolean> => {
    const owner = state.wallets.get(address.toLowerCase());
    if (!owner) return false;
    if (signature.length !== 2 + 66 * 2 || !signature.startsWith('0x00')) return false;
    const signer = await recoverAddress({ hash, signature: `0x${signature.slice(4)}` }).catch(() => undefined);
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

let chain: ChainStandIn;
let stack: TestStack;
before(async () => {
  chain = await startChainStandIn();
  stack = await startStack({ env: { BROKER_EVM_RPC_URL: chain.url, BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000' } });
});
after(async () => {
  await stack?.stop();
  await chain?.close();
});

/** A contract wallet at a random address, owned by a fresh key. */
function contractWallet() {
  const owner = newWallet();
  const address = newWallet().lower;
  chain.wallets.set(address, owner.lower);
  return { address, owner, sign: async (message: string) => `0x00${(await owner.sign(message)).slice(2)}` };
}

void describe('contract wallets (BROKER_EVM_RPC_URL set)', () => {
  void test('/readyz says contract wallets are verified, through which chain', async () => {
    const r = await stack.request('GET', '/readyz', { token: stack.config.BROKER_OPS_TOKEN });
    const part = (r.body as { parts: Record<string, { ok: boolean; detail?: string }> }).parts.evm_signatures;
    assert.equal(part?.ok, true);
    assert.match(part?.detail ?? '', /contract wallets \(ERC-1271\/6492\) via chain 1/);
  });

  void test('stateless login with a contract-wallet signature; the replay guard keys on the message', async () => {
    const cw = contractWallet();
    const t = nowSeconds();
    const message = buildStatelessWalletMessage(cw.address, t);
    const body = { address: cw.address, signature: await cw.sign(message), timestamp: t };
    const res = await stack.request('POST', '/v1/session/wallet_login', { body });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual((res.body as { identity: unknown }).identity, { type: 'evm', value: cw.address });
    assert.deepEqual(chain.calls.at(-1), { address: cw.address, hash: hashMessage(message) });
    const guard = await stack.db.query('SELECT purpose FROM used_signatures WHERE signature_hash = $1', [contractReplayKey(cw.address, message)]);
    assert.equal(guard.rowCount, 1);
    const before = await rowCounts(stack.db);
    const again = await stack.request('POST', '/v1/session/wallet_login', { body });
    assert.equal(again.status, 409, again.text);
    assert.deepEqual(await rowCounts(stack.db), before);
  });

  void test('a signature the contract wallet does not accept is refused and writes nothing', async () => {
    const cw = contractWallet();
    const stranger = newWallet();
    const t = nowSeconds();
    const signature = `0x00${(await stranger.sign(buildStatelessWalletMessage(cw.address, t))).slice(2)}`;
    const before = await rowCounts(stack.db);
    const res = await stack.request('POST', '/v1/session/wallet_login', { body: { address: cw.address, signature, timestamp: t } });
    assert.equal(res.status, 401, res.text);
    assert.deepEqual(await rowCounts(stack.db), before);
  });

  void test('SIWE challenge signed by a contract wallet', async () => {
    const cw = contractWallet();
    const c = await stack.request('POST', '/v1/session/wallet_challenge', { body: { address: cw.address, format: 'siwe' } });
    assert.equal(c.status, 200, c.text);
    const { request_id, message } = c.body as { request_id: string; message: string };
    const res = await stack.request('POST', '/v1/session/wallet_login', { body: { request_id, signature: await cw.sign(message) } });
    assert.equal(res.status, 200, res.text);
  });

  void test('EOA logins do not ask the chain', async () => {
    const w = newWallet();
    const calls = chain.calls.length;
    const t = nowSeconds();
    const res = await stack.request('POST', '/v1/session/wallet_login', {
      body: { address: w.address, signature: await w.sign(buildStatelessWalletMessage(w.lower, t)), timestamp: t },
    });
    assert.equal(res.status, 200, res.text);
    assert.equal(chain.calls.length, calls);
  });

  void test('an unreachable chain is a 503 for contract wallets, and nothing is written', async () => {
    const cw = contractWallet();
    const t = nowSeconds();
    const signature = await cw.sign(buildStatelessWalletMessage(cw.address, t));
    const before = await rowCounts(stack.db);
    chain.down = true;
    try {
      const res = await stack.request('POST', '/v1/session/wallet_login', { body: { address: cw.address, signature, timestamp: t } });
      assert.equal(res.status, 503, res.text);
      assert.equal((res.body as { error: string }).error, 'unavailable');
    } finally {
      chain.down = false;
    }
    assert.deepEqual(await rowCounts(stack.db), before);
    // the chain is back: the same signature now logs in (the failed attempt consumed nothing)
    const res = await stack.request('POST', '/v1/session/wallet_login', { body: { address: cw.address, signature, timestamp: t } });
    assert.equal(res.status, 200, res.text);
  });
});
