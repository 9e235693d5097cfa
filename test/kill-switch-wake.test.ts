/**
 * The API's wake-ups of the kill switch workflow (api/kill-switch.ts) against a fake Temporal
 * client: coalesced to at most one signal a second per process, and still never answering a
 * revocation before a signal sent after it was made has gone out. No Temporal, no Postgres.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Client } from '@temporalio/client';
import type { FastifyBaseLogger } from 'fastify';
import { WAKE_INTERVAL_MS, wakeKillSwitch } from '../api/kill-switch';
import type { Config } from '../lib/config';

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Send {
  startedAt: number;
  endedAt?: number;
  workflowId: string;
}

/** A client whose signalWithStart takes `sendMs` and records when each send started and ended. */
function fakeClient(opts: { sendMs?: number; fail?: () => boolean } = {}) {
  const sends: Send[] = [];
  const client = {
    workflow: {
      signalWithStart: async (_type: string, options: { workflowId: string }) => {
        const send: Send = { startedAt: Date.now(), workflowId: options.workflowId };
        sends.push(send);
        await pause(opts.sendMs ?? 0);
        send.endedAt = Date.now();
        if (opts.fail?.()) throw new Error('Temporal unreachable');
        return { workflowId: options.workflowId, signaledRunId: 'run' };
      },
    },
  } as unknown as Client;
  return { client, sends };
}

const config = (taskQueue = 'q', mode: Config['BROKER_KILL_SWITCH'] = 'iam') => ({ BROKER_KILL_SWITCH: mode, BROKER_TASK_QUEUE: taskQueue }) as Config;

function fakeLog() {
  const errors: unknown[] = [];
  return { errors, log: { error: (o: unknown) => errors.push(o) } as unknown as FastifyBaseLogger };
}

interface Call {
  calledAt: number;
  resolvedAt: number;
  ok: boolean;
}

async function wake(client: Client, log: FastifyBaseLogger, taskQueue = 'q'): Promise<Call> {
  const calledAt = Date.now();
  const ok = await wakeKillSwitch({ config: config(taskQueue), temporal: client }, log);
  return { calledAt, resolvedAt: Date.now(), ok };
}

/** Every call was answered only after a send that started no earlier than the call, and ended before the answer. */
function assertCovered(calls: Call[], sends: Send[]): void {
  for (const c of calls) {
    assert.ok(
      sends.some((s) => s.startedAt >= c.calledAt && s.endedAt !== undefined && s.endedAt <= c.resolvedAt),
      `call at ${c.calledAt} (answered ${c.resolvedAt}) covered by no send: ${JSON.stringify(sends)}`,
    );
  }
}

/** Sends start at least a second apart (a millisecond of timer slack allowed). */
function assertSpaced(sends: Send[]): void {
  for (let i = 1; i < sends.length; i++) {
    const gap = sends[i]!.startedAt - sends[i - 1]!.startedAt;
    assert.ok(gap >= WAKE_INTERVAL_MS - 1, `sends ${i - 1} and ${i} only ${gap} ms apart`);
  }
}

void describe('wakeKillSwitch coalescing (fake Temporal client)', () => {
  void test('20 concurrent wake-ups send at most 2 signals, each answered after a signal sent after it', async () => {
    const { client, sends } = fakeClient({ sendMs: 20 });
    const { log, errors } = fakeLog();
    const calls = await Promise.all(Array.from({ length: 20 }, () => wake(client, log)));
    assert.ok(calls.every((c) => c.ok));
    assert.ok(sends.length >= 1 && sends.length <= 2, `${sends.length} signals`);
    assertCovered(calls, sends);
    assert.deepEqual(errors, []);
    assert.ok(sends.every((s) => s.workflowId === 'kill-switch/q'));
    // With the kill switch off nothing is sent.
    assert.equal(await wakeKillSwitch({ config: config('q', 'off'), temporal: client }, log), false);
    assert.ok(sends.length <= 2);
  });

  void test('a wake-up made while a signal is being sent waits for the next one, a second later', async () => {
    const { client, sends } = fakeClient({ sendMs: 200 });
    const { log } = fakeLog();
    const first = wake(client, log);
    await pause(50); // the first send has started and not ended
    assert.equal(sends.length, 1);
    const during = await Promise.all(Array.from({ length: 5 }, () => wake(client, log)));
    const calls = [await first, ...during];
    assert.equal(sends.length, 2);
    assertCovered(calls, sends);
    assertSpaced(sends);
    for (const c of during) assert.ok(c.resolvedAt >= sends[1]!.endedAt!, 'a call made during the first send was answered by it');
  });

  void test('wake-ups spread over time send at most one signal a second', async () => {
    const { client, sends } = fakeClient({ sendMs: 5 });
    const { log } = fakeLog();
    const t0 = Date.now();
    const pending: Promise<Call>[] = [];
    for (let i = 0; i < 16; i++) {
      pending.push(wake(client, log));
      await pause(150);
    }
    const calls = await Promise.all(pending);
    const spanSeconds = (Date.now() - t0) / 1000;
    assert.ok(calls.every((c) => c.ok));
    assertSpaced(sends);
    assert.ok(sends.length <= Math.ceil(spanSeconds) + 1, `${sends.length} signals in ${spanSeconds} s`);
    assertCovered(calls, sends);
  });

  void test('a failed send answers false (and logs) for every call it covered; the next wake-up sends again, a second later', async () => {
    let failing = true;
    const { client, sends } = fakeClient({ fail: () => failing });
    const { log, errors } = fakeLog();
    const calls = await Promise.all(Array.from({ length: 3 }, () => wake(client, log, 'failing')));
    assert.equal(sends.length, 1, 'the three calls share one send');
    assert.ok(calls.every((c) => !c.ok));
    assert.equal(errors.length, 3);
    failing = false;
    const next = await wake(client, log, 'failing');
    assert.ok(next.ok);
    assert.equal(sends.length, 2);
    assertSpaced(sends);
    assertCovered([next], sends);
  });
});
