/**
 * Fast workflow tests (docs/login-methods.md, "Testing a method"): the workflows run on the
 * Temporal CLI dev server the project already installs (scripts/temporal-cli.ts), started through
 * the SDK's TestWorkflowEnvironment.createLocal with that executable — the time-skipping server is
 * a download this setup does not make — and a Worker whose activities are the test's mocks. No
 * Postgres, no API: a test drives the workflow through its client and shortens its windows through
 * the workflow input, so nothing waits more than about a second.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { WorkflowUpdateFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';
import type { Activities } from '../../activities';
import { AkAccount, AkFlow, AkOutcome, AkStage } from '../../lib/search-attributes';
import { findOrInstallTemporalCli } from '../../scripts/temporal-cli';
import { DEV_DYNAMIC_CONFIG } from '../../scripts/temporal-dev-server';
import { testWorkflowBundle } from '../harness';

let runtimeInstalled = false;

/** A dev server of its own (in memory, headless) with the broker's search attributes registered. */
export async function startWorkflowTestEnv(): Promise<TestWorkflowEnvironment> {
  if (!runtimeInstalled) {
    // Expected workflow failures are what these tests provoke: keep the worker's log to warnings.
    Runtime.install({ logger: new DefaultLogger('ERROR') });
    runtimeInstalled = true;
  }
  const path = await findOrInstallTemporalCli();
  return TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path },
      searchAttributes: [AkFlow, AkAccount, AkStage, AkOutcome],
      extraArgs: Object.entries(DEV_DYNAMIC_CONFIG).flatMap(([k, v]) => ['--dynamic-config-value', `${k}=${v}`]),
    },
  });
}

/**
 * Runs `body` while a Worker on a fresh task queue serves the broker's workflows with the given
 * mocked activities (an activity a workflow calls and the mock lacks fails the test loudly).
 */
export async function withWorker<T>(env: TestWorkflowEnvironment, activities: Partial<Activities>, body: (taskQueue: string) => Promise<T>): Promise<T> {
  const taskQueue = `wf-${randomBytes(6).toString('hex')}`;
  const worker = await Worker.create({ connection: env.nativeConnection, taskQueue, workflowBundle: await testWorkflowBundle(), activities });
  return worker.runUntil(body(taskQueue));
}

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

/** Polls a run's history until `done` holds (at most 10 s), every 100 ms. */
export async function historyUntil(
  handle: { fetchHistory(): Promise<temporal.api.history.v1.IHistory> },
  done: (events: HistoryEvent[]) => boolean,
): Promise<HistoryEvent[]> {
  const t0 = Date.now();
  for (;;) {
    const events = (await handle.fetchHistory()).events ?? [];
    if (done(events)) return events;
    if (Date.now() - t0 > 10_000) throw new Error(`history not as awaited: ${events.map((e) => temporal.api.enums.v1.EventType[e.eventType ?? 0]).join(',')}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** How many Updates a run's history records as accepted (a validator's refusal records none). */
export async function acceptedUpdates(handle: { fetchHistory(): Promise<temporal.api.history.v1.IHistory> }): Promise<number> {
  return ((await handle.fetchHistory()).events ?? []).filter((e) => e.workflowExecutionUpdateAcceptedEventAttributes).length;
}

/** The ApplicationFailure an Update was refused with, asserting it was refused. */
export async function updateRefusal(update: Promise<unknown>): Promise<ApplicationFailure> {
  const e = await update.then(
    () => assert.fail('the update was accepted'),
    (err: unknown) => err,
  );
  assert.ok(e instanceof WorkflowUpdateFailedError && e.cause instanceof ApplicationFailure, String(e));
  return e.cause;
}
