/**
 * Smart-contract wallets (ERC-1271 through viem's ERC-6492 universal validator) against a loopback
 * JSON-RPC stand-in: no chain is reachable here, so the stand-in plays the chain. It decodes the
 * validator call viem sends (address, message hash, signature), unwraps an ERC-6492 envelope as
 * the validator does, and answers like a one-owner wallet would (a contract, or an EOA delegated
 * under EIP-7702 whose delegate checks the account's own key): valid when the signature is the
 * owner's signature of the hash, as 0x00 || 65 bytes, 65 bytes (any s, v 0/1 or 27/28, like
 * ecrecover) or 64 bytes compact (EIP-2098).
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import {
  compactSignatureToSignature,
  decodeDeployData,
  erc6492SignatureValidatorAbi,
  erc6492SignatureValidatorByteCode,
  hashMessage,
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
import { contractReplayKey, eoaReplayKey } from '../adapters/evm-signature';
import { buildStatelessWalletMessage } from '../lib/wallet-message';
import { assertRefused, assertUnchanged, dbSnapshot } from './adversarial-probes';
import { startStack, type TestStack } from './harness';
import { newWallet, nowSeconds, rowCounts, withHighS, withRecoveryBitV, type TestWallet } from './wallet-client';

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

/**
 * An EOA delegated under EIP-7702 to a wallet contract that accepts the account's own ECDSA
 * signature in isValidSignature (common): on the stand-in, an account that is its own owner.
 */
function delegatedEoa(): TestWallet {
  const w = newWallet();
  chain.wallets.set(w.lower, w.lower);
  return w;
}

/**
 * Other encodings of one ECDSA signature that such a delegate accepts on chain. None is 65 bytes,
 * so the broker's normaliser takes each as a contract-wallet signature and asks the chain.
 */
function reencodings(signature: Hex): [string, Hex][] {
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

  void test('stateless, EIP-7702-delegated EOA: a used signature re-encoded (ERC-6492 envelope, compact, ...) is a replay, 409, nothing written', async () => {
    const w = delegatedEoa();
    const t = nowSeconds();
    const message = buildStatelessWalletMessage(w.lower, t);
    const signature = await w.sign(message);
    const calls = chain.calls.length;
    const first = await stack.request('POST', '/v1/session/wallet_login', { body: { address: w.lower, signature, timestamp: t } });
    assert.equal(first.status, 200, first.text);
    assert.equal(chain.calls.length, calls, 'the raw signature recovers to the address: no chain call');
    for (const [what, encoded] of reencodings(signature)) {
      const before = await dbSnapshot(stack.db);
      const callsBefore = chain.calls.length;
      const res = await stack.request('POST', '/v1/session/wallet_login', { body: { address: w.lower, signature: encoded, timestamp: t } });
      assertRefused(res, 409, 'conflict', /already been used/, what);
      // The chain was asked (and accepted: a refused signature is a 401): the guard is what refused it.
      assert.deepEqual(chain.calls.slice(callsBefore), [{ address: w.lower, hash: hashMessage(message) }], what);
      await assertUnchanged(stack.db, before, what);
    }
    // Consumed under both keys: the signature's bytes and (address, message).
    const guard = await stack.db.query<{ signature_hash: string; purpose: string }>(
      'SELECT signature_hash, purpose FROM used_signatures WHERE signature_hash = ANY($1) ORDER BY signature_hash',
      [[eoaReplayKey(signature), contractReplayKey(w.lower, message)]],
    );
    assert.deepEqual(
      guard.rows.map((r) => r.purpose),
      ['wallet_login', 'wallet_login'],
    );
  });

  void test('stateless, EIP-7702-delegated EOA: a re-encoded signature used first makes the raw one (and every other encoding) a replay', async () => {
    const w = delegatedEoa();
    const t = nowSeconds();
    const count = reencodings(await w.sign('count')).length;
    // One message per encoding (one second apart), that encoding sent first.
    for (let i = 0; i < count; i++) {
      const timestamp = t - i;
      const signature = await w.sign(buildStatelessWalletMessage(w.lower, timestamp));
      const encodings = reencodings(signature);
      const [what, encoded] = encodings[i] as [string, Hex];
      const first = await stack.request('POST', '/v1/session/wallet_login', { body: { address: w.lower, signature: encoded, timestamp } });
      assert.equal(first.status, 200, `${what}: ${first.text}`);
      assert.equal((first.body as { identity: { value: string } }).identity.value, w.lower, what);
      for (const [other, again] of [['raw signature', signature] as [string, Hex], ...encodings]) {
        const before = await dbSnapshot(stack.db);
        const res = await stack.request('POST', '/v1/session/wallet_login', { body: { address: w.lower, signature: again, timestamp } });
        assertRefused(res, 409, 'conflict', /already been used/, `${what}, then ${other}`);
        await assertUnchanged(stack.db, before, `${what}, then ${other}`);
      }
    }
  });

  void test('stateless, EIP-7702-delegated EOA: raw and re-encoded copies sent at once, 4 rounds: exactly one 200', async () => {
    for (let round = 0; round < 4; round++) {
      const w = delegatedEoa();
      const t = nowSeconds();
      const signature = await w.sign(buildStatelessWalletMessage(w.lower, t));
      const copies = [signature, signature, ...reencodings(signature).map(([, encoded]) => encoded)];
      const before = await rowCounts(stack.db);
      const results = await Promise.all(
        copies.map((sig) => stack.request('POST', '/v1/session/wallet_login', { body: { address: w.lower, signature: sig, timestamp: t } })),
      );
      const statuses = results.map((r) => r.status).sort();
      assert.deepEqual(statuses, [200, ...Array<number>(copies.length - 1).fill(409)], `round ${round}: ${results.map((r) => r.text).join('\n')}`);
      const after = await rowCounts(stack.db);
      assert.equal(after.sessions, before.sessions + 1, `round ${round}`);
      assert.equal(after.audit_log, before.audit_log + 1, `round ${round}`);
    }
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
