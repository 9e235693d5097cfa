/**
 * Smart-contract wallets (ERC-1271 through viem's ERC-6492 universal validator) against a loopback
 * JSON-RPC stand-in that plays the chain (test/support/evm-chain.ts): a contract wallet, or an EOA
 * delegated under EIP-7702 whose delegate checks the account's own key.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { hashMessage, type Hex } from 'viem';
import { contractReplayKey, eoaReplayKey } from '../adapters/evm-signature';
import { buildStatelessWalletMessage } from '../lib/wallet-message';
import { assertRefused, assertUnchanged, dbSnapshot } from './adversarial-probes';
import { startStack, type TestStack } from './harness';
import { type ChainStandIn, contractWallet as contractWalletOn, delegatedEoa as delegatedEoaOn, reencodings, startChainStandIn } from './support/evm-chain';
import { newWallet, nowSeconds, rowCounts, type TestWallet } from './wallet-client';

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

const contractWallet = () => contractWalletOn(chain);
const delegatedEoa = (): TestWallet => delegatedEoaOn(chain);

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
