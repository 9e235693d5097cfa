/**
 * An applyKillSwitch attempt that overruns its start-to-close timeout is retried by the server
 * while it keeps running. It must not then put the entries it read at its start over what the
 * retry wrote since (dropping a revocation recorded in between): it starts no IAM write past its
 * write cutoff (its deadline less the longest one IAM call takes), each write renders the entries
 * read just before it, and cancelling the activity aborts the IAM call in flight. The attempts run
 * in MockActivityEnvironment with the activity info a worker would give them (an attempt's start
 * set back, `attemptStartedMs`, makes it "most of a minute old" without waiting; time it spent
 * queued before it started does not), against the IAM stand-in
 * behind a proxy that holds one chosen request until the test releases it.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { createKillSwitchActivities, killSwitchWriteCutoffMs } from '../activities/kill-switch';
import { IAM_CALL_MAX_MS } from '../adapters/iam-client';
import { insertKillSwitchEntry } from '../db/kill-switch';
import { closeServer, listen, readBody } from '../fixtures/http-server';
import { startIamFixture, type IamFixture } from '../fixtures/iam';
import { KILL_SWITCH_POLICY_NAME } from '../lib/kill-switch';
import { GRANT_TAG } from '../lib/oidc-claims';
import type { KillSwitchApplied } from '../workflows/kill-switch.definitions';
import { startStack, type TestStack } from './harness';

const ROLE = 'agentkeys-data';
const MINUTE = 60_000;
let stack: TestStack;

before(async () => {
  // The IAM client signs its requests: the SDK's default credential chain reads these.
  process.env.AWS_ACCESS_KEY_ID = 'AKIAKILLSWITCHTEST02';
  process.env.AWS_SECRET_ACCESS_KEY = 'kill-switch-stale-write-secret-000000000';
  stack = await startStack({ worker: false });
});
after(async () => {
  await stack?.stop();
});

const hex = (bytes: number) => `0x${randomBytes(bytes).toString('hex')}`;

/** Records a revoked grant's entry, as a revocation does, and answers its grant id. */
async function revokeGrant(): Promise<string> {
  const grantId = `grt_${randomBytes(16).toString('hex')}`;
  await insertKillSwitchEntry(stack.db, {
    kind: 'grant',
    mainAccount: `acct_${randomBytes(8).toString('hex')}`,
    userWallet: hex(20),
    agentAddress: hex(20),
    grantId,
    revokedAt: new Date(),
    expiresAt: new Date(Date.now() + 3_600_000),
  });
  return grantId;
}

/** Whether `iam`'s role denies a session of `grantId` (the Sid that does, or undefined). */
const denies = (iam: IamFixture, grantId: string) =>
  iam.evaluate(ROLE, {
    principalTags: { [GRANT_TAG]: grantId },
    keys: { 'aws:TokenIssueTime': new Date().toISOString() },
    action: 's3:GetObject',
    resource: '*',
  });

/** IAM writes `iam` received from the `from`-th request on. */
const writesSince = (iam: IamFixture, from: number) =>
  iam
    .calls()
    .slice(from)
    .filter((c) => c.action === 'PutRolePolicy' || c.action === 'DeleteRolePolicy');

/**
 * An attempt's activity info as the server gives it: scheduled `queuedMs` before now (time in the
 * task queue), with the workflow's one-minute start-to-close timeout.
 */
const attemptInfo = (queuedMs: number, attempt = 1) => ({ attempt, startToCloseTimeoutMs: MINUTE, currentAttemptScheduledTimestampMs: Date.now() - queuedMs });

/** Runs applyKillSwitch in `env` against the IAM endpoint `url`, for ROLE, as an attempt that began `startedAgoMs` ago. */
function apply(url: string, env: MockActivityEnvironment, startedAgoMs = 0): Promise<KillSwitchApplied> {
  const { config } = stack;
  const activities = createKillSwitchActivities(
    {
      ...stack.activityDeps,
      config: { ...config, BROKER_KILL_SWITCH: 'iam', BROKER_IAM_ENDPOINT: url, BROKER_KILL_SWITCH_ROLE_NAMES: ROLE },
    },
    { attemptStartedMs: () => Date.now() - startedAgoMs },
  );
  return env.run<[], KillSwitchApplied, () => Promise<KillSwitchApplied>>(() => activities.applyKillSwitch());
}
const envOf = (info: ReturnType<typeof attemptInfo>) => new MockActivityEnvironment(info, { logger: new DefaultLogger('ERROR', () => undefined) });

/**
 * A proxy in front of the IAM stand-in at `target` that holds the first request for `action` (on
 * `policyName`, if given) until release(); `reached` resolves when it holds it, `forwarded` once
 * the held request has been passed on and answered.
 */
async function gatedProxy(target: string, action: string, policyName?: string) {
  let armed = true;
  let reached!: () => void;
  let release!: () => void;
  let forwarded!: () => void;
  const gate = {
    reached: new Promise<void>((r) => (reached = r)),
    released: new Promise<void>((r) => (release = r)),
    forwarded: new Promise<void>((r) => (forwarded = r)),
  };
  const server: Server = createServer((req, res) => {
    void (async () => {
      const body = await readBody(req, 64 * 1024);
      const form = new URLSearchParams(body);
      const held = armed && form.get('Action') === action && (policyName === undefined || form.get('PolicyName') === policyName);
      if (held) {
        armed = false;
        reached();
        await gate.released;
      }
      const answer = await fetch(target, {
        method: 'POST',
        headers: { 'content-type': req.headers['content-type'] ?? '', authorization: req.headers.authorization ?? '' },
        body,
      });
      const text = await answer.text();
      res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'text/xml' });
      res.end(text);
      if (held) forwarded();
    })().catch(() => res.destroy());
  });
  const port = await listen(server, 0, '127.0.0.1', 'gated IAM proxy');
  return { url: `http://127.0.0.1:${port}`, ...gate, release, close: () => closeServer(server) };
}

