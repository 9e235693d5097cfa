/**
 * The `agentkeys` CLI where no broker is needed, run as a subprocess (bin/agentkeys.js): the
 * package (npm pack, what the tarball runs without node_modules), the cached credential_process
 * answer, which session store a login chooses (a real D-Bus daemon with and without a Secret
 * Service), status when the broker is not ready, --version, usage errors, keygen, configure aws,
 * shell completion.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { privateKeyToAccount } from 'viem/accounts';
import { chooseStore } from '../cli/session-store';
import { setCredentialProcess } from '../cli/commands/configure';
import { DEAD_BROKER_URL } from './support/dead-endpoint';
import { BIN, ROOT, buildCli, parseJson, runProcess, waitFor, type RunOptions } from './cli-client';

let home: string;
const deadUrl = DEAD_BROKER_URL;

before(async () => {
  buildCli();
  home = await mkdtemp(join(tmpdir(), 'akb-cli-local-'));
});
after(async () => {
  if (home) await rm(home, { recursive: true, force: true });
});

function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, HOME: home, ...extra };
}
function runCli(args: string[], opts: RunOptions = {}, bin = BIN) {
  return runProcess(process.execPath, [bin, ...args], env(opts.env), opts);
}

/** A profile logged in to `broker_url` with cached AWS credentials, as `init` and one `mint aws --credential-process` leave it. */
async function cachedProfile(profile: string, root = home): Promise<{ accessKeyId: string }> {
  const dir = join(root, '.agentkeys', profile);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const now = Math.floor(Date.now() / 1000);
  const base = { broker_url: deadUrl, method: 'wallet', omni_account: `0x${'cd'.repeat(32)}`, expires_at: now + 3600 };
  const accessKeyId = `ASIA${profile.toUpperCase().replace(/[^A-Z0-9]/g, '')}CACHED`;
  await writeFile(join(dir, 'profile.json'), JSON.stringify({ ...base, kind: 'file' }), { mode: 0o600 });
  const aws_cache = { key: '{}', access_key_id: accessKeyId, secret_access_key: 's'.repeat(40), session_token: 't'.repeat(100), expiration: now + 3600 };
  await writeFile(join(dir, 'session.json'), JSON.stringify({ ...base, token: 'not-a-real-token', aws_cache }), { mode: 0o600 });
  return { accessKeyId };
}

