/**
 * killSwitchWorkflow with a mocked applyKillSwitch on a dev server of its own
 * (test/support/workflow-env.ts): the signal budget (patch `kill-switch-signal-budget`) hands a run
 * to a fresh one before Temporal's 10,000-signal limit could make it deaf, and a round whose
 * retries run out of time continues as new instead of gathering signals. The whole path (API,
 * Postgres, the IAM stand-in) is test/kill-switch.test.ts's.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { killSwitchChanged, killSwitchWorkflowId, type KillSwitchApplied, type KillSwitchInput } from '../workflows/kill-switch.definitions';
import { historyUntil, startWorkflowTestEnv, withWorker } from './support/workflow-env';
import { waitFor } from './support/wait-for';

const EventType = temporal.api.enums.v1.EventType;

let env: TestWorkflowEnvironment;
before(async () => {
  env = await startWorkflowTestEnv();
});
after(async () => {
  await env?.teardown();
});

/** An applyKillSwitch mock that records the run of each call and answers `answer()`. */
function applyMock(answer: () => Promise<KillSwitchApplied>) {
  const runs: string[] = [];
  const applyKillSwitch = (): Promise<KillSwitchApplied> => {
    runs.push(Context.current().info.workflowExecution?.runId ?? '?');
    return answer();
  };
  return { runs, applyKillSwitch };
}

/** One entry in force, expiring in an hour: after a round the run waits for the next signal. */
const oneEntry = (): Promise<KillSwitchApplied> => Promise.resolve({ entries: 1, dropped: 0, nextExpiryMs: Date.now() + 3_600_000 });

/** What the API does after a revocation (api/kill-switch.ts), with the tests' input for a start. */
function wake(taskQueue: string, input: KillSwitchInput) {
  return env.client.workflow.signalWithStart('killSwitchWorkflow', {
    workflowId: killSwitchWorkflowId(taskQueue),
    taskQueue,
    args: [input],
    signal: killSwitchChanged,
    signalArgs: [],
  });
}

async function statusOf(taskQueue: string, runId?: string): Promise<string | undefined> {
  return (await env.client.workflow.getHandle(killSwitchWorkflowId(taskQueue), runId).describe()).status.name;
}

async function eventsOf(taskQueue: string, runId: string) {
  return (await env.client.workflow.getHandle(killSwitchWorkflowId(taskQueue), runId).fetchHistory()).events ?? [];
}

/** Terminates the workflow's current run, if one is still open. */
async function terminate(taskQueue: string): Promise<void> {
  const handle: WorkflowHandle = env.client.workflow.getHandle(killSwitchWorkflowId(taskQueue));
  if ((await statusOf(taskQueue)) === 'RUNNING') await handle.terminate('test over');
}

const distinct = (runs: string[]) => [...new Set(runs)];

/** Waits (at most 10 s) until the mock has been called from `n` different runs. */
const callsFromRuns = (mock: { runs: string[] }, n: number) =>
  waitFor(
    `a call from run ${n}`,
    () => (distinct(mock.runs).length >= n ? true : undefined),
    10_000,
    () => mock.runs.join(','),
  );

/**
 * The run has finished a round since its last signal and settled: a round completed after that
 * signal, and the workflow task that took the completion scheduled no other (it and the commands
 * it issued are recorded together). Counting the mock's calls instead raced: a round could run
 * before the test read the count, or one round could take two signals.
 */
function roundDoneSinceSignal(events: temporal.api.history.v1.IHistoryEvent[]): boolean {
  const last = (type: temporal.api.enums.v1.EventType) => events.findLastIndex((e) => e.eventType === type);
  const done = last(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED);
  return (
    done > last(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED) &&
    done > last(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) &&
    last(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED) > done
  );
}

