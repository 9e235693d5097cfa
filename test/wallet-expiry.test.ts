/**
 * Wallet-login time windows with a short configured window (BROKER_WALLET_WINDOW_SECONDS=1):
 * challenges expire by timer, and the workflow checks a stateless timestamp on its own clock.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { AkOutcome } from '../lib/search-attributes';
import { buildStatelessWalletMessage } from '../lib/wallet-message';
import { startStack, type TestStack } from './harness';
import { newWallet, nowSeconds, rowCounts, walletWorkflowIdOf } from './wallet-client';

const WINDOW_SECONDS = 1;

let stack: TestStack;
before(async () => {
  stack = await startStack({ env: { BROKER_WALLET_WINDOW_SECONDS: String(WINDOW_SECONDS), BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000' } });
});
after(async () => {
  await stack?.stop();
});

void describe('wallet login windows', () => {
  for (const format of ['eip191', 'siwe'] as const) {
    void test(`an ${format} challenge expires by timer; signing it afterwards is refused and writes nothing`, async () => {
      const w = newWallet();
      const res = await stack.request('POST', '/v1/session/wallet_challenge', { body: { address: w.address, format } });
      assert.equal(res.status, 200, res.text);
      const c = res.body as { request_id: string; message: string; expires_at: number };
      assert.ok(c.expires_at - nowSeconds() <= WINDOW_SECONDS);
      const signature = await w.sign(c.message);
      const handle = stack.temporal.workflow.getHandle(walletWorkflowIdOf(stack, c.request_id));
      assert.equal(await handle.result(), 'expired');
      assert.equal((await handle.describe()).typedSearchAttributes.get(AkOutcome), 'expired');
      const before = await rowCounts(stack.db);
      const late = await stack.request('POST', '/v1/session/wallet_login', { body: { request_id: c.request_id, signature } });
      assert.equal(late.status, 410, late.text);
      assert.equal((late.body as { error: string }).error, 'expired');
      assert.deepEqual(await rowCounts(stack.db), before);
    });
  }

  void test('a stateless timestamp just outside the short window is refused; inside it logs in', async () => {
    const w = newWallet();
    const old = nowSeconds() - WINDOW_SECONDS - 2;
    const stale = await stack.request('POST', '/v1/session/wallet_login', {
      body: { address: w.address, signature: await w.sign(buildStatelessWalletMessage(w.lower, old)), timestamp: old },
    });
    assert.equal(stale.status, 410, stale.text);
    // Rounded up: a whole second just ahead of the clock stays inside a 1-s window on a slow machine.
    const t = Math.ceil(Date.now() / 1000);
    const ok = await stack.request('POST', '/v1/session/wallet_login', {
      body: { address: w.address, signature: await w.sign(buildStatelessWalletMessage(w.lower, t)), timestamp: t },
    });
    assert.equal(ok.status, 200, ok.text);
  });
});