void describe('agentkeys CLI: the package', () => {
  void test('npm pack ships the built CLI only; unpacked without node_modules it answers --version, --help, keygen and a cached credential_process, the last without main.cjs', async () => {
    const dest = await mkdtemp(join(tmpdir(), 'akb-pack-'));
    try {
      const pack = spawnSync('npm', ['pack', '--json', '--pack-destination', dest], { cwd: ROOT, encoding: 'utf8' });
      assert.equal(pack.status, 0, pack.stderr);
      const [info] = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('['))) as { filename: string; files: { path: string }[] }[];
      const files = (info?.files ?? []).map((f) => f.path).sort();
      assert.ok(files.includes('bin/agentkeys.js') && files.includes('dist/cli/agentkeys.cjs') && files.includes('dist/cli/main.cjs'), files.join(' '));
      assert.ok(files.includes('dist/cli/vendor/viem-accounts.cjs'));
      assert.deepEqual(
        files.filter((f) => !/^(bin\/|dist\/cli\/|package\.json$|README\.md$|LICENSE)/.test(f)),
        [],
        'nothing but the CLI and the package files',
      );
      const untar = spawnSync('tar', ['-xzf', join(dest, info?.filename ?? ''), '-C', dest]);
      assert.equal(untar.status, 0);
      const bin = join(dest, 'package', 'bin', 'agentkeys.js');
      const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };

      const version = await runCli(['--version'], {}, bin);
      assert.equal(version.code, 0, version.stderr);
      assert.equal(version.stdout.trim(), pkg.version);
      const help = await runCli(['--help'], {}, bin);
      assert.equal(help.code, 0, help.stderr);
      assert.match(help.stdout, /^Usage: agentkeys/);
      const keyPath = join(dest, 'k.key');
      const keygen = parseJson(await runCli(['--json', 'keygen', keyPath], {}, bin));
      assert.equal(keygen.address, privateKeyToAccount((await readFile(keyPath, 'utf8')).trim() as `0x${string}`).address);

      const { accessKeyId } = await cachedProfile('packed');
      await rm(join(dest, 'package', 'dist', 'cli', 'main.cjs'));
      const cp = await runCli(['--profile', 'packed', 'mint', 'aws', '--credential-process'], {}, bin);
      assert.equal(cp.code, 0, cp.stderr);
      const out = JSON.parse(cp.stdout) as { Version: number; AccessKeyId: string; Expiration: string };
      assert.equal(out.Version, 1);
      assert.equal(out.AccessKeyId, accessKeyId);
      // Anything else needs the full CLI, which is gone here: proof that the answer above did not load it.
      const other = await runCli(['--profile', 'packed', 'mint', 'aws', '--credential-process', '--duration', '900'], {}, bin);
      assert.notEqual(other.code, 0);
      assert.match(other.stderr, /main\.cjs/);
    } finally {
      await rm(dest, { recursive: true, force: true });
    }
  });

  void test('without the bundle (AGENTKEYS_FROM_SOURCE=1) the same CLI runs from the TypeScript sources through tsx', async () => {
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const e = { env: { AGENTKEYS_FROM_SOURCE: '1' } };
    const version = await runCli(['--version'], e);
    assert.equal(version.stdout.trim(), pkg.version);
    const usage = await runCli(['mint'], e);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /agentkeys mint needs a subcommand/);
    const { accessKeyId } = await cachedProfile('from-source');
    const cp = await runCli(['--profile', 'from-source', 'mint', 'aws', '--credential-process'], e);
    assert.equal((JSON.parse(cp.stdout) as { AccessKeyId: string }).AccessKeyId, accessKeyId);
    const keyPath = join(home, 'from-source.key');
    const keygen = parseJson(await runCli(['--json', 'keygen', keyPath], e));
    assert.equal(keygen.private_key_file, keyPath);
  });

  void test('the cached answer respects the cache key and the session expiry: other flags or an expired session go to the broker', async () => {
    const { accessKeyId } = await cachedProfile('cache-key');
    const hit = await runCli(['mint', 'aws', '--credential-process'], { env: { AGENTKEYS_PROFILE: 'cache-key' } });
    assert.equal((JSON.parse(hit.stdout) as { AccessKeyId: string }).AccessKeyId, accessKeyId);
    const miss = await runCli(['--profile', 'cache-key', 'mint', 'aws', '--credential-process', '--grant-id', 'grt_x']);
    assert.equal(miss.code, 1);
    assert.match(miss.stderr, new RegExp(`cannot reach the broker at ${deadUrl}`));
    const record = join(home, '.agentkeys', 'cache-key', 'profile.json');
    const session = join(home, '.agentkeys', 'cache-key', 'session.json');
    for (const f of [record, session]) {
      const j = JSON.parse(await readFile(f, 'utf8')) as { expires_at: number };
      await writeFile(f, JSON.stringify({ ...j, expires_at: Math.floor(Date.now() / 1000) - 1 }));
    }
    const expired = await runCli(['--profile', 'cache-key', 'mint', 'aws', '--credential-process']);
    assert.equal(expired.code, 1);
    assert.match(expired.stderr, /expired .*run agentkeys init/);
  });
});

