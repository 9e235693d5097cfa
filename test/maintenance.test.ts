import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Client } from '@temporalio/client';
import { brokerDataConverter } from '../adapters/temporal-options';
import { CodecError } from '../lib/codec';
import { FLOW_METADATA } from '../lib/flow-metadata';
import { ensureMaintenanceSchedule } from '../worker/schedules';
import type { purgeExpiredWorkflow } from '../workflows/maintenance';
import { PURGE_SCHEDULE_ID } from '../workflows/maintenance.definitions';
import { startStack, type TestStack } from './harness';

let stack: TestStack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.stop();
});

const hex = () => randomBytes(16).toString('hex');

void describe('housekeeping', () => {
  void test('the purge drops expired replay-guard, session, logged-out TEE token and spent refresh-family rows and keeps live ones', async () => {
    const [oldProof, liveProof, oldSession, liveSession] = [hex(), hex(), hex(), hex()];
    await stack.db.query(
      `INSERT INTO used_signatures (signature_hash, purpose, expires_at) VALUES ($1, 'test', now() - interval '1 minute'), ($2, 'test', now() + interval '1 hour')`,
      [oldProof, liveProof],
    );
    await stack.db.query(
      `INSERT INTO sessions (jti, omni_account, method, expires_at) VALUES ($1, '0xabc', 'email', now() - interval '1 minute'), ($2, '0xabc', 'email', now() + interval '1 hour')`,
      [oldSession, liveSession],
    );
    const [oldTee, liveTee] = [hex(), hex()];
    await stack.db.query(
      `INSERT INTO revoked_tee_tokens (token_digest, omni_account, expires_at) VALUES ($1, '0xabc', now() - interval '1 minute'), ($2, '0xabc', now() + interval '1 hour')`,
      [oldTee, liveTee],
    );
    const [oldFamily, liveFamily] = [hex(), hex()];
    await stack.db.query(
      `INSERT INTO refresh_tokens (token_digest, family_id, omni_account, method, session_jti, family_started_at)
       VALUES ($1, $1, '0xabc', 'email', $1, now() - make_interval(secs => $3) - interval '1 minute'), ($2, $2, '0xabc', 'email', $2, now() - interval '1 day')`,
      [oldFamily, liveFamily, stack.config.BROKER_REFRESH_MAX_SECONDS],
    );
    const result = await stack.temporal.workflow.execute<typeof purgeExpiredWorkflow>('purgeExpiredWorkflow', {
      workflowId: `maintenance/purge-test-${hex()}`,
      taskQueue: stack.config.BROKER_TASK_QUEUE,
    });
    assert.ok(result.proofs >= 1 && result.sessions >= 1 && result.revokedTeeTokens >= 1 && (result.refreshTokens ?? 0) >= 1, JSON.stringify(result));
    const families = await stack.db.query<{ family_id: string }>('SELECT family_id FROM refresh_tokens WHERE family_id = ANY($1)', [[oldFamily, liveFamily]]);
    assert.deepEqual(
      families.rows.map((r) => r.family_id),
      [liveFamily],
    );
    const tees = await stack.db.query<{ token_digest: string }>('SELECT token_digest FROM revoked_tee_tokens WHERE token_digest = ANY($1)', [
      [oldTee, liveTee],
    ]);
    assert.deepEqual(
      tees.rows.map((r) => r.token_digest),
      [liveTee],
    );
    const proofs = await stack.db.query<{ signature_hash: string }>('SELECT signature_hash FROM used_signatures WHERE signature_hash = ANY($1)', [
      [oldProof, liveProof],
    ]);
    assert.deepEqual(
      proofs.rows.map((r) => r.signature_hash),
      [liveProof],
    );
    const sessions = await stack.db.query<{ jti: string }>('SELECT jti FROM sessions WHERE jti = ANY($1)', [[oldSession, liveSession]]);
    assert.deepEqual(
      sessions.rows.map((r) => r.jti),
      [liveSession],
    );
  });

  void test('the hourly schedule is registered once, on the broker task queue', async () => {
    await stack.temporal.schedule
      .getHandle(PURGE_SCHEDULE_ID)
      .delete()
      .catch(() => undefined);
    try {
      assert.equal(await ensureMaintenanceSchedule(stack.temporal, stack.config), 'created');
      assert.equal(await ensureMaintenanceSchedule(stack.temporal, stack.config), 'existing');
      const d = await stack.temporal.schedule.getHandle(PURGE_SCHEDULE_ID).describe();
      assert.equal(d.action.type, 'startWorkflow');
      assert.equal(d.action.type === 'startWorkflow' ? d.action.taskQueue : '', stack.config.BROKER_TASK_QUEUE);
      assert.equal(d.spec.intervals?.[0]?.every, 3_600_000);
      assert.equal(d.action.staticSummary, FLOW_METADATA.maintenance.staticSummary);
      // A run nobody can finish (a payload key this broker does not hold) ends instead of blocking the Schedule.
      const timeout = (a: typeof d.action): unknown => (a.type === 'startWorkflow' ? (a.workflowExecutionTimeout as unknown) : undefined);
      assert.equal(timeout(d.action), 30 * 60_000);
      // A Schedule registered before the action carried a summary and a timeout gets them at the next start-up.
      const handle = stack.temporal.schedule.getHandle(PURGE_SCHEDULE_ID);
      await handle.update((previous) => ({
        ...previous,
        action: { ...previous.action, staticSummary: undefined, staticDetails: undefined, workflowExecutionTimeout: undefined },
      }));
      assert.equal((await handle.describe()).action.staticSummary, undefined);
      assert.equal(timeout((await handle.describe()).action), undefined);
      assert.equal(await ensureMaintenanceSchedule(stack.temporal, stack.config), 'existing');
      assert.equal((await handle.describe()).action.staticSummary, FLOW_METADATA.maintenance.staticSummary);
      assert.equal(timeout((await handle.describe()).action), 30 * 60_000);
    } finally {
      await stack.temporal.schedule.getHandle(PURGE_SCHEDULE_ID).delete();
    }
  });

  void test('a schedule written under a payload key this broker does not hold is replaced, not a failed start-up', async () => {
    const schedules = stack.temporal.schedule;
    await schedules
      .getHandle(PURGE_SCHEDULE_ID)
      .delete()
      .catch(() => undefined);
    // Another deployment (or a key since dropped): same namespace, same Schedule id, another payload key.
    const foreign = new Client({
      connection: stack.temporal.connection,
      namespace: stack.config.TEMPORAL_NAMESPACE,
      dataConverter: brokerDataConverter({ ...stack.secrets, payloadKey: randomBytes(32), retiredPayloadKeys: [] }),
    });
    const foreignConfig = { ...stack.config, BROKER_TASK_QUEUE: `foreign-${randomBytes(4).toString('hex')}` };
    try {
      assert.equal(await ensureMaintenanceSchedule(foreign, foreignConfig), 'created');
      await assert.rejects(schedules.getHandle(PURGE_SCHEDULE_ID).describe(), CodecError, 'this broker cannot read it');
      assert.equal(await ensureMaintenanceSchedule(stack.temporal, stack.config), 'replaced');
      const d = await schedules.getHandle(PURGE_SCHEDULE_ID).describe();
      assert.equal(d.action.type === 'startWorkflow' ? d.action.taskQueue : '', stack.config.BROKER_TASK_QUEUE);
      assert.equal(d.action.staticSummary, FLOW_METADATA.maintenance.staticSummary);
      assert.equal(await ensureMaintenanceSchedule(stack.temporal, stack.config), 'existing');
    } finally {
      await schedules.getHandle(PURGE_SCHEDULE_ID).delete();
    }
  });
});
