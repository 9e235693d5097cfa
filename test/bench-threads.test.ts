import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { breakdown, parseStat, sampleThreads, type ThreadSample } from '../scripts/bench/threads';

// /proc/<pid>/stat: utime and stime are fields 14 and 15 (clock ticks, 100 per second here); a name may hold spaces and ')'.
const stat = (name: string, utime: number, stime: number) =>
  `4242 (${name}) S 1 4242 4242 0 -1 4194560 100 0 0 0 ${utime} ${stime} 0 0 20 0 12 0 100 1000 100 18446744073709551615`;

void describe('bench --threads', () => {
  void test('a stat line gives its name and utime + stime in ms, whatever the name holds', () => {
    assert.deepEqual(parseStat(stat('node', 120, 30)), { name: 'node', ms: 1500 });
    assert.deepEqual(parseStat(stat('tokio-runtime-w', 7, 3)), { name: 'tokio-runtime-w', ms: 100 });
    assert.deepEqual(parseStat(stat('odd) name', 1, 1)), { name: 'odd) name', ms: 20 });
    assert.equal(parseStat('not a stat line'), undefined);
  });

  void test('the delta per call by kind of thread: main, busiest other, SDK core, the rest; Postgres apart; new threads count from zero', () => {
    const t = (entries: [number, string, number][]) => new Map(entries.map(([tid, name, ms]) => [tid, { name, ms }]));
    const before: ThreadSample = {
      threads: t([
        [10, 'node', 1000],
        [11, 'node', 100],
        [12, 'tokio-runtime-w', 50],
        [20, 'node', 400],
      ]),
      postgres: new Map([[500, 70]]),
    };
    const after: ThreadSample = {
      threads: t([
        [10, 'node', 1600], // main: +600
        [11, 'node', 160], // +60
        [12, 'tokio-runtime-w', 150], // SDK core: +100
        [13, 'workflow-proces', 40], // new, SDK core: +40
        [20, 'node', 800], // busiest other: +400
        [21, 'node', 20], // new: +20
      ]),
      postgres: new Map([
        [500, 110], // +40
        [501, 60], // a new backend: +60
      ]),
    };
    assert.deepEqual(breakdown(10, before, after, 10), { main: 60, busiestOther: 40, sdkCore: 14, rest: 8, postgres: 10 });
  });

  void test('sampling this process finds its main thread by its pid', async () => {
    const s = await sampleThreads(process.pid);
    assert.ok(s.threads.has(process.pid), 'no main thread in /proc/<pid>/task');
    assert.ok((s.threads.get(process.pid)?.ms ?? -1) >= 0);
  });
});
