/**
 * Device authorization requests expire by timer (BROKER_DEVICE_CODE_TTL_SECONDS=2, a 1-s poll
 * interval, so the grace after expiry is 2 s): after expiry
 * the device hears expired_token (RFC 8628 §3.5), an approval is refused exactly like an unknown
 * code, and once the flow has ended any poll is invalid_grant. Nothing is recorded.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { AkOutcome, AkStage } from '../lib/search-attributes';
import { DEVICE_AUTHORIZATION_ID_PREFIX } from '../workflows/device-authorization.definitions';
import { startStack, type TestStack } from './harness';
import { deviceCode, deviceRows, lookUp, otherUserCode, pollError, signedIn, verify } from './device-client';

const TTL_SECONDS = 2;

let stack: TestStack;
before(async () => {
  stack = await startStack({
    env: { BROKER_DEVICE_CODE_TTL_SECONDS: String(TTL_SECONDS), BROKER_DEVICE_POLL_INTERVAL_SECONDS: '1', BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000' },
  });
});
after(async () => {
  await stack?.stop();
});

const handleOf = (stack: TestStack, deviceCodeText: string) =>
  stack.temporal.workflow.getHandle(DEVICE_AUTHORIZATION_ID_PREFIX + (deviceCodeText.split('.')[0] ?? ''));
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits for the flow's expiry timer to fire: its AkStage turns `expired` (no fixed sleep). */
async function expiryFired(stack: TestStack, deviceCodeText: string): Promise<void> {
  const handle = handleOf(stack, deviceCodeText);
  const deadline = Date.now() + 30_000;
  while ((await handle.describe()).typedSearchAttributes.get(AkStage) !== 'expired') {
    if (Date.now() > deadline) throw new Error('the device request did not expire within 30 s');
    await pause(100);
  }
}

// The two tests wait out their windows side by side; the first counts only its own person's device
// sessions and login rows (the second's approval makes one of each for its person).
void describe('device authorization expiry', { concurrency: true }, () => {
  void test('expired_token after expiry; approving or looking up an expired code answers as an unknown one; then invalid_grant', async () => {
    const person = await signedIn(stack);
    const before = await deviceRows(stack.db, person.omni_account);
    const dc = await deviceCode(stack);
    assert.ok(dc.expires_in <= TTL_SECONDS);
    assert.equal(await pollError(stack, dc.device_code), 'authorization_pending');
    await expiryFired(stack, dc.device_code);
    assert.equal(await pollError(stack, dc.device_code), 'expired_token');
    const unknown = await verify(stack, person.token, otherUserCode(dc.user_code));
    const late = await verify(stack, person.token, dc.user_code);
    assert.equal(late.status, 404, late.text);
    assert.deepEqual(late.body, unknown.body);
    const seen = await lookUp(stack, person.token, dc.user_code);
    assert.equal(seen.status, 404, seen.text);
    assert.deepEqual(seen.body, unknown.body);
    assert.equal(await pollError(stack, dc.device_code), 'expired_token');
    const handle = handleOf(stack, dc.device_code);
    assert.equal(await handle.result(), 'expired');
    assert.equal((await handle.describe()).typedSearchAttributes.get(AkOutcome), 'expired');
    // The flow has ended: the request is gone.
    assert.equal(await pollError(stack, dc.device_code), 'invalid_grant');
    assert.equal((await verify(stack, person.token, dc.user_code)).status, 404);
    assert.deepEqual(await deviceRows(stack.db, person.omni_account), before);
  });

  void test('an approval the device never collects ends the request too: expired_token, outcome uncollected', async () => {
    const person = await signedIn(stack);
    const dc = await deviceCode(stack);
    assert.equal((await verify(stack, person.token, dc.user_code)).status, 200);
    await expiryFired(stack, dc.device_code);
    assert.equal(await pollError(stack, dc.device_code), 'expired_token');
    assert.equal(await handleOf(stack, dc.device_code).result(), 'uncollected');
  });
});
