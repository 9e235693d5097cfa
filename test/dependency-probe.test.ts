import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { dependencyProbe } from '../api/dependencies';

void describe('dependency probe shared by waiting calls', () => {
  void test('50 concurrent probes run each check once; a finished probe is reused for reuseMs, then run again', async () => {
    let clock = 1_000;
    const calls = { database: 0, temporal: 0 };
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const probe = dependencyProbe(
      {
        database: async () => {
          calls.database++;
          await gate;
          return { ok: true };
        },
        temporal: async () => {
          calls.temporal++;
          return { ok: false, detail: 'unreachable' };
        },
      },
      800,
      350,
      () => clock,
    );
    const answers = Array.from({ length: 50 }, () => probe());
    release();
    assert.deepEqual(new Set(await Promise.all(answers)), new Set(['temporal: unreachable']));
    assert.deepEqual(calls, { database: 1, temporal: 1 }, 'one probe in flight serves every caller');
    clock += 349;
    assert.equal(await probe(), 'temporal: unreachable');
    assert.deepEqual(calls, { database: 1, temporal: 1 }, 'reused within the window');
    clock += 2;
    assert.equal(await probe(), 'temporal: unreachable');
    assert.deepEqual(calls, { database: 2, temporal: 2 }, 'run again after it');
  });

  void test('a check that does not answer within the timeout is named as down', async () => {
    const probe = dependencyProbe({ database: () => new Promise(() => undefined), temporal: async () => ({ ok: true }) }, 30);
    assert.equal(await probe(), 'database: no answer within 30 ms');
  });
});