void describe('killSwitchWorkflow (mocked applyKillSwitch)', () => {
  void test('a run that has taken its budget of signals continues as new after that round, and the new run applies again', async () => {
    const mock = applyMock(oneEntry);
    await withWorker(env, { applyKillSwitch: mock.applyKillSwitch }, async (taskQueue) => {
      try {
        /** Sends three signals to the current run, each after the round the one before it caused. */
        const threeSignals = async (): Promise<string> => {
          const first = await wake(taskQueue, { signalsPerRun: 3 });
          const runId = first.signaledRunId;
          const handle = env.client.workflow.getHandle(killSwitchWorkflowId(taskQueue), runId);
          await historyUntil(handle, roundDoneSinceSignal);
          await wake(taskQueue, { signalsPerRun: 3 });
          await historyUntil(handle, roundDoneSinceSignal);
          // Two signals: under the budget, the run goes on.
          assert.equal(await statusOf(taskQueue, runId), 'RUNNING');
          await wake(taskQueue, { signalsPerRun: 3 });
          return runId;
        };

        const firstRun = await threeSignals();
        await callsFromRuns(mock, 2);
        assert.equal(await statusOf(taskQueue, firstRun), 'CONTINUED_AS_NEW');
        const firstEvents = await eventsOf(taskQueue, firstRun);
        assert.equal(firstEvents.filter((e) => e.eventType === EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED).length, 3);
        assert.equal(firstEvents.at(-1)?.eventType, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW);
        const inFirst = mock.runs.filter((r) => r === firstRun).length;
        assert.ok(inFirst >= 2 && inFirst <= 3, `rounds in the first run: ${inFirst}`);
        const secondRun = distinct(mock.runs)[1]!;
        assert.notEqual(secondRun, firstRun);
        assert.equal(await statusOf(taskQueue), 'RUNNING');

        // The new run got the input (the budget of 3) and starts counting from zero.
        const again = await threeSignals();
        assert.equal(again, secondRun);
        await callsFromRuns(mock, 3);
        assert.equal(await statusOf(taskQueue, secondRun), 'CONTINUED_AS_NEW');
      } finally {
        await terminate(taskQueue);
      }
    });
  });

  void test('a round whose retries run out of time continues as new; a non-retryable failure still fails the run', async () => {
    // IAM refusing every attempt: the round ends at its deadline and a fresh run applies again.
    const refusing = applyMock(() => Promise.reject(new Error('IAM is down')));
    await withWorker(env, { applyKillSwitch: refusing.applyKillSwitch }, async (taskQueue) => {
      try {
        const { signaledRunId } = await wake(taskQueue, { roundTimeoutSeconds: 1 });
        await callsFromRuns(refusing, 2);
        assert.equal(refusing.runs[0], signaledRunId);
        assert.equal(await statusOf(taskQueue, signaledRunId), 'CONTINUED_AS_NEW');
        const events = await eventsOf(taskQueue, signaledRunId);
        const failed = events.find((e) => e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED);
        assert.equal(failed?.activityTaskFailedEventAttributes?.retryState, temporal.api.enums.v1.RetryState.RETRY_STATE_TIMEOUT);
      } finally {
        await terminate(taskQueue);
      }
    });

    // An attempt still running at the deadline: the run first waits out the attempt's
    // start-to-close (a minute), so the attempt cannot write after the next run's first.
    let release: () => void = () => undefined;
    const released = new Promise<KillSwitchApplied>((resolve) => {
      release = () => resolve({ entries: 0, dropped: 0, nextExpiryMs: null });
    });
    const hanging = applyMock(() => released);
    await withWorker(env, { applyKillSwitch: hanging.applyKillSwitch }, async (taskQueue) => {
      try {
        const { signaledRunId } = await wake(taskQueue, { roundTimeoutSeconds: 1 });
        const events = await historyUntil(env.client.workflow.getHandle(killSwitchWorkflowId(taskQueue), signaledRunId), (es) =>
          [EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT, EventType.EVENT_TYPE_TIMER_STARTED].every((t) => es.some((e) => e.eventType === t)),
        );
        const timedOut = events.find((e) => e.eventType === EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT)!;
        const started = events.find((e) => e.eventType === EventType.EVENT_TYPE_TIMER_STARTED)!;
        assert.equal(
          timedOut.activityTaskTimedOutEventAttributes?.failure?.timeoutFailureInfo?.timeoutType,
          temporal.api.enums.v1.TimeoutType.TIMEOUT_TYPE_SCHEDULE_TO_CLOSE,
        );
        assert.equal(Number(started.timerStartedEventAttributes?.startToFireTimeout?.seconds), 60);
        assert.equal(await statusOf(taskQueue, signaledRunId), 'RUNNING');
        assert.deepEqual(hanging.runs, [signaledRunId]);
      } finally {
        release();
        await terminate(taskQueue);
      }
    });

    // A failure the activity marks non-retryable fails the run, as before: no loop of fresh runs.
    const broken = applyMock(() => Promise.reject(ApplicationFailure.nonRetryable('misconfigured', 'KillSwitchMisconfigured')));
    await withWorker(env, { applyKillSwitch: broken.applyKillSwitch }, async (taskQueue) => {
      try {
        const handle = await wake(taskQueue, { roundTimeoutSeconds: 1 });
        await assert.rejects(env.client.workflow.getHandle(handle.workflowId, handle.signaledRunId).result(), WorkflowFailedError);
        assert.equal(await statusOf(taskQueue, handle.signaledRunId), 'FAILED');
        assert.deepEqual(broken.runs, [handle.signaledRunId]);
      } finally {
        await terminate(taskQueue);
      }
    });
  });
});