/** How `p` settled: its value, or the error it rejected with. */
const settled = <T>(p: Promise<T>) =>
  p.then(
    (value) => ({ value }) as const,
    (error: unknown) => ({ error: error as Error }) as const,
  );
const within = <T>(p: Promise<T>, ms: number) => Promise.race([p, new Promise<'pending'>((r) => setTimeout(() => r('pending'), ms))]);

void describe('an applyKillSwitch attempt that overruns its timeout never puts its older entries over a later attempt’s', () => {
  void test('the write cutoff: the attempt’s deadline less one IAM call and a delivery margin, counted from its start here', () => {
    assert.equal(IAM_CALL_MAX_MS, 11_000);
    assert.equal(killSwitchWriteCutoffMs({ startToCloseTimeoutMs: MINUTE }, 1_000_000), 1_000_000 + MINUTE - IAM_CALL_MAX_MS - 2000);
    assert.equal(killSwitchWriteCutoffMs({ startToCloseTimeoutMs: IAM_CALL_MAX_MS + 2000 }, 1_000_000), Infinity, 'no room for any write: no cutoff');
  });

  void test('an attempt that waited in the task queue most of a minute still writes: the start-to-close timeout counts from its start', async () => {
    const iam = await startIamFixture({ roles: [ROLE] });
    try {
      const e = await revokeGrant();
      // Scheduled 55 s ago (a busy or redeploying worker pool), started now.
      const applied = await apply(iam.url, envOf(attemptInfo(55_000)));
      assert.ok(applied.entries >= 1);
      assert.ok(denies(iam, e), 'the revocation reached the role');
    } finally {
      await iam.close();
    }
  });

  void test('an attempt held in its GetRolePolicy until past its cutoff fails instead of writing; the later attempt’s revocation stays denied', async () => {
    const iam = await startIamFixture({ roles: [ROLE] });
    const gate = await gatedProxy(iam.url, 'GetRolePolicy', KILL_SWITCH_POLICY_NAME);
    try {
      const s1 = await revokeGrant();
      // A1: 46.3 s into its minute, 0.7 s before its write cutoff.
      const a1 = settled(apply(gate.url, envOf(attemptInfo(0)), MINUTE - IAM_CALL_MAX_MS - 2000 - 700));
      const cutoff = Date.now() + 700;
      assert.equal(await within(gate.reached, 5000), undefined, 'A1 reads the role’s policy (before its cutoff)');

      // Meanwhile the server retried: A2 reads S1 + E and writes it.
      const e = await revokeGrant();
      const a2 = await apply(iam.url, envOf(attemptInfo(0, 2)));
      assert.ok(a2.entries >= 2, String(a2.entries));
      assert.ok(denies(iam, e), 'A2 denies E');
      const written = iam.rolePolicy(ROLE, KILL_SWITCH_POLICY_NAME);

      // A1's GetRolePolicy answers only once A1 is past its cutoff.
      await new Promise((r) => setTimeout(r, Math.max(0, cutoff + 50 - Date.now())));
      const before = iam.calls().length;
      gate.release();
      const outcome = await a1;
      assert.ok(denies(iam, e), 'the revocation recorded between A1’s read and its write is still denied');
      assert.ok(denies(iam, s1));
      assert.equal(iam.rolePolicy(ROLE, KILL_SWITCH_POLICY_NAME), written, 'the role holds what A2 wrote');
      assert.deepEqual(writesSince(iam, before), [], 'A1 wrote nothing after its cutoff');
      assert.ok('error' in outcome, 'A1 fails (and is retried) rather than succeeding');
      assert.match(outcome.error.message, /past its write cutoff/);
    } finally {
      gate.release();
      await gate.close();
      await iam.close();
    }
  });

  void test('a write renders the entries read just before it: a revocation recorded while the attempt sized the role is in what it writes', async () => {
    const iam = await startIamFixture({ roles: [ROLE] });
    const gate = await gatedProxy(iam.url, 'ListRolePolicies');
    try {
      await revokeGrant();
      const a1 = apply(gate.url, envOf(attemptInfo(0)));
      assert.equal(await within(gate.reached, 5000), undefined, 'A1 lists the role’s other policies');
      const e = await revokeGrant();
      gate.release();
      await a1;
      assert.ok(denies(iam, e), 'E is in A1’s one write');
      assert.deepEqual(
        writesSince(iam, 0).map((c) => c.action),
        ['PutRolePolicy'],
      );
    } finally {
      gate.release();
      await gate.close();
      await iam.close();
    }
  });

  void test('cancelling the activity aborts its IAM call in flight, and nothing is written', async () => {
    const iam = await startIamFixture({ roles: [ROLE] });
    const gate = await gatedProxy(iam.url, 'GetRolePolicy', KILL_SWITCH_POLICY_NAME);
    try {
      await revokeGrant();
      const env = envOf(attemptInfo(0));
      const a1 = settled(apply(gate.url, env));
      assert.equal(await within(gate.reached, 5000), undefined, 'A1 reads the role’s policy');
      env.cancel();
      const outcome = await within(a1, 1000);
      assert.notEqual(outcome, 'pending', 'the held GetRolePolicy was not aborted');
      assert.ok(outcome !== 'pending' && 'error' in outcome, 'a cancelled attempt fails');
      gate.release();
      await within(gate.forwarded, 5000);
      assert.deepEqual(writesSince(iam, 0), [], 'the aborted attempt wrote nothing');
    } finally {
      gate.release();
      await gate.close();
      await iam.close();
    }
  });
});
