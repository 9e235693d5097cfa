import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { deriveOmniAccount } from '../lib/omni';
import { AkOutcome } from '../lib/search-attributes';
import { latestCode, requestCode, submitCode, uniqueEmail, workflowIdOf, type LoginSessionBody } from './email-login-client';
import { startStack, type TestStack } from './harness';

const ROOT = join(__dirname, '..');
const children = new Set<ChildProcess>();

let stack: TestStack;
before(async () => {
  stack = await startStack({ worker: false });
});
after(async () => {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  }
  await stack?.stop();
});

/** Starts `worker/main.ts` as its own process on the stack's task queue; resolves once it polls. */
async function startWorkerProcess(): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'worker/main.ts'], { cwd: ROOT, env: stack.childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let output = '';
  const ready = new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('worker polling task queue')) resolve();
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (chunk: Buffer) => void (output += chunk.toString()));
    child.once('exit', (code, signal) => reject(new Error(`worker exited (${code ?? signal}) before polling:\n${output}`)));
  });
  const timeout = delay(60_000).then(() => {
    throw new Error(`worker did not start polling within 60 s:\n${output}`);
  });
  await Promise.race([ready, timeout]);
  return child;
}

void describe('worker restart', () => {
  void test('a worker killed in the middle of a login: after a restart the flow completes', async () => {
    const first = await startWorkerProcess();
    const email = uniqueEmail('Restart');
    const sent = await requestCode(stack, email);
    const code = await latestCode(stack, email);

    first.kill('SIGKILL');
    const [, signal] = (await once(first, 'exit')) as [number | null, string | null];
    assert.equal(signal, 'SIGKILL');

    // No worker: the submission is accepted by Temporal and waits for one.
    const submission = submitCode(stack, sent.request_id, code);
    const early = await Promise.race([submission.then(() => 'answered'), delay(1000).then(() => 'waiting')]);
    assert.equal(early, 'waiting', 'nothing can answer while no worker runs');

    await startWorkerProcess();
    const login = await submission;
    assert.equal(login.status, 200, login.text);
    const session = login.body as LoginSessionBody;
    assert.equal(session.omni_account, deriveOmniAccount('agentkeys', { type: 'email', value: email.toLowerCase() }));
    const rows = await stack.db.query<{ sessions: string; audit: string }>(
      `SELECT (SELECT count(*) FROM sessions WHERE omni_account = $1) AS sessions, (SELECT count(*) FROM audit_log WHERE omni_account = $1) AS audit`,
      [session.omni_account],
    );
    assert.deepEqual(rows.rows[0], { sessions: '1', audit: '1' });
    assert.equal((await stack.request('GET', '/v1/session/me', { token: session.token })).status, 200);

    const handle = stack.temporal.workflow.getHandle(workflowIdOf(stack, sent.request_id));
    assert.equal(await handle.result(), 'succeeded');
    assert.equal((await handle.describe()).typedSearchAttributes.get(AkOutcome), 'succeeded');
  });
});
