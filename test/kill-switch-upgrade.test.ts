/**
 * killSwitchWorkflow continued mid-run by newer code: a run started on 1.3.0 (commit ec2a950, before
 * the patch `kill-switch-signal-budget`) runs two rounds on a 1.3.0 worker, then a worker with
 * today's code takes it over on the same task queue. Its history then holds old rounds (no marker),
 * the patch marker, and a bounded round; the recorded histories (test/replay.test.ts) only hold
 * pure 1.3.0 and pure 1.4.0 runs, so this mixed case is guarded here. Dev server and mocks as in
 * test/kill-switch-workflow.test.ts.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { DataConverter } from '@temporalio/common';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { defaultPayloadConverter } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, Worker, bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { KILL_SWITCH_SIGNAL_BUDGET_PATCH, killSwitchChanged, killSwitchWorkflowId, type KillSwitchApplied } from '../workflows/kill-switch.definitions';
import { resolveSecrets } from '../adapters/secrets';
import { brokerDataConverter } from '../adapters/temporal-options';
import { loadConfig } from '../lib/config';
import { testWorkflowBundle } from './harness';
import { REPLAY_TEST_ONLY_ENV } from './replay-keys';
import { historyUntil, startWorkflowTestEnv } from './support/workflow-env';
import { waitFor } from './support/wait-for';

const EventType = temporal.api.enums.v1.EventType;
type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

/** The last release before the patch: its workflow code is bundled from git as it shipped. */
const OLD_RELEASE_COMMIT = 'ec2a950';
const ROOT = resolve(__dirname, '..');
/** test/histories/'s copy of the mixed history, for test/replay.test.ts. */
const UPGRADE_HISTORY_FILE = 'killSwitchWorkflow-upgraded-from-v1.3.0-v1.4.0.bin';

/** Bundles killSwitchWorkflow as it was at OLD_RELEASE_COMMIT (the workflow files unchanged). */
async function bundleOldKillSwitch(dir: string): Promise<WorkflowBundleWithSourceMap> {
  const show = (path: string) => execFileSync('git', ['-C', ROOT, 'show', `${OLD_RELEASE_COMMIT}:${path}`], { encoding: 'utf8' });
  await mkdir(join(dir, 'workflows'), { recursive: true });
  await writeFile(join(dir, 'workflows', 'kill-switch.ts'), show('workflows/kill-switch.ts'));
  await writeFile(join(dir, 'workflows', 'kill-switch.definitions.ts'), show('workflows/kill-switch.definitions.ts'));
  // The old file imports `../activities` for its types only: a stub stands in for the real module.
  await writeFile(
    join(dir, 'activities.ts'),
    "import type { KillSwitchApplied } from './workflows/kill-switch.definitions';\n" +
      'export interface Activities {\n  applyKillSwitch(): Promise<KillSwitchApplied>;\n}\n',
  );
  await writeFile(join(dir, 'workflows', 'index.ts'), "export { killSwitchWorkflow } from './kill-switch';\n");
  return bundleWorkflowCode({
    workflowsPath: join(dir, 'workflows', 'index.ts'),
    logger: new DefaultLogger('WARN'),
    // The temporary directory has no node_modules of its own: resolve @temporalio/* from the project's.
    webpackConfigHook: (config) => ({
      ...config,
      resolve: { ...config.resolve, modules: [...(config.resolve?.modules ?? []), join(ROOT, 'node_modules')] },
    }),
  });
}

let env: TestWorkflowEnvironment;
let oldBundleDir: string | undefined;
let oldBundle: WorkflowBundleWithSourceMap;
/** The broker's data converter with the replay suite's test-only key, so the history can join test/histories/. */
let dataConverter: DataConverter;
before(async () => {
  oldBundleDir = await mkdtemp(join(tmpdir(), 'akb-kill-switch-v1.3.0-'));
  const secrets = await resolveSecrets(loadConfig({ ...REPLAY_TEST_ONLY_ENV, BROKER_DATA_DIR: oldBundleDir }));
  dataConverter = brokerDataConverter(secrets);
  [env, oldBundle] = await Promise.all([startWorkflowTestEnv(), bundleOldKillSwitch(join(oldBundleDir, 'src'))]);
});
after(async () => {
  await env?.teardown();
  if (oldBundleDir) await rm(oldBundleDir, { recursive: true, force: true });
});

/** An applyKillSwitch mock that counts its calls: one entry, expiring in an hour, so a run waits for the next signal. */
function applyMock() {
  const calls = { n: 0 };
  const applyKillSwitch = (): Promise<KillSwitchApplied> => {
    calls.n += 1;
    return Promise.resolve({ entries: 1, dropped: 0, nextExpiryMs: Date.now() + 3_600_000 });
  };
  return { calls, applyKillSwitch };
}

