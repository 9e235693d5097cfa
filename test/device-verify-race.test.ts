/**
 * The user-code guess limits (RFC 8628 §5.1, docs/device-flow.md) hold against guesses sent at
 * once: each guess holds its place in the account's and the network's budget before its code is
 * looked up, so concurrent guesses cannot all pass a check none of them has yet been counted
 * against. The lookups are held on a gate (the Temporal client's query, which the API and the test
 * share) until every guess has either reached it or been refused.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { startStack, type TestStack } from './harness';
import { deviceCode, lookUp, otherUserCode, signedIn, verify } from './device-client';
import { holdWorkflowClientCalls } from './support/hold-calls';
import { waitFor } from './support/wait-for';

let stack: TestStack;

before(async () => {
  stack = await startStack({ env: { BROKER_RATE_LIMIT_IP_PER_MINUTE: '100000' } });
});
after(async () => {
  await stack?.stop();
});

/** Holds every query of a workflow handle until release(): the guess has passed the API's limits by then. */
const holdQueries = (client: Client) =>
  holdWorkflowClientCalls(client, 'getHandle', (getHandle, args, wait) => {
    const handle = getHandle(...args) as WorkflowHandle;
    const query = handle.query.bind(handle) as (...a: unknown[]) => Promise<unknown>;
    return Object.assign(Object.create(handle) as WorkflowHandle, {
      query: async (...a: unknown[]) => {
        await wait();
        return query(...a);
      },
    });
  });

void describe('device verify: guesses sent at once', () => {
  void test('20 wrong codes at once from one account: 10 are looked up (404), 10 refused before any lookup (429)', async () => {
    const guesser = await signedIn(stack);
    const dc = await deviceCode(stack);
    const GUESSES = 20;
    const hold = holdQueries(stack.temporal);
    let answered = 0;
    try {
      const answers = Promise.all(
        Array.from({ length: GUESSES }, async () => {
          const r = await lookUp(stack, guesser.token, otherUserCode(dc.user_code));
          answered += 1;
          return r;
        }),
      );
      await waitFor(
        'every guess held at its lookup or answered',
        () => (hold.held() + answered === GUESSES ? true : undefined),
        20_000,
        () => `held ${hold.held()}, answered ${answered}`,
      );
      assert.equal(hold.held(), 10, 'no more lookups than the account has guesses');
      hold.release();
      const statuses = (await answers).map((r) => r.status).sort();
      assert.deepEqual(statuses, [...Array<number>(10).fill(404), ...Array<number>(10).fill(429)]);
    } finally {
      hold.release();
      hold.restore();
    }
    // The budget is spent: the right code is refused too, and another account still approves.
    assert.equal((await verify(stack, guesser.token, dc.user_code)).status, 429);
    const owner = await signedIn(stack);
    assert.equal((await verify(stack, owner.token, dc.user_code)).status, 200);
  });

  void test('a right code looked up at once with wrong ones frees its place: it is no guess', async () => {
    const person = await signedIn(stack);
    const dc = await deviceCode(stack);
    const hold = holdQueries(stack.temporal);
    let answered = 0;
    try {
      // 9 wrong and 1 right at once: all 10 held, then 9 counted; the right one's place is freed.
      const codes = [...Array.from({ length: 9 }, () => otherUserCode(dc.user_code)), dc.user_code];
      const answers = Promise.all(
        codes.map(async (code) => {
          const r = await lookUp(stack, person.token, code);
          answered += 1;
          return r;
        }),
      );
      await waitFor(
        'all ten lookups held',
        () => (hold.held() + answered === codes.length ? true : undefined),
        20_000,
        () => String(hold.held()),
      );
      assert.equal(hold.held(), 10);
      hold.release();
      const statuses = (await answers).map((r) => r.status);
      assert.deepEqual(statuses, [...Array<number>(9).fill(404), 200]);
    } finally {
      hold.release();
      hold.restore();
    }
    // Nine wrong guesses counted: one more is looked up (404), the next is refused.
    assert.equal((await lookUp(stack, person.token, otherUserCode(dc.user_code))).status, 404);
    assert.equal((await lookUp(stack, person.token, otherUserCode(dc.user_code))).status, 429);
  });
});
