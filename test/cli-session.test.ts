/**
 * The `agentkeys` CLI as a subprocess against the running stack: where a login keeps its session
 * by default, status --all, a profile's remembered broker, AGENTKEYS_TOKEN and `token`, staying
 * logged in with refresh tokens, re-signing a wallet login whose second was used, and errors in the
 * CLI's words.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { buildStatelessWalletMessage } from '../lib/wallet-message';
import { buildCli, cliAgainst, parseJson } from './cli-client';
import { startStack, type TestStack } from './harness';
import { DEAD_BROKER_URL } from './support/dead-endpoint';

let stack: TestStack;
let home: string;

before(async () => {
  buildCli();
  stack = await startStack();
  home = await mkdtemp(join(tmpdir(), 'akb-cli-session-'));
});
after(async () => {
  await stack?.stop();
  if (home) await rm(home, { recursive: true, force: true });
});

const cli = cliAgainst(() => ({ url: stack.url, home }));
const runCli = cli.run;
const keyFile = cli.keyFile;

void describe('agentkeys CLI: the store by default, status --all, remembered broker, AGENTKEYS_TOKEN, token, retried signing, CLI words', () => {
  void test('Linux without a Secret Service on D-Bus: a login with no store asked for lands in the file, and status names it', async () => {
    const { path } = await keyFile();
    // No DBUS_SESSION_BUS_ADDRESS in the child's environment, AGENTKEYS_SESSION_STORE unset.
    const env = { AGENTKEYS_SESSION_STORE: '', AGENTKEYS_PROFILE: 'nostore' };
    const init = parseJson(await runCli(['--json', 'init', 'wallet', '--private-key-file', path], { env }));
    assert.equal(init.store, 'file');
    assert.equal((await stat(join(home, '.agentkeys', 'nostore', 'session.json'))).mode & 0o777, 0o600);
    const st = await runCli(['status'], { env });
    assert.equal(st.code, 0, st.stderr);
    assert.match(st.stdout, /store {4}file .*\.agentkeys\/nostore\/session\.json/);
  });

  void test('status --all: every profile with its broker, identity, store and expiry; exit 1 while one broker is not ready', async () => {
    const { path, address } = await keyFile();
    parseJson(await runCli(['--json', '--profile', 'all-a', 'init', 'wallet', '--private-key-file', path]));
    const good = parseJson(await runCli(['--json', 'status', '--all']));
    const listed = good.profiles as {
      profile: string;
      broker_url: string;
      ready: boolean;
      store: string;
      session: { identity: string; expires_at: number } | null;
    }[];
    const a = listed.find((p) => p.profile === 'all-a');
    assert.equal(a?.broker_url, stack.url);
    assert.equal(a?.ready, true);
    assert.equal(a?.store, 'file');
    assert.equal(a?.session?.identity, `evm ${address.toLowerCase()}`);
    assert.ok((a?.session?.expires_at ?? 0) > Date.now() / 1000);

    // A profile whose broker is gone (as profile.json keeps it).
    const deadUrl = DEAD_BROKER_URL;
    const gone = join(home, '.agentkeys', 'all-gone');
    await mkdir(gone, { recursive: true, mode: 0o700 });
    await writeFile(join(gone, 'profile.json'), JSON.stringify({ broker_url: deadUrl, kind: 'file' }), { mode: 0o600 });
    const bad = await runCli(['--json', 'status', '--all']);
    assert.equal(bad.code, 1);
    const both = (JSON.parse(bad.stdout) as { profiles: { profile: string; reachable: boolean }[] }).profiles;
    assert.equal(both.find((p) => p.profile === 'all-gone')?.reachable, false);
    assert.equal(both.find((p) => p.profile === 'all-a')?.reachable, true);
    // Only the broker that is down, and why: not reachable (the other one is ready).
    assert.equal(bad.stderr, `agentkeys: the broker at ${deadUrl} is not reachable: is it running? Set --broker-url or AGENTKEYS_BROKER_URL\n`);
    await rm(gone, { recursive: true });
  });

  void test('a profile remembers its broker URL: after logout, init without --broker-url goes back to it', async () => {
    const { path } = await keyFile();
    const p = ['--profile', 'remember'];
    const first = parseJson(await runCli(['--json', ...p, 'init', 'wallet', '--private-key-file', path]));
    assert.equal(first.broker_url, stack.url);
    parseJson(await runCli(['--json', ...p, 'logout']));
    const noUrl = { env: { AGENTKEYS_BROKER_URL: '' } };
    const again = parseJson(await runCli(['--json', ...p, 'init', 'wallet', '--private-key-file', path], noUrl));
    assert.equal(again.broker_url, stack.url);
    const st = parseJson(await runCli(['--json', ...p, 'status'], noUrl));
    assert.equal(st.broker_url, stack.url);
  });

  void test('AGENTKEYS_TOKEN is the bearer without any stored session; agentkeys token prints the stored one', async () => {
    const { path, address } = await keyFile();
    const init = parseJson(await runCli(['--json', '--profile', 'ci-src', 'init', 'wallet', '--private-key-file', path, '--show-token']));
    const printed = await runCli(['--profile', 'ci-src', 'token']);
    assert.equal(printed.code, 0, printed.stderr);
    assert.equal(printed.stdout, `${init.token as string}\n`);

    const ciHome = await mkdtemp(join(tmpdir(), 'akb-cli-ci-'));
    try {
      const env = { HOME: ciHome, AGENTKEYS_TOKEN: init.token as string };
      const me = parseJson(await runCli(['--json', 'whoami'], { env }));
      assert.deepEqual(me.identity, { type: 'evm', value: address.toLowerCase() });
      assert.equal(me.method, 'AGENTKEYS_TOKEN');
      const oidc = parseJson(await runCli(['--json', 'mint', 'oidc'], { env }));
      assert.equal(oidc.wallet, address.toLowerCase());
      const cp = await runCli(['mint', 'aws', '--credential-process'], { env });
      assert.equal(cp.code, 0, cp.stderr);
      assert.equal((JSON.parse(cp.stdout) as { Version: number }).Version, 1);
      const forged = await runCli(['whoami'], { env: { HOME: ciHome, AGENTKEYS_TOKEN: `${init.token as string}x` } });
      assert.equal(forged.code, 1);
      assert.match(forged.stderr, /the broker refused AGENTKEYS_TOKEN/);
      assert.doesNotMatch(forged.stderr, /agentkeys init/, 'init cannot help while AGENTKEYS_TOKEN is set');
      const none = await runCli(['token'], { env: { HOME: ciHome } });
      assert.equal(none.code, 1);
      assert.match(none.stderr, /not logged in: run agentkeys init/);
    } finally {
      await rm(ciHome, { recursive: true, force: true });
    }
  });

  void test('a bearer the broker refuses: from AGENTKEYS_TOKEN the error names it (set a fresh one or unset it); a stored one says run agentkeys init', async () => {
    const { path } = await keyFile();
    const p = ['--profile', 'refused'];
    const init = parseJson(await runCli(['--json', ...p, 'init', 'wallet', '--private-key-file', path, '--show-token']));
    // The login ends at the broker, as a logout elsewhere ends it; the profile still holds the bearer.
    const out = await stack.request('POST', '/v1/session/logout', { token: init.token as string });
    assert.ok(out.status < 300, out.text);

    const env = { env: { AGENTKEYS_TOKEN: init.token as string } };
    const viaEnv = await runCli([...p, 'whoami'], env);
    assert.equal(viaEnv.code, 1);
    assert.match(
      viaEnv.stderr,
      /^agentkeys: the broker refused AGENTKEYS_TOKEN \(.+\): it is not a session of this broker, or it expired or was logged out; set a fresh one \(agentkeys token prints a profile's\), or unset AGENTKEYS_TOKEN to use the stored session\n$/,
    );
    const json = await runCli(['--json', ...p, 'mint', 'oidc'], env);
    assert.equal(json.code, 1);
    const body = JSON.parse(json.stdout) as { error: string; message: string };
    assert.equal(body.error, 'ERR_CLI_NOT_LOGGED_IN');
    assert.match(body.message, /refused AGENTKEYS_TOKEN/);

    const stored = await runCli([...p, 'whoami']);
    assert.equal(stored.code, 1);
    assert.match(stored.stderr, /^agentkeys: the broker refused the stored session \(.+\): run agentkeys init --profile refused\n$/);
    assert.doesNotMatch(stored.stderr, /AGENTKEYS_TOKEN/);
  });

  void test("init wallet when the current second's signature is already used: signs again with a later timestamp instead of failing", async () => {
    const pk = generatePrivateKey();
    const { path } = await keyFile(pk);
    const account = privateKeyToAccount(pk);
    const address = account.address.toLowerCase();
    // Spend the signatures of this second and the next two, as other logins with this key would.
    const now = Math.floor(Date.now() / 1000);
    for (const timestamp of [now, now + 1, now + 2]) {
      const signature = await account.signMessage({ message: buildStatelessWalletMessage(address, timestamp) });
      const res = await stack.request('POST', '/v1/session/wallet_login', { body: { address, signature, timestamp } });
      assert.equal(res.status, 200, res.text);
    }
    const r = await runCli(['--json', '--profile', 'resign', 'init', 'wallet', '--private-key-file', path]);
    const body = parseJson(r);
    assert.deepEqual(body.identity, { type: 'evm', value: address });
  });

  void test('a session about to expire renews itself with its refresh token; processes racing to renew keep the login; an expired one renews too', async () => {
    const { path } = await keyFile();
    const p = ['--profile', 'renew'];
    const init = parseJson(await runCli(['--json', ...p, 'init', 'wallet', '--private-key-file', path]));
    assert.ok((init.renews_until as number) > (init.expires_at as number));
    const file = join(home, '.agentkeys', 'renew', 'session.json');
    type Stored = { token: string; expires_at: number; refresh_token: string };
    const read = async () => JSON.parse(await readFile(file, 'utf8')) as Stored;
    const expiresIn = async (seconds: number) => {
      const s = await read();
      await writeFile(file, JSON.stringify({ ...s, expires_at: Math.floor(Date.now() / 1000) + seconds }), { mode: 0o600 });
      return s;
    };
    const s0 = await expiresIn(60);
    assert.match(s0.refresh_token, /^akr_/);
    parseJson(await runCli(['--json', ...p, 'whoami']));
    const s1 = await read();
    assert.notEqual(s1.token, s0.token);
    assert.notEqual(s1.refresh_token, s0.refresh_token);
    assert.ok(s1.expires_at > Date.now() / 1000 + 3600);

    // Three processes at once, all finding it due: one renews, the others read what it saved.
    const s2 = await read();
    await expiresIn(30);
    const runs = await Promise.all([1, 2, 3].map(() => runCli(['--json', ...p, 'mint', 'oidc'])));
    for (const r of runs) assert.equal(r.code, 0, r.stderr);
    const s3 = await read();
    assert.notEqual(s3.refresh_token, s2.refresh_token);

    await expiresIn(-10);
    parseJson(await runCli(['--json', ...p, 'whoami']));
    assert.ok((await read()).expires_at > Date.now() / 1000 + 3600, 'an expired session renews while its refresh token lasts');
  });

  void test('errors name CLI commands and flags, not API routes and fields', async () => {
    const { path } = await keyFile();
    const p = ['--profile', 'words'];
    parseJson(await runCli(['--json', ...p, 'init', 'wallet', '--private-key-file', path]));
    const short = await runCli([...p, 'mint', 'aws', '--duration', '10']);
    assert.equal(short.code, 1);
    assert.match(short.stderr, /--duration/);
    assert.match(short.stderr, /agentkeys: --duration must be at least 900/);
    assert.doesNotMatch(short.stderr, /duration_seconds|\/v1\//);
    const revoke = await runCli([...p, 'grant', 'revoke', 'grt_nothere']);
    assert.equal(revoke.code, 1);
    assert.doesNotMatch(revoke.stderr, /\/v1\/|DELETE|grant_id/);
  });
});