const isPatchMarker = (e: HistoryEvent): boolean =>
  e.eventType === EventType.EVENT_TYPE_MARKER_RECORDED &&
  Object.values(e.markerRecordedEventAttributes?.details ?? {}).some((p) =>
    (p.payloads ?? []).some((pl) => JSON.stringify(defaultPayloadConverter.fromPayload(pl)).includes(KILL_SWITCH_SIGNAL_BUDGET_PATCH)),
  );

const scheduleToCloseMs = (e: HistoryEvent): number => {
  const t = e.activityTaskScheduledEventAttributes?.scheduleToCloseTimeout;
  return t ? Number(t.seconds ?? 0) * 1000 + Math.round((t.nanos ?? 0) / 1e6) : 0;
};

void describe('killSwitchWorkflow upgraded mid-run from 1.3.0', () => {
  void test('a 1.3.0 run continued by today’s worker takes the patch at its next round, and its history replays', async () => {
    const taskQueue = `wf-${randomBytes(6).toString('hex')}`;
    const workflowId = killSwitchWorkflowId(taskQueue);
    const handle = await env.client.workflow.start('killSwitchWorkflow', { workflowId, taskQueue });
    try {
      // Two rounds on 1.3.0: the first at the start, the second after a signal.
      const oldMock = applyMock();
      const oldWorker = await Worker.create({
        connection: env.nativeConnection,
        taskQueue,
        workflowBundle: oldBundle,
        dataConverter,
        activities: { applyKillSwitch: oldMock.applyKillSwitch },
      });
      await oldWorker.runUntil(async () => {
        // Signal once the first round waits on its timer (a signal during the round only repeats it).
        await historyUntil(handle, (events) => events.some((e) => e.eventType === EventType.EVENT_TYPE_TIMER_STARTED));
        await handle.signal(killSwitchChanged);
        await waitFor('the second round on 1.3.0', () => (oldMock.calls.n >= 2 ? true : undefined), 10_000);
        // The round's activity result is in the history and the run waits on its timer again.
        await historyUntil(handle, (events) => events.filter((e) => e.eventType === EventType.EVENT_TYPE_TIMER_STARTED).length >= 2);
      });
      assert.equal(oldMock.calls.n, 2);

      // Today's worker takes the run over: it replays the two old rounds, then runs one of its own.
      const newMock = applyMock();
      const newWorker = await Worker.create({
        connection: env.nativeConnection,
        taskQueue,
        workflowBundle: await testWorkflowBundle(),
        dataConverter,
        activities: { applyKillSwitch: newMock.applyKillSwitch },
      });
      const events = await newWorker.runUntil(async () => {
        await handle.signal(killSwitchChanged);
        await waitFor('a round on the current code', () => (newMock.calls.n >= 1 ? true : undefined), 30_000);
        return historyUntil(handle, (evs) => evs.filter((e) => e.eventType === EventType.EVENT_TYPE_TIMER_STARTED).length >= 3);
      });
      assert.equal(newMock.calls.n, 1);
      assert.equal((await handle.describe()).status.name, 'RUNNING');

      // In order: two unbounded schedules with no marker, the marker, then a bounded schedule.
      const scheduled = (e: HistoryEvent) => e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED;
      const markerAt = events.findIndex(isPatchMarker);
      assert.ok(markerAt >= 0, `no ${KILL_SWITCH_SIGNAL_BUDGET_PATCH} marker in ${events.map((e) => EventType[e.eventType ?? 0]).join(',')}`);
      assert.equal(events.filter(isPatchMarker).length, 1, 'one patch marker');
      const before = events.slice(0, markerAt).filter(scheduled);
      const afterMarker = events.slice(markerAt + 1).filter(scheduled);
      assert.equal(before.length, 2, 'two 1.3.0 rounds before the marker');
      for (const e of before) assert.equal(scheduleToCloseMs(e), 0, 'a 1.3.0 round has no schedule-to-close timeout');
      assert.equal(afterMarker.length, 1, 'one round on the current code after the marker');
      assert.equal(scheduleToCloseMs(afterMarker[0]!), 600_000, 'the patched round is bounded (ROUND_TIMEOUT_SECONDS)');

      // The mixed history replays against today's code.
      const history = await handle.fetchHistory();
      await Worker.runReplayHistory({ workflowBundle: await testWorkflowBundle(), dataConverter, replayName: 'kill-switch-upgrade' }, history, workflowId);
      // RECORD_UPGRADE_HISTORY=1 (re)writes the replay suite's copy of this mixed history.
      if (process.env.RECORD_UPGRADE_HISTORY === '1') {
        await writeFile(join(__dirname, 'histories', UPGRADE_HISTORY_FILE), temporal.api.history.v1.History.encode(history).finish());
      }
    } finally {
      if ((await handle.describe()).status.name === 'RUNNING') await handle.terminate('test over');
    }
  });
});
