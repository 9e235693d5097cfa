import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { temporal } from '@temporalio/proto';
import { DefaultLogger, Runtime, Worker, type ReplayResult } from '@temporalio/worker';
import { loadConfig } from '../lib/config';
import { resolveSecrets } from '../adapters/secrets';
import { brokerDataConverter } from '../adapters/temporal-options';
import * as workflows from '../workflows';
import { testWorkflowBundle } from './harness';
import { REPLAY_TEST_ONLY_ENV } from './replay-keys';

/**
 * Determinism guard: every history recorded from a shipped release (test/histories/, written by
 * `npm run histories:record`) must replay against today's workflow code. A change that would make
 * a running workflow take another path fails here: put it behind patched() (docs/versioning.md).
 */

const HISTORIES_DIR = join(__dirname, 'histories');

interface RecordedHistory {
  file: string;
  workflowType: string;
  workflowId: string;
  history: temporal.api.history.v1.History;
}

function loadRecordedHistory(file: string): RecordedHistory {
  const history = temporal.api.history.v1.History.decode(readFileSync(join(HISTORIES_DIR, file)));
  const started = history.events[0]?.workflowExecutionStartedEventAttributes;
  assert.ok(started?.workflowType?.name, `${file}: the first event is not WorkflowExecutionStarted`);
  assert.ok(started.workflowId, `${file}: the started event carries no workflow id`);
  return { file, workflowType: started.workflowType.name, workflowId: started.workflowId, history };
}

const files = readdirSync(HISTORIES_DIR)
  .filter((f) => f.endsWith('.bin'))
  .sort();
const recorded = files.map(loadRecordedHistory);

const results: ReplayResult[] = [];
let dataDir: string | undefined;

before(async () => {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  // The broker's own data converter with the test-only key the histories were recorded under.
  dataDir = await mkdtemp(join(tmpdir(), 'akb-replay-'));
  const secrets = await resolveSecrets(loadConfig({ ...REPLAY_TEST_ONLY_ENV, BROKER_DATA_DIR: dataDir }));
  const replay = Worker.runReplayHistories(
    { workflowBundle: await testWorkflowBundle(), dataConverter: brokerDataConverter(secrets), replayName: 'replay-test' },
    recorded.map(({ workflowId, history }) => ({ workflowId, history })),
  );
  // One history at a time, in order: results[i] is recorded[i]'s.
  for await (const result of replay) results.push(result);
});
after(async () => {
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

void describe('recorded histories replay against the current workflow code', () => {
  void test('every workflow exported by workflows/index.ts has a recorded history', () => {
    const exported = Object.keys(workflows).sort();
    assert.ok(exported.length >= 6, `workflows/index.ts exports ${exported.join(', ')}`);
    const covered = new Set(recorded.map((r) => r.workflowType));
    const missing = exported.filter((name) => !covered.has(name));
    assert.deepEqual(missing, [], `no recorded history for ${missing.join(', ')}: run \`npm run histories:record\` (docs/versioning.md)`);
  });

  for (const [i, r] of recorded.entries()) {
    void test(r.file, () => {
      assert.ok(r.file.startsWith(`${r.workflowType}-`), `${r.file} holds a ${r.workflowType} history: name it ${r.workflowType}-<case>-v<version>.bin`);
      const result = results[i];
      assert.ok(result, `${r.file} was not replayed`);
      assert.equal(result.workflowId, r.workflowId);
      if (result.error) {
        assert.fail(
          `${r.file} no longer replays (${result.error.name}): a change to ${r.workflowType} is not deterministic for runs already in flight; ` +
            `guard it with patched() (docs/versioning.md).\n${result.error.message}`,
        );
      }
    });
  }
});