void describe('agentkeys CLI: the session store', () => {
  void test('chooseStore: the file unless a keychain answers or is asked for', () => {
    const none = () => false;
    const some = () => true;
    assert.deepEqual(chooseStore({}, 'linux', none), { kind: 'file' });
    assert.deepEqual(chooseStore({}, 'linux', some), { kind: 'keychain', keychain: 'secret-service' });
    assert.deepEqual(chooseStore({ AGENTKEYS_SESSION_STORE: 'keychain' }, 'linux', none), { kind: 'keychain', keychain: 'kernel-keyring' });
    assert.deepEqual(chooseStore({ AGENTKEYS_SESSION_STORE: 'file' }, 'darwin', some), { kind: 'file' });
    assert.deepEqual(chooseStore({}, 'darwin', none), { kind: 'keychain', keychain: 'macos-keychain' });
    assert.deepEqual(chooseStore({}, 'win32', none), { kind: 'keychain', keychain: 'windows-credential-manager' });
    assert.throws(() => chooseStore({ AGENTKEYS_SESSION_STORE: 'vault' }, 'linux', none), /must be "file" or "keychain"/);
  });

  /** A real session bus; `secrets` makes org.freedesktop.secrets activatable on it, as a desktop's keyring daemon is. */
  async function startBus(secrets: boolean): Promise<{ address: string; stop: () => void }> {
    const dir = await mkdtemp(join(tmpdir(), 'akb-dbus-'));
    await mkdir(join(dir, 'services'));
    await writeFile(
      join(dir, 'bus.conf'),
      `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:path=${dir}/bus</listen><servicedir>${dir}/services</servicedir>
<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/></policy></busconfig>`,
    );
    if (secrets) await writeFile(join(dir, 'services', 'org.freedesktop.secrets.service'), '[D-BUS Service]\nName=org.freedesktop.secrets\nExec=/bin/false\n');
    const child: ChildProcess = spawn('dbus-daemon', [`--config-file=${dir}/bus.conf`, '--nofork', '--print-address'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    const address = await waitFor('the bus address', () => (/^(unix:\S+)/m.exec(out) ? (/^(unix:\S+)/m.exec(out)?.[1] as string) : undefined), 10_000);
    return {
      address,
      stop: () => {
        child.kill();
        void rm(dir, { recursive: true, force: true });
      },
    };
  }

  async function storeOf(profile: string, extra: Record<string, string>): Promise<{ store: string; stored_in: string; code: number }> {
    const r = await runCli(['--json', '--profile', profile, '--broker-url', deadUrl, 'status'], { env: extra });
    assert.notEqual(r.stdout, '', `status printed nothing (exit ${r.code}): ${r.stderr}`);
    return { ...(JSON.parse(r.stdout) as { store: string; stored_in: string }), code: r.code };
  }

  void test('Linux without a Secret Service (no D-Bus, or a bus without one): the file; with one on the bus: the keychain; asked for: the keychain', async () => {
    const noBus = await storeOf('fresh', {});
    assert.equal(noBus.store, 'file');
    assert.match(noBus.stored_in, /^file .*\.agentkeys\/fresh\/session\.json$/);
    const plain = await startBus(false);
    try {
      assert.equal((await storeOf('fresh', { DBUS_SESSION_BUS_ADDRESS: plain.address })).store, 'file');
    } finally {
      plain.stop();
    }
    const desktop = await startBus(true);
    try {
      const s = await storeOf('fresh', { DBUS_SESSION_BUS_ADDRESS: desktop.address });
      assert.equal(s.store, 'keychain');
      assert.match(s.stored_in, /^Secret Service keyring \(service agentkeys, account fresh\)$/);
    } finally {
      desktop.stop();
    }
    const asked = await storeOf('fresh', { AGENTKEYS_SESSION_STORE: 'keychain' });
    assert.equal(asked.store, 'keychain');
    assert.match(asked.stored_in, /kernel keyring \(shared by all the user's processes, lost at reboot\)/);
  });

  void test('a logged-in profile keeps using the store its session is in, whatever a new login would pick', async () => {
    await cachedProfile('in-file');
    const desktop = await startBus(true);
    try {
      const s = await storeOf('in-file', { DBUS_SESSION_BUS_ADDRESS: desktop.address });
      assert.equal(s.store, 'file');
    } finally {
      desktop.stop();
    }
  });
});

void describe('agentkeys CLI: status, version, usage', () => {
  void test('status exits 1 when the broker is not reachable or not ready, and still shows the profile', async () => {
    const down = await runCli(['--json', '--profile', 'nobody', '--broker-url', deadUrl, 'status']);
    assert.equal(down.code, 1);
    const body = JSON.parse(down.stdout) as { reachable: boolean; ready: boolean; session: unknown };
    assert.equal(body.reachable, false);
    assert.equal(body.session, null);
    assert.match(down.stderr, /not ready/);
    const server: Server = createServer((req, res) => {
      res.writeHead(req.url === '/readyz' ? 503 : 404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: 'not_ready', checks: { postgres: 'down' } }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
      const notReady = await runCli(['--profile', 'nobody', '--broker-url', url, 'status']);
      assert.equal(notReady.code, 1);
      assert.match(notReady.stdout, /reachable, NOT ready/);
    } finally {
      server.close();
    }
  });

  void test('--version and -V print the package version; a command group without its subcommand, no command at all, or an unknown shell is usage: exit 2', async () => {
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) {
      const r = await runCli([flag]);
      assert.equal(r.code, 0);
      assert.equal(r.stdout.trim(), pkg.version);
    }
    for (const args of [['mint'], ['grant'], ['configure'], [], ['mint', 'gcp'], ['completion', 'tcsh']]) {
      const r = await runCli(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.equal(r.stdout, '');
    }
    assert.match((await runCli(['grant'])).stderr, /agentkeys grant needs a subcommand: add, list, accept/);
  });
});

void describe('agentkeys CLI: keygen, key files', () => {
  void test('keygen writes a 0600 key and prints its address; it never overwrites; a key file others can read gets a warning', async () => {
    const r = parseJson(await runCli(['--json', 'keygen']));
    const path = join(home, '.agentkeys', 'agent.key');
    assert.equal(r.private_key_file, path);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    const pk = (await readFile(path, 'utf8')).trim() as `0x${string}`;
    assert.equal(r.address, privateKeyToAccount(pk).address);
    const again = await runCli(['keygen']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /exists; keygen never overwrites/);
    assert.equal((await readFile(path, 'utf8')).trim(), pk, 'the key is unchanged');

    const shared = join(home, 'shared.key');
    await writeFile(shared, `${pk}\n`, { mode: 0o644 });
    const warned = await runCli(['--broker-url', deadUrl, 'init', 'wallet', '--private-key-file', shared]);
    assert.match(warned.stderr, /warning: the private key file .*shared\.key is readable by everyone \(mode 0644\): chmod 600/);
    assert.doesNotMatch(warned.stderr, new RegExp(pk.slice(2, 12)));
    const quiet = await runCli(['--broker-url', deadUrl, 'init', 'wallet', '--private-key-file', path]);
    assert.doesNotMatch(quiet.stderr, /warning/);
  });
});

void describe('agentkeys CLI: configure aws', () => {
  void test('writes the credential_process profile into AWS_CONFIG_FILE, shows the change, leaves other profiles alone, and a second run changes nothing', async () => {
    const config = join(home, 'aws', 'config');
    await mkdir(join(home, 'aws'));
    const other = '[default]\nregion = eu-west-1\n\n[profile work]\nregion = us-east-1\n';
    await writeFile(config, other, { mode: 0o600 });
    const e = { env: { AWS_CONFIG_FILE: config } };
    const first = await runCli(['configure', 'aws'], e);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /added to \[profile agentkeys\]\n\+ credential_process = .*agentkeys\.js mint aws --credential-process/);
    const text = await readFile(config, 'utf8');
    assert.ok(text.startsWith(other), 'the profiles there stay as they were');
    assert.match(text, /\n\[profile agentkeys\]\ncredential_process = \S+ \S+agentkeys\.js mint aws --credential-process\n$/);

    const second = parseJson(await runCli(['--json', 'configure', 'aws'], e));
    assert.equal(second.changed, false);
    assert.equal(await readFile(config, 'utf8'), text, 'idempotent');

    const named = parseJson(await runCli(['--json', '--profile', 'ci', 'configure', 'aws'], e));
    assert.equal(named.aws_profile, 'agentkeys-ci');
    assert.match(named.credential_process as string, / --profile ci mint aws --credential-process$/);

    const waiting = parseJson(await runCli(['--json', '--profile', 'ci', 'configure', 'aws', '--wait'], e));
    assert.equal(waiting.changed, true);
    assert.match(waiting.credential_process as string, / --profile ci mint aws --credential-process --wait$/);

    await writeFile(config, (await readFile(config, 'utf8')).replace(/(\[profile agentkeys\]\ncredential_process = ).*/, '$1old-command'));
    const updated = await runCli(['configure', 'aws'], e);
    assert.match(updated.stdout, /updated \[profile agentkeys\]\n- credential_process = old-command\n\+ credential_process = /);
    assert.doesNotMatch(await readFile(config, 'utf8'), /old-command/);
    assert.equal((await stat(config)).mode & 0o777, 0o600);
  });

  void test('setCredentialProcess: adds a section, adds the key to a section without it, replaces it, keeps CRLF-free text otherwise', () => {
    assert.equal(setCredentialProcess('', '[profile a]', 'x').text, '[profile a]\ncredential_process = x\n');
    assert.equal(setCredentialProcess('[profile a]\nregion = r\n[b]\n', '[profile a]', 'x').text, '[profile a]\ncredential_process = x\nregion = r\n[b]\n');
    const same = '[profile a]\ncredential_process = x\n';
    assert.deepEqual(setCredentialProcess(same, '[profile a]', 'x'), { text: same, previous: 'x', changed: false });
    assert.equal(setCredentialProcess('[ profile  a ]\ncredential_process=y\n', '[profile a]', 'x').text, '[ profile  a ]\ncredential_process = x\n');
  });
});

void describe('agentkeys CLI: shell completion', () => {
  void test('bash completes commands, subcommands and flags from the command tree; zsh and fish scripts name them too', async () => {
    const script = join(home, 'agentkeys.bash');
    const bash = await runCli(['completion', 'bash']);
    assert.equal(bash.code, 0, bash.stderr);
    await writeFile(script, bash.stdout);
    const complete = (words: string[]): string[] => {
      const r = spawnSync(
        'bash',
        ['-c', `source ${script}; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _agentkeys; echo "\${COMPREPLY[@]}"`],
        { encoding: 'utf8' },
      );
      assert.equal(r.status, 0, r.stderr);
      return r.stdout.trim().split(/\s+/).filter(Boolean).sort();
    };
    assert.deepEqual(complete(['agentkeys', 'mi']), ['mint']);
    assert.deepEqual(complete(['agentkeys', 'grant', 'a']), ['accept', 'add']);
    assert.deepEqual(complete(['agentkeys', '--profile', 'x', 'mint', 'aws', '--cr']), ['--credential-process']);
    assert.deepEqual(complete(['agentkeys', 'status', '--']), ['--all', '--help']);
    const zsh = await runCli(['completion', 'zsh']);
    assert.match(zsh.stdout, /^#compdef agentkeys\n/);
    assert.match(zsh.stdout, /bashcompinit/);
    const fish = await runCli(['completion', 'fish']);
    assert.match(fish.stdout, /complete -c agentkeys -f -n '__fish_use_subcommand' -a mint -d /);
    assert.match(fish.stdout, /'__fish_seen_subcommand_from mint; and __fish_seen_subcommand_from aws' -l credential-process/);
    assert.doesNotMatch(fish.stdout, /'__fish_seen_subcommand_from configure; and __fish_seen_subcommand_from aws' -l credential-process/);
  });
});
