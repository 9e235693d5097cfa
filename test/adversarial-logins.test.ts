import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { devMail, latestCode, requestCode, submitCode, uniqueEmail, wrongCode } from './email-login-client';
import { startStack, type TestStack } from './harness';
import { assertRefused, assertUnchanged, dbSnapshot, expectAllRefused, spyWorkflowStarts, type WorkflowStartSpy } from './adversarial-probes';
import { newWallet } from './wallet-client';

/**
 * The login routes' remaining gaps (the email- and wallet-login tests cover the rest): an
 * oversized email_login, concurrent email_code and wallet_challenge requests, and what a stranger
 * can do to someone else's email login.
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
    assertRefused(
      await stack.request('POST', '/v1/session/email_login', { body: { request_id: `${hex32()}.${hex32()}`, code: '123456', pad } }),
      413,
      'payload_too_large',
    );
    assertRefused(
      await stack.request('POST', '/v1/session/email_login', { body: { request_id: `${hex32()}.${hex32()}`, code: '1'.repeat(20 * 1024) } }),
      413,
      'payload_too_large',
    );
    assertRefused(await stack.request('POST', '/v1/session/email_code', { body: { email: `${'a'.repeat(20 * 1024)}@example.com` } }), 413, 'payload_too_large');
    await assertUnchanged(stack.db, before, 'oversized logins');
    assert.equal(starts.count(), started);
    assert.equal(stack.ses.requestCount(), 0, 'a mail was sent');
  });
});

void describe('login routes: concurrent', () => {
  void test('10 concurrent email_code requests for one address: one mail, one request; the rest 429 with Retry-After', async () => {
    const email = uniqueEmail('Burst');
    const results = await Promise.all(Array.from({ length: 10 }, () => stack.request('POST', '/v1/session/email_code', { body: { email } })));
    const accepted = results.filter((r) => r.status === 202);
    // The address cooldown holds across requests: whichever reservation comes first is the only one.
    assert.equal(accepted.length, 1, results.map((r) => r.text).join('\n'));
    for (const r of results) {
      if (r.status === 202) continue;
      assertRefused(r, 429, 'rate_limited', /moments ago/);
      assert.match(r.headers.get('retry-after') ?? '', /^\d+$/);
    }
    assert.equal((await devMail(stack, email.toLowerCase())).length, 1, 'exactly one code mailed');
  });

  void test('10 concurrent wallet challenges for one address: 10 distinct flows and nonces, nothing written', async () => {
    const w = newWallet();
    const before = await dbSnapshot(stack.db);
    const results = await Promise.all(
      Array.from({ length: 10 }, () => stack.request('POST', '/v1/session/wallet_challenge', { body: { address: w.address, format: 'eip191' } })),
    );
    for (const r of results) assert.equal(r.status, 200, r.text);
    const bodies = results.map((r) => r.body as { request_id: string; message: string });
    assert.equal(new Set(bodies.map((b) => b.request_id)).size, 10);
    assert.equal(new Set(bodies.map((b) => b.message)).size, 10);
    await assertUnchanged(stack.db, before, 'challenges write nothing until one is signed');
  });
});

void describe('email login: what a stranger can do to the owner', () => {
  void test("asking for the owner's address, a stranger learns nothing, cannot reach the owner's request, and every refusal writes nothing, mails nothing and starts no flow", async () => {
    const email = uniqueEmail('Victim');
    const owner = await requestCode(stack, email);
    const ownerCode = await latestCode(stack, email);
    const other = uniqueEmail('Elsewhere');
    const otherSent = await requestCode(stack, other);

    await expectAllRefused({ stack, starts, defaults: { path: '/v1/session/email_code' }, counters: { 'SES requests': () => stack.ses.requestCount() } }, [
      // The address's cooldown answers the stranger the same whether or not anyone owns it.
      { name: 'a second request inside the cooldown', body: { email }, status: 429, error: 'rate_limited', message: /moments ago/ },
      { name: 'the same address in other case', body: { email: email.toUpperCase() }, status: 429, error: 'rate_limited' },
      // A request_id only resends for its own address; a guessed one names nothing.
      {
        name: "another address's request_id",
        body: { email: uniqueEmail('Fresh'), request_id: otherSent.request_id },
        status: 400,
        error: 'bad_request',
        message: /another address/,
      },
      { name: 'a guessed request_id', body: { email: uniqueEmail('Fresh'), request_id: hex32() }, status: 410, error: 'expired' },
      { name: 'a local part over 64 octets', body: { email: `${'x'.repeat(65)}@example.com` }, status: 400, error: 'bad_request', message: /64 octets/ },
      // Guessing at a request id the stranger does not hold.
      {
        name: 'a code on a guessed request_id',
        path: '/v1/session/email_login',
        body: { request_id: hex32(), code: wrongCode(ownerCode) },
        status: 410,
        error: 'expired',
      },
    ]);

    // The owner's request is untouched: full attempt budget, and the code works.
    const miss = await submitCode(stack, owner.request_id, wrongCode(ownerCode));
    assert.equal((miss.body as { attempts_left: number }).attempts_left, 4, miss.text);
    const login = await submitCode(stack, owner.request_id, ownerCode);
    assert.equal(login.status, 200, login.text);
  });
});
