import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { placeOf, summarise, type CpuProfile } from '../scripts/bench/profile-summary';

const ROOT = '/srv/broker';

// Samples hit nodes 2, 3, 3, 4, 2 with these deltas (µs); a sample's time is the next delta.
const profile: CpuProfile = {
  nodes: [
    { id: 1, callFrame: { functionName: '(root)', url: '', lineNumber: -1 } },
    { id: 2, callFrame: { functionName: '(idle)', url: '', lineNumber: -1 } },
    { id: 3, callFrame: { functionName: 'query', url: `file://${ROOT}/node_modules/pg/lib/client.js`, lineNumber: 9 } },
    { id: 4, callFrame: { functionName: 'recordLogin', url: `file://${ROOT}/activities/login-completion.ts`, lineNumber: 51 } },
  ],
  samples: [2, 3, 3, 4, 2],
  timeDeltas: [0, 1_000, 2_000, 3_000, 4_000],
};

void describe('bench profile summary', () => {
  void test('places: a package under node_modules, a project file, a builtin', () => {
    assert.equal(placeOf(`file://${ROOT}/node_modules/@temporalio/worker/lib/worker.js`, ROOT), '@temporalio/worker');
    assert.equal(placeOf(`file://${ROOT}/lib/codec.ts`, ROOT), 'lib/codec.ts');
    assert.equal(placeOf('node:internal/crypto/util', ROOT), 'node:internal/crypto/util');
    assert.equal(placeOf('', ROOT), '(builtin)');
  });

  void test('self time per place and function; idle apart; the skipped start left out', () => {
    const all = summarise(profile, ROOT);
    assert.equal(all.idle, 1_000 + 0); // the first sample (idle) lasts until the next; the last has no next
    assert.equal(all.busy, 2_000 + 3_000 + 4_000);
    assert.equal(all.byPlace.get('pg'), 5_000);
    assert.equal(all.byPlace.get('activities/login-completion.ts'), 4_000);
    assert.equal(all.byFunction.get('recordLogin  activities/login-completion.ts:52'), 4_000);
    const late = summarise(profile, ROOT, 2_500);
    assert.equal(late.byPlace.get('pg'), 3_000, 'samples before 2.5 ms are left out');
    assert.equal(late.busy, 7_000);
  });
});
