/**
 * `agentkeys init device` end to end: the built CLI against a test stack, the person approving (or
 * denying) through the HTTP verify route as the console does. The CLI shows the code, the link and
 * a QR code, polls at the broker's interval and stores the session like every init method.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startStack, type TestStack } from './harness';
import { buildCli, cliAgainst, waitFor } from './cli-client';
import { signedIn, verify } from './device-client';

let stack: TestStack;
let home: string;
before(async () => {
  buildCli();
  stack = await startStack({ env: { BROKER_DEVICE_POLL_INTERVAL_SECONDS: '1' } });
  home = await mkdtemp(join(tmpdir(), 'akb-cli-device-'));
});
after(async () => {
  await stack?.stop();
  if (home) await rm(home, { recursive: true, force: true });
});

const cli = cliAgainst(() => ({ url: stack.url, home }));
const USER_CODE_IN = /\b([BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4})\b/;

void describe('agentkeys init device', () => {
  void test('--json: a device_code line (no secret), the person approves in the console, a logged_in line; the stored session works', async () => {
    const person = await signedIn(stack);
    const run = await cli.run(['--json', '--profile', 'dev-a', 'init', 'device'], {
      feed: async (_write, end, output) => {
        const line = await waitFor(
          'the device_code line',
          () =>
            output()
              .split('\n')
              .find((l) => l.includes('"device_code"')),
          30_000,
          output,
        );
        const shown = JSON.parse(line) as Record<string, unknown>;
        assert.equal(shown.event, 'device_code');
        assert.equal(shown.device_code, undefined, 'the device_code secret is not printed');
        assert.equal(shown.verification_uri, `${stack.config.publicUrl}/console/device`);
        assert.equal(shown.verification_uri_complete, `${stack.config.publicUrl}/console/device?user_code=${String(shown.user_code)}`);
        assert.equal(shown.interval, 1);
        const approved = await verify(stack, person.token, String(shown.user_code));
        assert.equal(approved.status, 200, approved.text);
        end();
      },
    });
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const done = lines.at(-1);
    assert.equal(done?.event, 'logged_in');
    assert.equal(done?.method, 'device');
    assert.equal(done?.omni_account, person.omni_account);
    assert.equal(done?.store, 'file');
    // The stored bearer is the device's session of the approving account.
    const printed = await cli.run(['--profile', 'dev-a', 'token']);
    assert.equal(printed.code, 0, printed.stderr);
    const me = await stack.request('GET', '/v1/session/me', { token: printed.stdout.trim() });
    assert.equal(me.status, 200, me.text);
    assert.equal((me.body as { omni_account: string }).omni_account, person.omni_account);
  });

  void test('for a person: the code, the link and a QR code on stderr; a denial ends it with a clear message and stores nothing', async () => {
    const person = await signedIn(stack);
    const run = await cli.run(['--profile', 'dev-b', 'init', 'device'], {
      feed: async (_write, end, output) => {
        const code = await waitFor('the user code', () => USER_CODE_IN.exec(output())?.[1], 30_000, output);
        // The QR code comes with the text (half blocks).
        await waitFor('the QR code', () => (/[▀▄█]/.test(output()) ? true : undefined), 30_000, output);
        const denied = await verify(stack, person.token, code, 'deny');
        assert.equal(denied.status, 200, denied.text);
        end();
      },
    });
    assert.notEqual(run.code, 0);
    assert.match(run.stderr, /open http:\/\/127\.0\.0\.1:\d+\/console\/device/);
    assert.match(run.stderr, /denied/);
    const stored = await cli.run(['--profile', 'dev-b', 'token']);
    assert.notEqual(stored.code, 0, stored.stdout);
  });
});
