/**
 * The README's email walk-through, run as a person pastes it (bash, against a running broker): it
 * logs in and out, and run again within the resend cooldown it stops at the first refused step with
 * the status instead of feeding the error body into the next command.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { startStack, type TestStack } from './harness';

const run = promisify(execFile);
const ROOT = join(__dirname, '..');

let stack: TestStack | undefined;
before(async () => {
  stack = await startStack({ env: { BROKER_EMAIL_RESEND_COOLDOWN_SECONDS: '60' } });
});
after(async () => {
  await stack?.stop();
});

async function emailBlock(): Promise<string> {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  const block = /## Log in by email \(curl walk-through\)[\s\S]*?```sh\n([\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(block, 'README has the email walk-through block');
  assert.match(block, /^B=http:\/\/127\.0\.0\.1:8091/m);
  return block.replace(/^B=\S+/m, `B=${(stack as TestStack).url}`);
}

async function bash(script: string): Promise<{ code: number; out: string; err: string }> {
  return run('bash', ['-c', script], { cwd: ROOT }).then(
    (r) => ({ code: 0, out: r.stdout, err: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout, err: e.stderr }),
  );
}

void describe('README: the email walk-through', () => {
  void test('logs in and out; a re-run within the cooldown stops at step 1 with the 429, and nothing after it runs', async () => {
    const block = await emailBlock();
    const first = await bash(block);
    assert.equal(first.code, 0, `${first.out}\n${first.err}`);
    assert.match(first.out, /"omni_account":"0x[0-9a-f]{64}"/);
    assert.match(first.out, /^204$/m);

    const again = await bash(block);
    assert.notEqual(again.code, 0);
    assert.match(again.err, /returned error: 429/);
    assert.match(again.err, /"error":"rate_limited"/, 'the broker says why, on stderr');
    assert.doesNotMatch(`${again.out}${again.err}`, /omni_account|invalid_code|bad_request|401/, 'no step after the refused one ran');
  });
});
