import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { devMail, uniqueEmail } from './email-login-client';
import { startStack, type TestStack } from './harness';
import { assertRefused, assertUnchanged, dbSnapshot, spyWorkflowStarts, type WorkflowStartSpy } from './adversarial-probes';
import { newWallet } from './wallet-client';

/**
 * The login routes' remaining gaps (the email- and wallet-login tests cover the rest): an
 * oversized email_login, and concurrent email_code and wallet_challenge requests.
 */

let stack: TestStack;
let starts: WorkflowStartSpy;

before(async () => {
  stack = await startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000' } });
  starts = spyWorkflowStarts(stack.temporal);
});
after(async () => {
  starts?.restore();
  await stack?.stop();
});

const hex32 = () => randomBytes(16).toString('hex');

void describe('login routes: oversized', () => {
  void test('email_login and email_code bodies over 16 KB → 413, nothing written, no workflow', async () => {
    const before = await dbSnapshot(stack.db);
    const started = starts.count();
    const pad = 'x'.repeat(16 * 1024);
    assertRefused(await stack.request('POST', '/v1/session/email_login', { body: { request_id: `${hex32()}.${hex32()}`, code: '123456', pad } }), 413, 'payload_too_large');
    assertRefused(await stack.request('POST', '/v1/session/email_login', { body: { request_id: `${hex32()}.${hex32()}`, code: '1'.repeat(20 * 1024) } }), 413, 'payload_too_large');
    assertRefused(await stack.request('POST', '/v1/session/email_code', { body: { email: `${'a'.repeat(20 * 1024)}@example.com` } }), 413, 'payload_too_large');
    await assertUnchanged(stack.db, before, 'oversized logins');
    assert.equal(starts.count(), started);
    assert.equal(stack.ses.requestCount(), 0, 'a mail was sent');
  });
});

void describe('login routes: concurrent', () => {
  void test('10 concurrent email_code requests for one address: one mail; every answer a 202 of the same flow or a 429 with Retry-After', async () => {
    const email = uniqueEmail('Burst');
    const results = await Promise.all(Array.from({ length: 10 }, () => stack.request('POST', '/v1/session/email_code', { body: { email } })));
    const accepted = results.filter((r) => r.status === 202);
    assert.ok(accepted.length >= 1, results.map((r) => r.text).join('\n'));
    for (const r of results) {
      if (r.status === 202) continue;
      assertRefused(r, 429, 'rate_limited', /moments ago|finishing/);
      assert.match(r.headers.get('retry-after') ?? '', /^\d+$/);
    }
    const flows = new Set(accepted.map((r) => (r.body as { request_id: string }).request_id.split('.')[0]));
    assert.equal(flows.size, 1, 'one flow per address');
    assert.equal((await devMail(stack, email.toLowerCase())).length, 1, 'exactly one code mailed');
  });

  void test('10 concurrent wallet challenges for one address: 10 distinct flows and nonces, nothing written', async () => {
    const w = newWallet();
    const before = await dbSnapshot(stack.db);
    const results = await Promise.all(Array.from({ length: 10 }, () => stack.request('POST', '/v1/session/wallet_challenge', { body: { address: w.address, format: 'eip191' } })));
    for (const r of results) assert.equal(r.status, 200, r.text);
    const bodies = results.map((r) => r.body as { request_id: string; message: string });
    assert.equal(new Set(bodies.map((b) => b.request_id)).size, 10);
    assert.equal(new Set(bodies.map((b) => b.message)).size, 10);
    await assertUnchanged(stack.db, before, 'challenges write nothing until one is signed');
  });
});
