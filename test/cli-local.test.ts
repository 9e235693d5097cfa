/**
 * The `agentkeys` CLI where no broker is needed, run as a subprocess (bin/agentkeys.js): the
 * package (npm pack, what the tarball runs without node_modules), the cached credential_process
 * answer, which session store a login chooses (a real D-Bus daemon with and without a Secret
 * Service), status when the broker is not ready, --version, usage errors, keygen, configure aws,
 * shell completion.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { lchown, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rename, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { recoverMessageAddress, recoverTypedDataAddress } from 'viem';
import { generatePrivateKey, privateKeyToAccount } from 'viem/accounts';
import { approvalRequestHash, approvalTypedData } from '../lib/approvals';
import { buildGrantAcceptanceMessage } from '../lib/grant-acceptance';
import { buildSiweMessage, SIWE_STATEMENT, type SiweFields } from '../lib/wallet-message';
import { deriveOmniAccount } from '../lib/omni';
import {
  assertLoginWritable,
  chooseStore,
  FileSessionStore,
  ForeignProfileError,
  KeychainSessionStore,
  openStore,
  saveLogin,
  type ProfileSession,
  type SessionStore,
} from '../cli/session-store';
import { setCredentialProcess } from '../cli/commands/configure';
import { writeTarget } from '../cli/write-file';
import { lockTiming, renewIfDue, withLock } from '../cli/renew';
import { inCliWords } from '../cli/broker-client';
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
async function cachedProfile(profile: string, root = home, cachedFor = 3600): Promise<{ accessKeyId: string }> {
  const dir = join(root, '.agentkeys', profile);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const now = Math.floor(Date.now() / 1000);
  const base = { broker_url: deadUrl, method: 'wallet', omni_account: `0x${'cd'.repeat(32)}`, expires_at: now + 3600 };
  const accessKeyId = `ASIA${profile.toUpperCase().replace(/[^A-Z0-9]/g, '')}CACHED`;
  await writeFile(join(dir, 'profile.json'), JSON.stringify({ ...base, kind: 'file' }), { mode: 0o600 });
  const aws_cache = { key: '{}', access_key_id: accessKeyId, secret_access_key: 's'.repeat(40), session_token: 't'.repeat(100), expiration: now + cachedFor };
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

  void test("from the sources, the tsconfig.json of the directory it runs in is not read: a repository's paths mapping commander or viem/accounts to its own code runs nothing", async () => {
    const repo = await mkdtemp(join(tmpdir(), 'akb-hostile-repo-'));
    try {
      const marker = join(repo, 'PLANTED-CODE-RAN');
      await writeFile(
        join(repo, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: { baseUrl: '.', paths: { commander: ['./planted.ts'], 'viem/accounts': ['./planted.ts'], 'viem/*': ['./planted.ts'] } },
        }),
      );
      await writeFile(join(repo, 'planted.ts'), `require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'ran');\nexport {};\n`);
      const run = (args: string[]) =>
        spawnSync(process.execPath, [BIN, ...args], { cwd: repo, env: env({ AGENTKEYS_FROM_SOURCE: '1' }), encoding: 'utf8', timeout: 120_000 });
      const help = run(['--help']);
      assert.equal(help.status, 0, help.stderr);
      assert.match(help.stdout, /^Usage: agentkeys/);
      const keygen = run(['--json', 'keygen', join(repo, 'k.key')]);
      assert.equal(keygen.status, 0, keygen.stderr);
      await assert.rejects(stat(marker), "the repository's code did not run");
    } finally {
      await rm(repo, { recursive: true, force: true });
    }
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
    // What to run names the profile: a bare `agentkeys init` would log in the default one.
    assert.match(expired.stderr, /expired .*run agentkeys init --profile cache-key\n$/);
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

/** A session as AgentKeys' own CLI stores it (agent-terrier c348357, agentkeys-types `Session`). */
const THEIR_SESSION = JSON.stringify({
  token: 'their-bearer',
  wallet: '0x1111111111111111111111111111111111111111',
  scope: null,
  created_at: 1,
  ttl_seconds: 3600,
});

void describe("agentkeys CLI: AgentKeys' own CLI's sessions under ~/.agentkeys", () => {
  void test('a directory holding its session.json, its keychain marker or its K11 files is no profile: status --all names it apart, every command on it refuses by name, and it is left byte for byte', async () => {
    const root = await mkdtemp(join(tmpdir(), 'akb-cli-foreign-'));
    try {
      const ak = join(root, '.agentkeys');
      // Its shapes: its Session in session.json; a .keyring_managed marker beside a keychain entry.
      const theirs = THEIR_SESSION;
      await mkdir(join(ak, 'master'), { recursive: true });
      await writeFile(join(ak, 'master', 'session.json'), theirs, { mode: 0o600 });
      await mkdir(join(ak, 'alice'), { recursive: true });
      await writeFile(join(ak, 'alice', '.keyring_managed'), '', { mode: 0o600 });
      // Its K11 credentials: ~/.agentkeys/k11/<omni>.json (agent-terrier crates/agentkeys-cli/src/k11.rs).
      const k11File = `0x${'cd'.repeat(32)}.json`;
      await mkdir(join(ak, 'k11'), { recursive: true });
      await writeFile(join(ak, 'k11', k11File), '{"k11":"theirs"}', { mode: 0o600 });
      await cachedProfile('mine', root);
      const run = (args: string[]) => runProcess(process.execPath, [BIN, ...args], { PATH: process.env.PATH, HOME: root, AGENTKEYS_SESSION_STORE: 'file' }, {});

      const all = await run(['--json', 'status', '--all']);
      const listed = JSON.parse(all.stdout) as { profiles: { profile: string }[]; other_sessions: string[] };
      assert.deepEqual(
        listed.profiles.map((p) => p.profile),
        ['mine'],
      );
      assert.deepEqual(listed.other_sessions, [join(ak, 'alice'), join(ak, 'k11'), join(ak, 'master')]);
      assert.match((await run(['status', '--all'])).stdout, /\.agentkeys\/master: another program's session.*left alone/);

      for (const profile of ['master', 'alice', 'k11']) {
        for (const args of [
          ['status'],
          ['logout'],
          ['mint', 'aws'],
          ['init', 'wallet', '--private-key-file', join(root, 'none.key'), '--broker-url', deadUrl],
        ]) {
          const r = await run(['--json', '--profile', profile, ...args]);
          assert.notEqual(r.code, 0, `${profile} ${args.join(' ')}`);
          assert.match(
            (JSON.parse(r.stdout) as { message: string }).message,
            /holds files this CLI did not write .*use another --profile/,
            `${profile} ${args.join(' ')}`,
          );
        }
      }
      assert.equal(await readFile(join(ak, 'master', 'session.json'), 'utf8'), theirs);
      // A profile of this CLI whose session file the other CLI then wrote (the same name given to both).
      await writeFile(join(ak, 'mine', 'session.json'), theirs, { mode: 0o600 });
      for (const args of [['mint', 'aws'], ['logout']]) {
        const r = await run(['--json', '--profile', 'mine', ...args]);
        assert.notEqual(r.code, 0, args.join(' '));
        assert.match((JSON.parse(r.stdout) as { message: string }).message, /holds files this CLI did not write/, args.join(' '));
      }
      assert.equal(await readFile(join(ak, 'mine', 'session.json'), 'utf8'), theirs);
      assert.deepEqual(await readdir(join(ak, 'master')), ['session.json']);
      assert.deepEqual(await readdir(join(ak, 'alice')), ['.keyring_managed']);
      assert.deepEqual(await readdir(join(ak, 'k11')), [k11File]);
      assert.equal(await readFile(join(ak, 'k11', k11File), 'utf8'), '{"k11":"theirs"}');
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  void test("init into a profile of this CLI whose session file AgentKeys' own CLI then wrote is refused by name before anything reaches the broker or the TEE, and writes nothing", async () => {
    const root = await mkdtemp(join(tmpdir(), 'akb-cli-foreign-init-'));
    // A broker that would log anyone in: without the refusal up front, a wallet login completes here and is refused only at the save.
    const requests: string[] = [];
    const server: Server = createServer((req, res) => {
      requests.push(`${req.method} ${req.url}`);
      req.resume();
      const now = Math.floor(Date.now() / 1000);
      const session = { token: 'minted', token_type: 'Bearer', expires_at: now + 3600, omni_account: `0x${'ab'.repeat(32)}`, user_id: 'u1' };
      const found = req.method === 'POST' && req.url === '/v1/session/wallet_login';
      res.writeHead(found ? 200 : 404, { 'content-type': 'application/json' });
      res.end(JSON.stringify(found ? session : { error: 'not_found' }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
      const dir = join(root, '.agentkeys', 'mine');
      await cachedProfile('mine', root);
      await writeFile(join(dir, 'session.json'), THEIR_SESSION, { mode: 0o600 });
      const before = new Map<string, string>();
      for (const f of await readdir(dir)) before.set(f, await readFile(join(dir, f), 'utf8'));
      const keyFile = join(root, 'wallet.key');
      await writeFile(keyFile, `${generatePrivateKey()}\n`, { mode: 0o600 });
      const run = (args: string[]) =>
        runProcess(process.execPath, [BIN, ...args], { PATH: process.env.PATH, HOME: root, AGENTKEYS_SESSION_STORE: 'file' }, { stdin: '123456\n' });

      for (const args of [
        ['init', 'wallet', '--private-key-file', keyFile],
        ['init', 'wallet', '--siwe', '--private-key-file', keyFile],
        ['init', 'email', 'someone@example.com', '--code-stdin'],
        ['init', 'google', '--no-browser'],
        ['init', 'device', '--no-qr'],
        ['init', 'tee', '--tee-url', url, '--private-key-file', keyFile],
        ['init'],
      ]) {
        const r = await run(['--json', '--profile', 'mine', '--broker-url', url, ...args]);
        assert.equal(r.code, 1, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
        const body = JSON.parse(r.stdout) as { error: string; message: string };
        assert.equal(body.error, 'ERR_CLI', args.join(' '));
        assert.equal(
          body.message,
          `${dir} holds files this CLI did not write (AgentKeys' own agentkeys CLI keeps its sessions and keys in ~/.agentkeys/<name>/ too); it is left alone: use another --profile (or AGENTKEYS_PROFILE)`,
        );
        assert.deepEqual(requests, [], `${args.join(' ')}: nothing reaches the broker`);
      }
      assert.deepEqual((await readdir(dir)).sort(), [...before.keys()].sort(), 'no file added');
      for (const [f, text] of before) assert.equal(await readFile(join(dir, f), 'utf8'), text, `${f} unchanged`);
    } finally {
      server.close();
      await rm(root, { recursive: true, force: true });
    }
  });
});

void describe("agentkeys CLI: AgentKeys' own CLI's sessions in the keychain and under a profile's name", () => {
  void test("a keychain entry or a session file of its shape is never read as this CLI's, replaced by a login, or removed when a login moves store", async () => {
    const theirs = THEIR_SESSION;
    // The keychain as @napi-rs/keyring's Entry presents it: one password per service and account.
    const entries = new Map<string, string>();
    class FakeEntry {
      constructor(
        private readonly service: string,
        private readonly account: string,
      ) {}
      getPassword() {
        return entries.get(`${this.service}/${this.account}`);
      }
      setPassword(p: string) {
        entries.set(`${this.service}/${this.account}`, p);
      }
      deletePassword() {
        return entries.delete(`${this.service}/${this.account}`);
      }
    }
    const keychain = new KeychainSessionStore(FakeEntry, 'secret-service');
    const now = Math.floor(Date.now() / 1000);
    const ours: ProfileSession = { token: 'ours', broker_url: deadUrl, method: 'wallet', omni_account: `0x${'cd'.repeat(32)}`, expires_at: now + 3600 };
    const home0 = process.env.HOME;
    const root = await mkdtemp(join(tmpdir(), 'akb-cli-foreign-store-'));
    process.env.HOME = root;
    try {
      entries.set('agentkeys/shared', theirs);
      await assert.rejects(keychain.load('shared'), ForeignProfileError);
      // init asks before logging in; the save asks again.
      await assert.rejects(assertLoginWritable('shared', keychain), ForeignProfileError);
      await assertLoginWritable('own', keychain);
      await assert.rejects(saveLogin('shared', keychain, ours, undefined), ForeignProfileError);
      assert.equal(entries.get('agentkeys/shared'), theirs, 'a login does not replace it');
      // A profile of this CLI that was in the keychain, logging in again into the file store: the entry now there is theirs and stays.
      await saveLogin('shared', new FileSessionStore(), ours, { broker_url: deadUrl, kind: 'keychain', keychain: 'secret-service' });
      assert.equal(entries.get('agentkeys/shared'), theirs, 'moving store does not remove it');
      // Their session file written over a profile of this CLI: a login into the file store refuses, and the file stays.
      const file = join(root, '.agentkeys', 'shared', 'session.json');
      await writeFile(file, theirs, { mode: 0o600 });
      await assert.rejects(saveLogin('shared', new FileSessionStore(), ours, undefined), ForeignProfileError);
      assert.equal(await readFile(file, 'utf8'), theirs);
      // This CLI's own keychain session is read and replaced as before.
      await saveLogin('own', keychain, ours, undefined);
      assert.equal((await keychain.load('own'))?.token, 'ours');
    } finally {
      process.env.HOME = home0;
      await rm(root, { recursive: true, force: true });
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
    assert.match(down.stderr, /^agentkeys: the broker at \S+ is not reachable: is it running\? Set --broker-url or AGENTKEYS_BROKER_URL\n$/);
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

  void test("--json: commander's own usage errors (unknown option, missing argument, no command) are one JSON document on stdout too, exit 2; without --json only stderr", async () => {
    for (const [args, message] of [
      [['--json', 'whoami', '--bogus'], /^unknown option '--bogus'/],
      [['whoami', '--json', '--bogus'], /^unknown option '--bogus'/],
      [['--json', 'grant', 'revoke'], /^missing required argument 'grant-id'/],
      [['--json', '--profile', 'x'], /^name a command/],
      [['--json', 'mint'], /^agentkeys mint needs a subcommand/],
    ] as const) {
      const r = await runCli([...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      const body = JSON.parse(r.stdout) as { error: string; message: string };
      assert.deepEqual(Object.keys(body), ['error', 'message']);
      assert.equal(body.error, 'ERR_CLI_USAGE');
      assert.match(body.message, message);
      assert.notEqual(r.stderr, '', 'the text for people stays on stderr');
    }
    const plain = await runCli(['whoami', '--bogus']);
    assert.equal(plain.code, 2);
    assert.equal(plain.stdout, '');
    assert.match(plain.stderr, /^error: unknown option '--bogus'/);
    // A subcommand's usage error points at that subcommand's help, as the program's own does.
    assert.match((await runCli(['mint', 'aws', '--bogus'])).stderr, /^error: unknown option '--bogus'\n\(agentkeys mint aws --help for usage\)\n$/);
    const noCommand = await runCli(['--profile', 'x']);
    assert.equal(noCommand.code, 2, 'global options without a command are usage, as no arguments at all are');
    assert.equal(noCommand.stdout, '');
    assert.match(noCommand.stderr, /^Usage: agentkeys/);
    // --help and help still succeed, with or without --json.
    for (const args of [
      ['--json', '--help'],
      ['--json', 'help'],
      ['help', 'mint'],
    ]) {
      const r = await runCli(args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stdout, /^Usage: agentkeys/);
    }
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

  /**
   * Runs `agentkeys …` as a process whose pid is known up front: the shell plants `plant "$$"`
   * (the pid), then execs node in its own place, so the CLI runs with that pid.
   */
  function runWithPid(args: string[], plant: string, extra: Record<string, string>) {
    return runProcess('sh', ['-c', `${plant} && exec "$NODE" "$BIN" "$@"`, 'sh', ...args], env({ NODE: process.execPath, BIN, ...extra }), {});
  }

  void test('configure aws and gcp write through a new temporary file: a symlink planted at the old pid-named temp name, and files beside, are left untouched', async () => {
    const dir = join(home, 'planted');
    await mkdir(dir);
    const victim = join(home, 'victim.txt');
    await writeFile(victim, 'precious\n', { mode: 0o600 });
    const config = join(dir, 'config');
    await writeFile(config, '[default]\nregion = eu-west-1\n', { mode: 0o644 });
    const bystanders = [join(dir, 'config.tmp'), join(dir, '.config.0123456789abcdef01234567.tmp')];
    for (const f of bystanders) await writeFile(f, 'someone else\n');
    const aws = await runWithPid(['configure', 'aws'], 'ln -s "$VICTIM" "$AWS_CONFIG_FILE.$$.tmp"', { VICTIM: victim, AWS_CONFIG_FILE: config });
    assert.equal(aws.code, 0, aws.stderr);
    assert.equal(await readFile(victim, 'utf8'), 'precious\n', 'the link target is not written');
    const links = (await readdir(dir)).filter((f) => /^config\.\d+\.tmp$/.test(f));
    assert.equal(links.length, 1, 'the planted link is still there');
    assert.equal(await readlink(join(dir, links[0] as string)), victim);
    for (const f of bystanders) assert.equal(await readFile(f, 'utf8'), 'someone else\n');
    assert.ok((await lstat(config)).isFile(), 'the config is a file, not the planted link moved over it');
    assert.match(await readFile(config, 'utf8'), /^\[default\]\nregion = eu-west-1\n\n\[profile agentkeys\]\ncredential_process = /);
    assert.equal((await stat(config)).mode & 0o777, 0o644, 'the mode the file had');
    assert.deepEqual(
      (await readdir(dir)).filter((f) => f.endsWith('.tmp')).sort(),
      [...bystanders.map((f) => f.slice(dir.length + 1)), links[0]].sort(),
      'no temporary file left behind',
    );

    const output = join(dir, 'gcp.json');
    const gcp = await runWithPid(
      ['configure', 'gcp', '--audience', '//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x', '--output', output],
      'ln -s "$VICTIM" "$OUT.$$.tmp"',
      {
        VICTIM: victim,
        OUT: output,
      },
    );
    assert.equal(gcp.code, 0, gcp.stderr);
    assert.match(gcp.stdout, /--attribute-condition="assertion\.agentkeys_user_wallet == /, 'the reminder that the provider must admit only this account');
    assert.equal(await readFile(victim, 'utf8'), 'precious\n');
    assert.equal((JSON.parse(await readFile(output, 'utf8')) as { type: string }).type, 'external_account');
    assert.ok((await lstat(output)).isFile());
    assert.equal((await stat(output)).mode & 0o777, 0o600);
  });

  void test('configure aws and gcp on a file that is a symbolic link: the link stays, the file it points to gets the change', async () => {
    const dotfiles = join(home, 'dotfiles');
    const dir = join(home, 'linked');
    await mkdir(dotfiles);
    await mkdir(dir);
    const real = join(dotfiles, 'aws-config');
    await writeFile(real, '[profile work]\nregion = us-east-1\n', { mode: 0o600 });
    const config = join(dir, 'config');
    await symlink(real, config);
    const r = await runCli(['configure', 'aws'], { env: { AWS_CONFIG_FILE: config } });
    assert.equal(r.code, 0, r.stderr);
    assert.ok((await lstat(config)).isSymbolicLink(), 'still a link');
    assert.equal(await readlink(config), real);
    assert.match(await readFile(real, 'utf8'), /^\[profile work\]\nregion = us-east-1\n\n\[profile agentkeys\]\ncredential_process = /);
    assert.deepEqual((await readdir(dotfiles)).sort(), ['aws-config'], 'nothing left beside the target');

    const realGcp = join(dotfiles, 'gcp.json');
    await writeFile(realGcp, '{}\n', { mode: 0o600 });
    const output = join(dir, 'gcp.json');
    await symlink(realGcp, output);
    const g = await runCli([
      'configure',
      'gcp',
      '--audience',
      '//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x',
      '--output',
      output,
    ]);
    assert.equal(g.code, 0, g.stderr);
    assert.ok((await lstat(output)).isSymbolicLink());
    assert.equal((JSON.parse(await readFile(realGcp, 'utf8')) as { type: string }).type, 'external_account');

    const dangling = join(dir, 'dangling');
    await symlink(join(dotfiles, 'missing'), dangling);
    const refused = await runCli(['configure', 'aws'], { env: { AWS_CONFIG_FILE: dangling } });
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /is a symbolic link to a file that cannot be reached/);
  });

  void test('a chain of symbolic links with one another user owns is not written through (a link planted in /tmp at the wallet key)', async () => {
    const dir = await mkdtemp(join(home, 'planted-link-'));
    const key = join(dir, 'agent.key');
    await writeFile(key, 'precious\n', { mode: 0o600 });
    const own = process.getuid?.() ?? 0;
    // Another user's link (this test runs as root, which may give a link away; uid 4242 owns no file here).
    const planted = join(dir, 'planted.json');
    await symlink(key, planted);
    await lchown(planted, 4242, 4242);
    await assert.rejects(writeTarget(planted, own), /planted\.json is a symbolic link owned by another user \(uid 4242\): not written through/);
    // The first link is this user's; the one it leads to is not.
    const mine = join(dir, 'gcp.json');
    await symlink(planted, mine);
    await assert.rejects(writeTarget(mine, own), /gcp\.json leads through .*planted\.json, which is a symbolic link owned by another user \(uid 4242\)/);
    // This user's own chain (two hops, one relative) ends at the file; a path that is no link is itself.
    const hop = join(dir, 'hop.json');
    await symlink('agent.key', hop);
    const chain = join(dir, 'chain.json');
    await symlink(hop, chain);
    assert.equal(await writeTarget(chain, own), key);
    assert.equal(await writeTarget(join(dir, 'absent.json'), own), join(dir, 'absent.json'));
    const loop = join(dir, 'loop.json');
    await symlink(loop, loop);
    await assert.rejects(writeTarget(loop, own), /is a chain of more than 40 symbolic links/);
    assert.equal(await readFile(key, 'utf8'), 'precious\n');
  });

  void test('setCredentialProcess: adds a section, adds the key to a section without it, replaces it, keeps CRLF-free text otherwise', () => {
    assert.equal(setCredentialProcess('', '[profile a]', 'x').text, '[profile a]\ncredential_process = x\n');
    assert.equal(setCredentialProcess('[profile a]\nregion = r\n[b]\n', '[profile a]', 'x').text, '[profile a]\ncredential_process = x\nregion = r\n[b]\n');
    const same = '[profile a]\ncredential_process = x\n';
    assert.deepEqual(setCredentialProcess(same, '[profile a]', 'x'), { text: same, previous: 'x', changed: false });
    assert.equal(setCredentialProcess('[ profile  a ]\ncredential_process=y\n', '[profile a]', 'x').text, '[ profile  a ]\ncredential_process = x\n');
  });

  void test('setCredentialProcess: a header with a comment after it is that section (a second one would make botocore refuse the whole file)', () => {
    for (const header of ['[profile a] ; mine', '[profile a];mine', '[profile a]  # set up by hand', '  [ profile a ]\t;']) {
      assert.equal(
        setCredentialProcess(`${header}\nregion = r\n\n[b]\n`, '[profile a]', 'x').text,
        `${header}\ncredential_process = x\nregion = r\n\n[b]\n`,
        header,
      );
      const replaced = setCredentialProcess(`${header}\ncredential_process = y\n`, '[profile a]', 'x');
      assert.deepEqual(replaced, { text: `${header}\ncredential_process = x\n`, previous: 'y', changed: true }, header);
    }
    // Another section whose name starts the same, or text after the bracket that is no comment: not this one.
    assert.equal(setCredentialProcess('[profile ab] ; mine\n', '[profile a]', 'x').text, '[profile ab] ; mine\n\n[profile a]\ncredential_process = x\n');
    assert.equal(setCredentialProcess('[profile a]x\n', '[profile a]', 'x').text, '[profile a]x\n\n[profile a]\ncredential_process = x\n');
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

type Answer = { status: number; body?: unknown; headers?: Record<string, string> };
type Route = (body: Record<string, string>) => Answer | Promise<Answer>;

/** A loopback stand-in of the broker: each route answered by the test (which may hold an answer back); anything else 404. */
async function brokerStandIn(routes: Record<string, Route>, host = '127.0.0.1'): Promise<{ url: string; seen: string[]; close: () => Promise<void> }> {
  const seen: string[] = [];
  const server: Server = createServer((req, res) => {
    let raw = '';
    req.on('data', (d: Buffer) => (raw += d.toString()));
    req.on('end', () => {
      const key = `${req.method} ${req.url}`;
      seen.push(key);
      const route = routes[key];
      void Promise.resolve(
        route ? route(raw ? (JSON.parse(raw) as Record<string, string>) : {}) : { status: 404, body: { error: 'not_found', message: key } },
      ).then((a: Answer) => {
        res.writeHead(a.status, { ...(a.body === undefined ? {} : { 'content-type': 'application/json' }), ...a.headers });
        res.end(a.body === undefined ? '' : JSON.stringify(a.body));
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  return {
    url: `http://${host}:${(server.address() as { port: number }).port}`,
    seen,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

const OMNI = `0x${'ab'.repeat(32)}`;
const nowSeconds = () => Math.floor(Date.now() / 1000);

/** A profile logged in at `brokerUrl` (as `init` leaves it, with its refresh token); answers the session file's path. */
async function loggedIn(profile: string, brokerUrl: string): Promise<string> {
  const dir = join(home, '.agentkeys', profile);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const base = {
    broker_url: brokerUrl,
    method: 'wallet',
    omni_account: OMNI,
    identity: { type: 'evm', value: `0x${'11'.repeat(20)}` },
    expires_at: nowSeconds() + 3600,
  };
  await writeFile(join(dir, 'profile.json'), JSON.stringify({ ...base, kind: 'file', renews_until: nowSeconds() + 86400 }), { mode: 0o600 });
  const file = join(dir, 'session.json');
  await writeFile(file, JSON.stringify({ ...base, token: 'tok_0', refresh_token: 'akr_0', refresh_expires_at: nowSeconds() + 86400 }), { mode: 0o600 });
  return file;
}

/** A mint route that answers only when released, and tells when the request has arrived. */
function heldMint() {
  let arrived!: () => void;
  let release!: () => void;
  const arrival = new Promise<void>((r) => (arrived = r));
  const released = new Promise<void>((r) => (release = r));
  const creds = {
    access_key_id: 'ASIAHELDMINTAAAAAAAA',
    secret_access_key: 's'.repeat(40),
    session_token: 't'.repeat(64),
    expiration: nowSeconds() + 3600,
    wallet: '0x11',
  };
  const route: Route = async () => {
    arrived();
    await released;
    return { status: 200, body: creds };
  };
  return { route, arrival, release, creds };
}

void describe('agentkeys CLI: mint aws --credential-process while another process renews or logs out', () => {
  void test('a renewal during the mint: the cache goes into the renewed session, its refresh token stays the live one, and the next renewal works', async () => {
    // Refresh tokens as the broker treats them: each accepted once; a spent one ends the login.
    let live = 'akr_0';
    let n = 0;
    let revoked = false;
    const spent = new Set<string>();
    const mint = heldMint();
    const broker = await brokerStandIn({
      'POST /v1/session/refresh': ({ refresh_token }) => {
        if (refresh_token && spent.has(refresh_token)) revoked = true;
        if (revoked || refresh_token !== live)
          return { status: 401, body: { error: 'unauthorized', message: 'this refresh token was already used: its family and sessions are revoked' } };
        spent.add(live);
        live = `akr_${++n}`;
        return {
          status: 200,
          body: {
            token: `tok_${n}`,
            token_type: 'Bearer',
            expires_at: nowSeconds() + 43200,
            omni_account: OMNI,
            refresh_token: live,
            refresh_expires_at: nowSeconds() + 86400,
          },
        };
      },
      'POST /v1/mint-aws-creds': mint.route,
    });
    try {
      const file = await loggedIn('race-renew', broker.url);
      type Stored = { token: string; refresh_token: string; expires_at: number; aws_cache?: { access_key_id: string } };
      const read = async () => JSON.parse(await readFile(file, 'utf8')) as Stored;
      const dueSoon = async () => writeFile(file, JSON.stringify({ ...(await read()), expires_at: nowSeconds() + 60 }), { mode: 0o600 });
      const p = ['--profile', 'race-renew'];

      const minting = runCli([...p, 'mint', 'aws', '--credential-process']);
      await mint.arrival;
      // Meanwhile another agentkeys process finds the session due and renews it.
      await dueSoon();
      const other = await runCli([...p, 'token']);
      assert.equal(other.code, 0, other.stderr);
      assert.equal(other.stdout, 'tok_1\n');
      mint.release();
      const done = await minting;
      assert.equal(done.code, 0, done.stderr);
      assert.equal((JSON.parse(done.stdout) as { AccessKeyId: string }).AccessKeyId, mint.creds.access_key_id);

      const after = await read();
      assert.equal(after.refresh_token, 'akr_1', 'the renewed refresh token, not the spent one the mint started with');
      assert.equal(after.token, 'tok_1');
      assert.equal(after.aws_cache?.access_key_id, mint.creds.access_key_id, 'the credentials are cached in it');
      // The login lives on: the next renewal presents the live token.
      await dueSoon();
      const next = await runCli([...p, 'token']);
      assert.equal(next.code, 0, next.stderr);
      assert.equal(next.stdout, 'tok_2\n');
      assert.equal(revoked, false);
    } finally {
      await broker.close();
    }
  });

  void test('a logout during the mint: the credentials are printed, and no session comes back', async () => {
    const mint = heldMint();
    const broker = await brokerStandIn({
      'POST /v1/session/logout': () => ({ status: 204 }),
      'POST /v1/mint-aws-creds': mint.route,
      'GET /readyz': () => ({ status: 200, body: { status: 'ready' } }),
    });
    try {
      const file = await loggedIn('race-logout', broker.url);
      const p = ['--profile', 'race-logout'];
      const minting = runCli([...p, 'mint', 'aws', '--credential-process']);
      await mint.arrival;
      const out = await runCli([...p, 'logout']);
      assert.equal(out.code, 0, out.stderr);
      await assert.rejects(stat(file), { code: 'ENOENT' });
      mint.release();
      const done = await minting;
      assert.equal(done.code, 0, done.stderr);
      assert.equal((JSON.parse(done.stdout) as { AccessKeyId: string }).AccessKeyId, mint.creds.access_key_id);
      await assert.rejects(stat(file), { code: 'ENOENT' }, 'the mint does not bring back the session logout removed');
      const st = parseJson(await runCli(['--json', ...p, 'status']));
      assert.equal(st.session, null, 'still logged out');
      assert.deepEqual(broker.seen, ['POST /v1/mint-aws-creds', 'POST /v1/session/logout', 'GET /readyz']);
    } finally {
      await broker.close();
    }
  });

  void test('a logout during a renewal: it waits for the renewal, logs out the renewed session, and no session comes back', async () => {
    let arrived!: () => void;
    let release!: () => void;
    const arrival = new Promise<void>((r) => (arrived = r));
    const released = new Promise<void>((r) => (release = r));
    let refreshAnswered = false;
    let logoutAfterRefresh: boolean | undefined;
    const broker = await brokerStandIn({
      'POST /v1/session/refresh': async () => {
        arrived();
        await released;
        refreshAnswered = true;
        return {
          status: 200,
          body: {
            token: 'tok_1',
            token_type: 'Bearer',
            expires_at: nowSeconds() + 43200,
            omni_account: OMNI,
            refresh_token: 'akr_1',
            refresh_expires_at: nowSeconds() + 86400,
          },
        };
      },
      'POST /v1/session/logout': () => {
        logoutAfterRefresh = refreshAnswered;
        return { status: 204 };
      },
    });
    try {
      const file = await loggedIn('race-logout-renew', broker.url);
      await writeFile(file, JSON.stringify({ ...(JSON.parse(await readFile(file, 'utf8')) as object), expires_at: nowSeconds() + 60 }), { mode: 0o600 });
      const p = ['--profile', 'race-logout-renew'];
      const renewing = runCli([...p, 'token']);
      await arrival;
      const loggingOut = runCli([...p, 'logout']);
      // The logout waits on the renewal's lock; let it try for a moment before the renewal answers.
      await new Promise((r) => setTimeout(r, 300));
      release();
      const [renewed, out] = await Promise.all([renewing, loggingOut]);
      assert.equal(renewed.code, 0, renewed.stderr);
      assert.equal(out.code, 0, out.stderr);
      assert.equal(logoutAfterRefresh, true, 'the logout went out while the renewal was still in flight');
      await assert.rejects(stat(file), { code: 'ENOENT' }, 'the renewal brought back the session logout removed');
    } finally {
      await broker.close();
    }
  });
});

/** Control characters other than the newline, and the Unicode direction controls: none may reach a terminal raw. */
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

void describe('agentkeys CLI: text from the broker in human output', () => {
  void test('approvals, approve and deny show control characters and direction overrides in reasons, targets, services, addresses and errors escaped; --json keeps the text', async () => {
    const reason = 'ship it\r\x1b[1A\x1b[2K  asks     mint oidc\u202egnp.exe\x9b31m\x7f\u2066';
    const at = nowSeconds();
    const main = privateKeyToAccount(`0x${'42'.repeat(32)}`);
    let host = '';
    const approval = (id: string) => {
      const fields = {
        approval_id: id,
        grant_id: 'grt_\x1b[31mx',
        main_address: main.address.toLowerCase(),
        agent_address: '0x2222222222222222222222222222222222222222\x1b]0;title\x07',
        target: 'aws\x1b[8m',
        params: { duration_seconds: 900, 'k\x1bx': 'v\r' },
        scope: { services: ['s3\u202e'], roles: ['r\x00'] },
        reason,
        requested_at: at,
        expires_at: at + 600,
      };
      const hash = approvalRequestHash(fields);
      return {
        ...fields,
        status: 'pending',
        request_hash: hash,
        sign: { approve: approvalTypedData(host, id, hash, 'approve'), deny: approvalTypedData(host, id, hash, 'deny') },
      };
    };
    const A = `apr_${'a'.repeat(32)}`;
    const B = `apr_${'b'.repeat(32)}`;
    const broker = await brokerStandIn({
      'GET /v1/approvals?role=owner': () => ({ status: 200, body: { approvals: [approval(A)] } }),
      [`GET /v1/approvals/${A}`]: () => ({ status: 200, body: approval(A) }),
      [`POST /v1/approvals/${A}/decision`]: () => ({ status: 200, body: { status: 'approved', decided_at: nowSeconds() } }),
      [`GET /v1/approvals/${B}`]: () => ({ status: 200, body: approval(B) }),
      [`POST /v1/approvals/${B}/decision`]: () => ({ status: 409, body: { error: 'conflict', message: 'already decided\x1b[2K\r by \u202eenon' } }),
    });
    host = new URL(broker.url).host;
    try {
      await loggedIn('escapes', broker.url);
      const p = ['--profile', 'escapes'];
      const shownReason = String.raw`ship it\r\x1b[1A\x1b[2K  asks     mint oidc\u202egnp.exe\x9b31m\x7f\u2066`;

      const listed = await runCli([...p, 'approvals']);
      assert.equal(listed.code, 0, listed.stderr);
      assert.doesNotMatch(listed.stdout, RAW_CONTROL);
      assert.ok(listed.stdout.includes(`  reason   ${shownReason}\n`), listed.stdout);
      assert.ok(listed.stdout.includes(String.raw`  asks     aws\x1b[8m duration_seconds=900 k\x1bx=v\r  services s3\u202e  roles r\x00`), listed.stdout);
      assert.ok(listed.stdout.includes(String.raw`0x2222222222222222222222222222222222222222\x1b]0;title\x07 (grant grt_\x1b[31mx)`), listed.stdout);
      const json = parseJson(await runCli(['--json', ...p, 'approvals'])) as { approvals: { reason: string; target: string }[] };
      assert.equal(json.approvals[0]?.reason, reason, '--json carries the text as it is (JSON escapes it)');
      assert.equal(json.approvals[0]?.target, 'aws\x1b[8m');

      const bySession = await runCli([...p, 'approve', A, '--yes']);
      assert.equal(bySession.code, 0, bySession.stderr);
      assert.doesNotMatch(bySession.stderr, RAW_CONTROL);
      assert.ok(bySession.stderr.includes(`  reason   ${shownReason}\n`), bySession.stderr);
      assert.equal(bySession.stdout, `Approved ${A}.\n`);

      const key = join(home, 'escapes.key');
      await writeFile(key, `0x${'42'.repeat(32)}\n`, { mode: 0o600 });
      const signed = await runCli([...p, 'approve', A, '--private-key-file', key, '--yes']);
      assert.equal(signed.code, 0, signed.stderr);
      assert.doesNotMatch(signed.stderr, RAW_CONTROL);
      assert.ok(signed.stderr.includes(`  reason   ${shownReason}\n`), signed.stderr);
      assert.ok(signed.stderr.includes(`"approvalId": "${A}"`), signed.stderr);

      const refused = await runCli([...p, 'deny', B, '--yes']);
      assert.equal(refused.code, 1);
      assert.doesNotMatch(refused.stderr, RAW_CONTROL);
      assert.match(refused.stderr, /agentkeys: already decided\\x1b\[2K\\r by \\u202eenon \(conflict, HTTP 409\)\n$/);
    } finally {
      await broker.close();
    }
  });
});

void describe('agentkeys CLI: what a wallet signs is built here, never taken from the broker', () => {
  const main = privateKeyToAccount(`0x${'43'.repeat(32)}`);
  const agent = privateKeyToAccount(`0x${'44'.repeat(32)}`);
  const at = nowSeconds();
  const writeKey = async (name: string, hex: string) => {
    const file = join(home, name);
    await writeFile(file, `${hex}\n`, { mode: 0o600 });
    return file;
  };
  // A token permit: what a hostile broker (or a plain-http path to one) would have the main wallet sign.
  const permit = {
    domain: { name: 'USD Coin', version: '2', chainId: 1, verifyingContract: '0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48' },
    types: {
      Permit: [
        { name: 'owner', type: 'address' },
        { name: 'spender', type: 'address' },
        { name: 'value', type: 'uint256' },
        { name: 'nonce', type: 'uint256' },
        { name: 'deadline', type: 'uint256' },
      ],
    },
    primaryType: 'Permit',
    message: { owner: main.address, spender: `0x${'66'.repeat(20)}`, value: (2n ** 256n - 1n).toString(), nonce: '0', deadline: String(at + 3600) },
  };

  void test('approve: typed data other than this request at this broker, or a request_hash that is not the hash of the request shown, is refused and nothing is posted', async () => {
    const id = `apr_${'c'.repeat(32)}`;
    let host = '';
    const fields = {
      approval_id: id,
      grant_id: `grt_${'d'.repeat(32)}`,
      main_address: main.address.toLowerCase(),
      agent_address: agent.address.toLowerCase(),
      target: 'aws',
      params: { duration_seconds: 900 },
      scope: {},
      reason: null,
      requested_at: at,
      expires_at: at + 600,
    };
    let variant: 'permit' | 'other-host' | 'wrong-hash' | 'good' = 'permit';
    const view = () => {
      const hash = approvalRequestHash(fields);
      const typed = (d: 'approve' | 'deny') =>
        variant === 'permit' ? permit : approvalTypedData(variant === 'other-host' ? 'broker.example' : host, id, hash, d);
      return {
        ...fields,
        status: 'pending',
        request_hash: variant === 'wrong-hash' ? `0x${'00'.repeat(32)}` : hash,
        sign: { approve: typed('approve'), deny: typed('deny') },
      };
    };
    const posted: string[] = [];
    const broker = await brokerStandIn({
      [`GET /v1/approvals/${id}`]: () => ({ status: 200, body: view() }),
      [`POST /v1/approvals/${id}/decision`]: (b) => (posted.push(b.signature ?? ''), { status: 200, body: { status: 'approved', decided_at: nowSeconds() } }),
    });
    host = new URL(broker.url).host;
    try {
      await loggedIn('sign-approve', broker.url);
      const key = await writeKey('sign-approve.key', `0x${'43'.repeat(32)}`);
      for (const [v, message] of [
        ['permit', /asks for a signature over other typed data than approval .* nothing signed/],
        ['other-host', /asks for a signature over other typed data than approval .* nothing signed/],
        ['wrong-hash', /request_hash for .* is not the hash of the request it shows; nothing signed/],
      ] as const) {
        variant = v;
        const r = await runCli(['--profile', 'sign-approve', 'approve', id, '--private-key-file', key, '--yes']);
        assert.equal(r.code, 1, `${v}: ${r.stderr}`);
        assert.match(r.stderr, message, v);
        assert.deepEqual(posted, [], `${v}: no decision was posted`);
      }
      // A broker reached under another name than its public URL's: signed when that host is given.
      variant = 'other-host';
      const tunnel = await runCli(['--profile', 'sign-approve', 'approve', id, '--private-key-file', key, '--yes', '--broker-host', 'broker.example']);
      assert.equal(tunnel.code, 0, tunnel.stderr);
      assert.equal(posted.length, 1);
      const viaTunnel = await recoverTypedDataAddress({
        ...approvalTypedData('broker.example', id, approvalRequestHash(fields), 'approve'),
        signature: posted[0] as `0x${string}`,
      });
      assert.equal(viaTunnel, main.address);
      posted.length = 0;
      const badHost = await runCli(['--profile', 'sign-approve', 'approve', id, '--private-key-file', key, '--yes', '--broker-host', 'broker.example/x']);
      assert.equal(badHost.code, 2, badHost.stderr);
      assert.deepEqual(posted, []);
      // The request as the broker really builds it: signed, and the signature is the main wallet's over it.
      variant = 'good';
      const ok = await runCli(['--profile', 'sign-approve', 'approve', id, '--private-key-file', key, '--yes']);
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(posted.length, 1);
      const signer = await recoverTypedDataAddress({
        ...approvalTypedData(host, id, approvalRequestHash(fields), 'approve'),
        signature: (posted as string[])[0] as `0x${string}`,
      });
      assert.equal(signer, main.address);
    } finally {
      await broker.close();
    }
  });

  void test('grant accept: text other than the acceptance of this grant at this broker (a sign-in message, say) is refused and nothing is posted', async () => {
    const id = `grt_${'e'.repeat(32)}`;
    let host = '';
    const grant = {
      grant_id: id,
      main_address: main.address.toLowerCase(),
      agent_address: agent.address.toLowerCase(),
      scope: { services: ['s3'] },
      expires_at: at + 86_400,
    };
    let text = '';
    const posted: string[] = [];
    const broker = await brokerStandIn({
      'GET /v1/grants?role=agent': () => ({ status: 200, body: { grants: [{ ...grant, status: 'pending', acceptance_message: text }] } }),
      [`POST /v1/grants/${id}/accept`]: (b) => (posted.push(b.signature ?? ''), { status: 200, body: { ...grant, status: 'active' } }),
    });
    host = new URL(broker.url).host;
    const real = () =>
      buildGrantAcceptanceMessage({
        broker: host,
        grantId: id,
        mainAddress: grant.main_address,
        agentAddress: grant.agent_address,
        scope: grant.scope,
        expiresAt: grant.expires_at,
      });
    try {
      await loggedIn('sign-accept', broker.url);
      const key = await writeKey('sign-accept.key', `0x${'44'.repeat(32)}`);
      for (const hostile of [
        `app.example wants you to sign in with your Ethereum account:\n${agent.address}\n\nURI: https://app.example\nVersion: 1\nChain ID: 1\nNonce: abcdefgh12\nIssued At: 2026-12-07T00:00:00Z`,
        real().replace('Services: s3', 'Services: any'),
        real().replace(`Broker: ${host}`, 'Broker: broker.example'),
      ]) {
        text = hostile;
        const r = await runCli(['--profile', 'sign-accept', 'grant', 'accept', id, '--private-key-file', key, '--yes']);
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, /asks the agent wallet to sign other text than the acceptance of grant .* nothing signed/);
        assert.deepEqual(posted, [], 'nothing was posted');
      }
      // The text names the broker's public host, reached here under another name: it names that host when refused, and is signed when it is given.
      text = real().replace(`Broker: ${host}`, 'Broker: broker.example');
      const named = await runCli(['--profile', 'sign-accept', 'grant', 'accept', id, '--private-key-file', key, '--yes']);
      assert.match(named.stderr, /pass that host as --broker-host \(the text names broker\.example\)/);
      const tunnel = await runCli(['--profile', 'sign-accept', 'grant', 'accept', id, '--private-key-file', key, '--yes', '--broker-host', 'broker.example']);
      assert.equal(tunnel.code, 0, tunnel.stderr);
      assert.equal(await recoverMessageAddress({ message: text, signature: posted[0] as `0x${string}` }), agent.address);
      posted.length = 0;
      text = real();
      const ok = await runCli(['--profile', 'sign-accept', 'grant', 'accept', id, '--private-key-file', key, '--yes']);
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(await recoverMessageAddress({ message: real(), signature: posted[0] as `0x${string}` }), agent.address);
    } finally {
      await broker.close();
    }
  });

  void test('init tee: a sign-in message for another client, another account or in another shape is refused and nothing is signed', async () => {
    const omni = deriveOmniAccount('agentkeys', { type: 'evm', value: agent.address });
    let message: unknown;
    const seen: string[] = [];
    const tee: Server = createServer((req, res) => {
      let raw = '';
      req.on('data', (d: Buffer) => (raw += d.toString()));
      req.on('end', () => {
        const call = JSON.parse(raw) as { id: number; method: string };
        seen.push(call.method);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            jsonrpc: '2.0',
            id: call.id,
            ...(call.method === 'omni_getWeb3SignInMessage' ? { result: message } : { error: { code: -32601, message: 'not here' } }),
          }),
        );
      });
    });
    await new Promise<void>((r) => tee.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(tee.address() as { port: number }).port}`;
    try {
      const key = await writeKey('sign-tee.key', `0x${'44'.repeat(32)}`);
      for (const hostile of [
        { client_id: 'wildmeta', omni_account: omni, message_code: '12345678' },
        { client_id: 'agentkeys', omni_account: `0x${'ab'.repeat(32)}`, message_code: '12345678' },
        { client_id: 'agentkeys', omni_account: omni, message_code: '12345678', note: 'and more' },
        'app.example wants you to sign in with your Ethereum account',
      ]) {
        message = hostile;
        seen.length = 0;
        const r = await runCli(['--profile', 'sign-tee', '--broker-url', url, 'init', 'tee', '--tee-url', url, '--private-key-file', key]);
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, /sign-in message is not one for client agentkeys and account .* nothing signed/, JSON.stringify(hostile));
        assert.deepEqual(seen, ['omni_getWeb3SignInMessage'], 'no login was sent');
      }
    } finally {
      await new Promise<void>((r) => tee.close(() => r()));
    }
  });

  void test('init wallet --siwe: a sign-in message for another site, address, statement, URI or chain, or with more in it, is refused and nothing is signed or posted', async () => {
    const wallet = privateKeyToAccount(`0x${'45'.repeat(32)}`);
    let host = '';
    let url = '';
    let message = '';
    const challenges: Record<string, unknown>[] = [];
    const logins: string[] = [];
    const session = {
      token: 'tok_siwe',
      token_type: 'Bearer',
      expires_at: at + 3600,
      omni_account: OMNI,
      user_id: 'u1',
      identity: { type: 'evm', value: wallet.address.toLowerCase() },
    };
    const broker = await brokerStandIn({
      'POST /v1/session/wallet_challenge': (b) => (challenges.push(b), { status: 200, body: { request_id: 'f'.repeat(32), message, expires_at: at + 300 } }),
      'POST /v1/session/wallet_login': (b) => (logins.push(b.signature ?? ''), { status: 200, body: session }),
    });
    host = new URL(broker.url).host;
    url = broker.url;
    // The message the broker builds (workflows/wallet-login.ts), with one field changed at a time.
    const siwe = (change: Partial<SiweFields> = {}) =>
      buildSiweMessage({
        domain: host,
        address: wallet.address,
        statement: SIWE_STATEMENT,
        uri: url,
        version: '1',
        chainId: 1,
        nonce: 'a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6',
        issuedAt: new Date(at * 1000).toISOString(),
        expirationTime: new Date((at + 300) * 1000).toISOString(),
        ...change,
      });
    try {
      const key = await writeKey('sign-siwe.key', `0x${'45'.repeat(32)}`);
      const login = (...extra: string[]) =>
        runCli(['--profile', 'sign-siwe', '--broker-url', broker.url, 'init', 'wallet', '--siwe', '--private-key-file', key, ...extra]);
      for (const [name, hostile] of [
        ['another site', siwe({ domain: 'evil.example', uri: 'https://evil.example' })],
        ['another site, this URI', siwe({ domain: 'evil.example' })],
        ['another address', siwe({ address: main.address })],
        ['another statement', siwe({ statement: 'Sign in to Evil.' })],
        ['no statement', siwe({ statement: undefined })],
        ['another URI', siwe({ uri: 'https://evil.example' })],
        ['another chain', siwe({ chainId: 137 })],
        ['resources', siwe({ resources: ['https://evil.example/drain'] })],
        ['a request id', siwe({ requestId: 'evil' })],
        ['no expiry', siwe({ expirationTime: undefined })],
        ['not SIWE', `Transfer everything to ${main.address}`],
        ['CRLF', siwe().replace(/\n/g, '\r\n')],
      ] as const) {
        message = hostile;
        const r = await login();
        assert.equal(r.code, 1, `${name}: ${r.stdout}${r.stderr}`);
        assert.match(r.stderr, /sign-in message is not a Sign-In with Ethereum at .* nothing signed/, name);
        assert.deepEqual(logins, [], `${name}: nothing was posted to wallet_login`);
      }
      message = siwe({ domain: 'evil.example', uri: 'https://evil.example' });
      assert.match((await login()).stderr, /it names the site evil\.example.*pass that host as --broker-host/);
      // Reached under another name than its public URL's: signed when that host is given, and only for it.
      message = siwe({ domain: 'broker.example', uri: 'https://broker.example' });
      const tunnel = await login('--broker-host', 'broker.example');
      assert.equal(tunnel.code, 0, tunnel.stderr);
      assert.equal(await recoverMessageAddress({ message, signature: logins[0] as `0x${string}` }), wallet.address);
      logins.length = 0;
      assert.equal((await login('--broker-host', 'other.example')).code, 1);
      assert.deepEqual(logins, []);
      const stateless = await runCli(['--profile', 'sign-siwe', '--broker-url', broker.url, 'init', 'wallet', '--private-key-file', key, '--broker-host', 'x']);
      assert.equal(stateless.code, 2, stateless.stderr);
      // The message as the broker really builds it: signed by the key, sent once.
      message = siwe();
      const ok = await login();
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(logins.length, 1);
      assert.equal(await recoverMessageAddress({ message, signature: (logins as string[])[0] as `0x${string}` }), wallet.address);
      assert.ok(
        challenges.every((c) => c.chain_id === 1 && c.format === 'siwe' && c.address === wallet.address),
        'the chain asked for is the one checked',
      );
    } finally {
      await broker.close();
    }
  });

  void test('init device refuses a device code whose expires_in is not a number (it would poll forever), showing nothing', async () => {
    const broker = await brokerStandIn({
      'POST /v1/device/code': () => ({
        status: 200,
        body: {
          device_code: 'dc',
          user_code: 'BCDF-GHJK',
          verification_uri: 'https://b.example/device',
          verification_uri_complete: 'https://b.example/device?c=x',
          expires_in: 'soon',
          interval: 1,
        },
      }),
    });
    try {
      const r = await runCli(['--json', '--profile', 'device-shape', '--broker-url', broker.url, 'init', 'device', '--no-qr']);
      assert.equal(r.code, 1, r.stdout);
      assert.match((JSON.parse(r.stdout) as { message: string }).message, /answered a device code without a usable expires_in; nothing was shown$/);
      assert.deepEqual(broker.seen, ['POST /v1/device/code'], 'no poll');
    } finally {
      await broker.close();
    }
  });

  void test('init device --json escapes C1 and direction overrides in what the broker sends', async () => {
    const broker = await brokerStandIn({
      'POST /v1/device/code': () => ({
        status: 200,
        body: {
          device_code: 'dc',
          user_code: 'BCDF\u009b31m',
          verification_uri: 'https://broker.example/device\u202e',
          verification_uri_complete: 'https://broker.example/device?c=x',
          expires_in: 1,
          interval: 1,
        },
      }),
    });
    try {
      const r = await runCli(['--json', '--profile', 'device-escape', '--broker-url', broker.url, 'init', 'device', '--no-qr']);
      const first = r.stdout.split('\n')[0] ?? '';
      assert.ok(first.includes(String.raw`"user_code":"BCDF\u009b31m"`), first);
      assert.ok(first.includes(String.raw`device\u202e"`), first);
      assert.doesNotMatch(r.stdout, /[\u0080-\u009f\u202a-\u202e\u2066-\u2069]/);
    } finally {
      await broker.close();
    }
  });
});

void describe('agentkeys CLI: credentials from a broker', () => {
  const expiration = () => nowSeconds() + 900;
  const good = () => ({
    access_key_id: 'ASIAGOODKEYFORSHELL1',
    secret_access_key: 'abc/def+ghi=',
    session_token: 'FwoGZXIvYXdzE//token+with/slashes==',
    expiration: expiration(),
    wallet: `0x${'11'.repeat(20)}`,
  });

  void test('mint aws: export lines a shell evaluates to exactly the credentials (each value one quoted word)', async () => {
    const broker = await brokerStandIn({ 'POST /v1/mint-aws-creds': () => ({ status: 200, body: good() }) });
    try {
      await loggedIn('creds-good', broker.url);
      const r = await runCli(['--profile', 'creds-good', 'mint', 'aws']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^export AWS_ACCESS_KEY_ID='ASIAGOODKEYFORSHELL1'$/m);
      const shell = spawnSync(
        'bash',
        ['-c', 'eval "$1"; printf "%s\\n" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" "$AWS_SESSION_TOKEN"', 'bash', r.stdout],
        {
          encoding: 'utf8',
        },
      );
      assert.equal(shell.status, 0, shell.stderr);
      assert.deepEqual(shell.stdout.trim().split('\n'), [good().access_key_id, good().secret_access_key, good().session_token]);
    } finally {
      await broker.close();
    }
  });

  void test('mint aws: credentials not shaped as STS issues them (a $(…), a quote, a newline) are refused, nothing printed or cached', async () => {
    const marker = join(home, 'PWNED');
    for (const [name, bad] of [
      ['key id', { access_key_id: `ASIAX$(touch ${marker})` }],
      ['secret', { secret_access_key: "s';touch " + marker + ";'" }],
      ['token', { session_token: 't\nexport PATH=/tmp' }],
      ['expiry', { expiration: 'soon' }],
    ] as const) {
      const broker = await brokerStandIn({ 'POST /v1/mint-aws-creds': () => ({ status: 200, body: { ...good(), ...bad } }) });
      try {
        const profile = `creds-bad-${name.replace(' ', '-')}`;
        await loggedIn(profile, broker.url);
        for (const mode of [[], ['--credential-process']]) {
          const r = await runCli(['--profile', profile, 'mint', 'aws', ...mode]);
          assert.equal(r.code, 1, `${name} ${mode.join(' ')}: ${r.stdout}`);
          assert.equal(r.stdout, '', `${name}: nothing on stdout`);
          assert.match(r.stderr, /not shaped as STS issues them/);
        }
        const session = JSON.parse(await readFile(join(home, '.agentkeys', profile, 'session.json'), 'utf8')) as { aws_cache?: unknown };
        assert.equal(session.aws_cache, undefined, `${name}: nothing cached`);
      } finally {
        await broker.close();
      }
    }
    await assert.rejects(stat(marker), 'no command ran');
  });
});

void describe('agentkeys CLI: where a profile sends its bearer and what it opens', () => {
  void test("a --broker-url or AGENTKEYS_BROKER_URL naming another broker never gets the profile's bearer (usage error, no request there)", async () => {
    const me = { omni_account: OMNI, user_id: 'u1', identity: { type: 'evm', value: `0x${'11'.repeat(20)}` }, wallets: [], expires_at: nowSeconds() + 3600 };
    const home1 = await brokerStandIn({ 'GET /v1/session/me': () => ({ status: 200, body: me }) });
    const other = await brokerStandIn({});
    try {
      await loggedIn('pinned', home1.url);
      for (const run of [
        () => runCli(['--profile', 'pinned', '--broker-url', other.url, 'whoami']),
        () => runCli(['--profile', 'pinned', 'whoami'], { env: { AGENTKEYS_BROKER_URL: other.url } }),
        () => runCli(['--profile', 'pinned', '--broker-url', other.url, 'logout']),
      ]) {
        const r = await run();
        assert.equal(r.code, 2, r.stdout + r.stderr);
        assert.match(r.stderr, /is logged in at .* and its session is not sent to/);
      }
      assert.deepEqual(other.seen, [], 'the other broker heard nothing');
      // The same broker spelled with a trailing slash is the same broker.
      const same = await runCli(['--profile', 'pinned', '--broker-url', `${home1.url}/`, 'whoami']);
      assert.equal(same.code, 0, same.stderr);
      assert.ok(home1.seen.includes('GET /v1/session/me'));
    } finally {
      await home1.close();
      await other.close();
    }
  });

  void test("init google: a poll refused 429 (the sign-in's poll budget) is one more wait, then the session is taken", async () => {
    let polls = 0;
    const broker = await brokerStandIn({
      'POST /v1/session/google_oauth_login': () => ({
        status: 200,
        body: {
          request_id: 'a'.repeat(32),
          authorize_url: 'https://accounts.google.com/o/oauth2/v2/auth?x=1',
          poll_secret: 'p',
          expires_at: nowSeconds() + 600,
        },
      }),
      'POST /v1/session/google_oauth_poll': () =>
        ++polls === 1
          ? { status: 429, body: { error: 'rate_limited', message: 'this request has answered 1500 polls while it waits', retry_after: 1 } }
          : {
              status: 200,
              body: { token: 'minted', token_type: 'Bearer', expires_at: nowSeconds() + 3600, omni_account: `0x${'ab'.repeat(32)}`, user_id: 'u1' },
            },
    });
    try {
      const r = await runCli(['--json', '--profile', 'glimited', '--broker-url', broker.url, 'init', 'google', '--no-browser', '--code-stdin'], {
        stdin: 'BCDF-GHJK\n',
      });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.equal(polls, 2);
    } finally {
      await broker.close();
    }
  });

  void test('init google opens nothing and fails when the broker answers a sign-in address that is not https (nor loopback http), or one PowerShell would run', async () => {
    for (const address of [
      'file:///etc/passwd',
      'smb://evil.example/share',
      'http://evil.example/authorize',
      'javascript:alert(1)',
      // On Windows and WSL the opener quotes the address for PowerShell, which runs $(…) inside it.
      'https://accounts.google.com/o/oauth2/v2/auth?s=$(calc.exe)',
      'https://accounts.google.com/o/oauth2/v2/auth?k=$env:AWS_SECRET_ACCESS_KEY',
      'https://a.example/?q=`whoami`',
    ]) {
      const broker = await brokerStandIn({
        'POST /v1/session/google_oauth_login': () => ({
          status: 200,
          body: { request_id: 'a'.repeat(32), authorize_url: address, poll_secret: 'p', expires_at: nowSeconds() + 600 },
        }),
      });
      try {
        const r = await runCli(['--profile', 'gopen', '--broker-url', broker.url, 'init', 'google', '--code-stdin'], { stdin: 'BCDF-GHJK\n' });
        assert.equal(r.code, 1, `${address}: ${r.stdout}${r.stderr}`);
        assert.match(r.stderr, /not https \(nor http on this machine\), or one with `\$` or a backtick; nothing was opened/);
        assert.deepEqual(broker.seen, ['POST /v1/session/google_oauth_login'], `${address}: no poll followed`);
      } finally {
        await broker.close();
      }
    }
  });
});

void describe('agentkeys CLI: the renewal lock', () => {
  void test("a dead holder's lock is broken, and waiters that all find it stale still hold the lock one at a time", async () => {
    const saved = process.env.HOME;
    process.env.HOME = home;
    try {
      const dir = join(home, '.agentkeys', 'locktest');
      const lock = join(dir, 'renew.lock');
      await mkdir(lock, { recursive: true, mode: 0o700 });
      await writeFile(join(lock, 'owner-999999-dead'), '');
      const old = new Date(Date.now() - 60_000);
      await utimes(lock, old, old);
      let inside = 0;
      let most = 0;
      let done = 0;
      await Promise.all(
        Array.from({ length: 8 }, () =>
          withLock('locktest', async () => {
            inside += 1;
            most = Math.max(most, inside);
            await new Promise((r) => setTimeout(r, 20));
            inside -= 1;
            done += 1;
          }),
        ),
      );
      assert.equal(done, 8);
      assert.equal(most, 1, 'never two holders at once');
      assert.deepEqual(await readdir(dir), [], 'no lock, no stale copy and no unused new lock left behind');
    } finally {
      process.env.HOME = saved;
    }
  });

  void test('a live holder keeps its lock: a waiter does not break a lock younger than the stale age', async () => {
    const saved = process.env.HOME;
    process.env.HOME = home;
    try {
      await mkdir(join(home, '.agentkeys', 'locklive'), { recursive: true, mode: 0o700 });
      const order: string[] = [];
      let release: () => void = () => undefined;
      const held = withLock('locklive', () => new Promise<void>((r) => (release = () => (order.push('first out'), r()))));
      await new Promise((r) => setTimeout(r, 50));
      const waiter = withLock('locklive', async () => {
        order.push('second in');
      });
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(order, [], 'the waiter waits');
      release();
      await Promise.all([held, waiter]);
      assert.deepEqual(order, ['first out', 'second in']);
    } finally {
      process.env.HOME = saved;
    }
  });
  void test('a holder that works longer than the stale age keeps its lock: its heartbeat keeps it young', async () => {
    const saved = process.env.HOME;
    const timing = { ...lockTiming };
    process.env.HOME = home;
    Object.assign(lockTiming, { staleMs: 200, heartbeatMs: 40, waitMs: 5_000 });
    try {
      await mkdir(join(home, '.agentkeys', 'lockbeat'), { recursive: true, mode: 0o700 });
      const order: string[] = [];
      const held = withLock('lockbeat', async () => {
        order.push('first in');
        await new Promise((r) => setTimeout(r, 800)); // four stale ages
        order.push('first out');
      });
      await new Promise((r) => setTimeout(r, 20));
      const waiter = withLock('lockbeat', async () => {
        order.push('second in');
      });
      await Promise.all([held, waiter]);
      assert.deepEqual(order, ['first in', 'first out', 'second in'], 'the waiter did not take a lock its holder kept touching');
    } finally {
      Object.assign(lockTiming, timing);
      process.env.HOME = saved;
    }
  });

  void test('a holder whose lock was taken over while it was held up neither trades the refresh token nor saves', async () => {
    const saved = process.env.HOME;
    process.env.HOME = home;
    const renewed = {
      token: 'tok_1',
      token_type: 'Bearer',
      expires_at: nowSeconds() + 3600,
      omni_account: OMNI,
      refresh_token: 'akr_1',
      refresh_expires_at: nowSeconds() + 86400,
    };
    let onRefresh: () => Promise<void> = async () => undefined;
    const broker = await brokerStandIn({ 'POST /v1/session/refresh': async () => (await onRefresh(), { status: 200, body: renewed }) });
    try {
      const profile = 'lock-taken';
      const file = await loggedIn(profile, broker.url);
      const lock = join(home, '.agentkeys', profile, 'renew.lock');
      // What a waiter does to a lock it found stale: renames it away, and its own lock takes the place.
      const takeOver = async () => {
        await rename(lock, `${lock}.stale-test-${Date.now()}`);
        await mkdir(lock, { mode: 0o700 });
        await writeFile(join(lock, 'owner-999996-other'), '');
      };
      const due = { ...(JSON.parse(await readFile(file, 'utf8')) as ProfileSession), expires_at: nowSeconds() + 60 };
      await writeFile(file, JSON.stringify(due), { mode: 0o600 });
      const files = new FileSessionStore();
      // Taken over while the session was read (a keychain prompt left open): no refresh is sent.
      let steal = true;
      const stalling: SessionStore = {
        kind: 'file',
        describe: (p) => files.describe(p),
        load: async (p) => {
          if (steal) await takeOver();
          return files.load(p);
        },
        save: (p, sess) => files.save(p, sess),
        remove: (p) => files.remove(p),
      };
      await assert.rejects(renewIfDue(profile, stalling, undefined, due), /took over the renewal lock .* it stopped before trading the refresh token/);
      assert.deepEqual(broker.seen, [], 'the refresh token was not traded');
      await rm(lock, { recursive: true });
      // Taken over while the broker answered: the renewed session is not written over the new holder's.
      steal = false;
      onRefresh = takeOver;
      await assert.rejects(renewIfDue(profile, stalling, undefined, due), /took over the renewal lock .* it stopped before saving the renewed session/);
      assert.deepEqual(broker.seen, ['POST /v1/session/refresh']);
      assert.equal((JSON.parse(await readFile(file, 'utf8')) as ProfileSession).refresh_token, 'akr_0', 'nothing saved');
      await rm(lock, { recursive: true });
    } finally {
      process.env.HOME = saved;
      await broker.close();
    }
  });

  void test("the keychain store awaits its entry (the keyring library's AsyncEntry, whose calls leave the event loop, and so the lock's heartbeat, running)", async () => {
    const entries = new Map<string, string>();
    let ticks = 0;
    const later = <T>(v: T) => new Promise<T>((r) => setTimeout(() => r(v), 30));
    class SlowEntry {
      constructor(
        private readonly service: string,
        private readonly account: string,
      ) {}
      getPassword() {
        return later(entries.get(`${this.service}/${this.account}`));
      }
      setPassword(p: string) {
        return later(undefined).then(() => void entries.set(`${this.service}/${this.account}`, p));
      }
      deletePassword() {
        return later(entries.delete(`${this.service}/${this.account}`));
      }
    }
    const keychain = new KeychainSessionStore(SlowEntry, 'secret-service');
    const session: ProfileSession = { token: 'slow', broker_url: deadUrl, method: 'wallet', omni_account: OMNI, expires_at: nowSeconds() + 3600 };
    const timer = setInterval(() => (ticks += 1), 5);
    try {
      await keychain.save('slow', session);
      assert.equal((await keychain.load('slow'))?.token, 'slow');
      await keychain.remove('slow');
      assert.equal(await keychain.load('slow'), undefined);
    } finally {
      clearInterval(timer);
    }
    assert.ok(ticks > 0, 'timers ran while the keychain answered');
    // Where the platform keychain answers, the store the CLI opens uses AsyncEntry.
    const opened = await openStore({ kind: 'keychain', keychain: 'secret-service' }).catch(() => undefined);
    if (opened) {
      const { AsyncEntry } = await import('@napi-rs/keyring');
      assert.equal((opened as unknown as { Entry: unknown }).Entry, AsyncEntry);
    }
  });

  void test('what a killed process left beside the lock is swept once old: an unused new lock, a dead lock renamed aside', async () => {
    const saved = process.env.HOME;
    process.env.HOME = home;
    try {
      const dir = join(home, '.agentkeys', 'locksweep');
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const old = new Date(Date.now() - 10 * 60_000);
      const strays = ['renew.lock.new-owner-999998-dead', 'renew.lock.stale-0123456789ab'];
      for (const name of strays) {
        await mkdir(join(dir, name), { mode: 0o700 });
        await writeFile(join(dir, name, 'owner-999998-dead'), '');
        await utimes(join(dir, name), old, old);
      }
      // A waiter's new lock made a moment ago is not a stray.
      await mkdir(join(dir, 'renew.lock.new-owner-999997-waiting'), { mode: 0o700 });
      let ran = false;
      await withLock('locksweep', async () => {
        ran = true;
      });
      assert.ok(ran);
      assert.deepEqual(await readdir(dir), ['renew.lock.new-owner-999997-waiting'], 'the old strays are gone, the young one stays');
    } finally {
      process.env.HOME = saved;
    }
  });
});

void describe("agentkeys CLI: the broker's words in the CLI's", () => {
  void test('routes named in a message become the commands that call them, with or without their method and path', () => {
    assert.equal(
      inCliWords('grant g has a scope that does not cover /v1/mint-oidc-jwt (it names no gcp; use mint-aws-creds)'),
      'grant g has a scope that does not cover agentkeys mint oidc (it names no gcp; use agentkeys mint aws)',
    );
    assert.equal(inCliWords('retry POST /v1/mint-gcp-token later'), 'retry agentkeys mint gcp later');
    assert.equal(inCliWords('body.duration_seconds: duration_seconds must be at least 900'), '--duration must be at least 900');
  });

  void test("path ids become the commands' arguments; the gcp fields, a missing signature and a DELETE become flags and commands", () => {
    assert.equal(inCliWords('params.grant_id: grant_id is malformed (expected grt_…)'), '<grant-id> is malformed (expected grt_…)');
    assert.equal(inCliWords('params.approval_id: approval_id is malformed (expected apr_…)'), '<approval-id> is malformed (expected apr_…)');
    assert.equal(inCliWords('body.audience: audience must be a workload identity pool provider'), '--audience must be a workload identity pool provider');
    assert.equal(inCliWords('body.service_account: service_account must be a service account email'), '--service-account must be a service account email');
    assert.equal(
      inCliWords('allows only impersonating its service accounts: name one in service_account (scope.gcp.service_accounts)'),
      'allows only impersonating its service accounts: name one in --service-account (scope.gcp.service_accounts)',
    );
    assert.equal(
      inCliWords('this grant is active; only a pending grant can be declined (leave an accepted one with DELETE)'),
      'this grant is active; only a pending grant can be declined (leave an accepted one with agentkeys grant leave <grant-id>)',
    );
    assert.equal(
      inCliWords("a wallet account decides with its wallet: send signature, the EIP-712 signature of the request's typed data"),
      "a wallet account decides with its wallet: pass the wallet's key (--private-key-file, --mnemonic-file or --keystore) to sign the request's EIP-712 typed data",
    );
  });
});

void describe('agentkeys CLI: how it reaches a broker', () => {
  // 127.0.0.2 is this machine too (Linux routes 127/8 to lo), but not one of the loopback names the
  // CLI takes plain http to without asking: a stand-in for a broker across a network, reachable here.
  const OTHER_HOST = '127.0.0.2';

  void test('plain http to a broker or TEE worker not on this machine is refused before anything is sent, unless AGENTKEYS_ALLOW_INSECURE_HTTP=1', async () => {
    const broker = await brokerStandIn(
      {
        'POST /v1/session/email_code': () => ({ status: 429, body: { error: 'rate_limited', message: 'slow down', retry_after: 7 } }),
        'POST /': () => ({ status: 200, body: { jsonrpc: '2.0', id: 1, error: { code: -32000, message: 'tee says no' } } }),
      },
      OTHER_HOST,
    );
    try {
      const insecure = /refusing plain http to the (broker|TEE worker) at http:\/\/127\.0\.0\.2:\d+ .*set AGENTKEYS_ALLOW_INSECURE_HTTP=1/;
      const email = ['--profile', 'plain-http', '--broker-url', broker.url, 'init', 'email', 'someone@example.com', '--code-stdin'];
      const tee = ['--profile', 'plain-http', 'init', 'tee', '--tee-url', broker.url, '--email', 'someone@example.com', '--code-stdin'];
      for (const args of [email, tee]) {
        const r = await runCli(args, { stdin: '123456\n' });
        assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
        assert.match(r.stderr, insecure);
      }
      // A profile that logged in there before keeps its URL, and is refused the same way.
      await loggedIn('plain-http-stored', broker.url);
      const stored = await runCli(['--profile', 'plain-http-stored', 'whoami']);
      assert.equal(stored.code, 2, stored.stderr);
      assert.match(stored.stderr, insecure);
      assert.deepEqual(broker.seen, [], 'nothing was sent');
      // Asked for: the same commands go there.
      const allowed = { AGENTKEYS_ALLOW_INSECURE_HTTP: '1' };
      const r = await runCli(email, { stdin: '123456\n', env: allowed });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /a code was sent to someone@example\.com moments ago; ask again in 7 s/);
      const t = await runCli(tee, { stdin: '123456\n', env: allowed });
      assert.match(t.stderr, /the TEE refused omni_requestEmailVerificationCode: tee says no/);
      assert.deepEqual(broker.seen, ['POST /v1/session/email_code', 'POST /']);
    } finally {
      await broker.close();
    }
  });

  void test('a redirect is not followed: a renewal the broker redirects elsewhere sends the refresh token nowhere else, and says the broker redirected', async () => {
    const elsewhere = await brokerStandIn({});
    const broker = await brokerStandIn({
      'POST /v1/session/refresh': () => ({ status: 307, headers: { location: `${elsewhere.url}/v1/session/refresh` } }),
      'POST /v1/session/wallet_challenge': () => ({ status: 308, headers: { location: `${elsewhere.url}/v1/session/wallet_challenge` } }),
    });
    try {
      const file = await loggedIn('redirected', broker.url);
      const stored = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
      await writeFile(file, JSON.stringify({ ...stored, expires_at: nowSeconds() + 60 }), { mode: 0o600 });
      const r = await runCli(['--profile', 'redirected', 'whoami']);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /the broker at http:\/\/127\.0\.0\.1:\d+ answered POST \/v1\/session\/refresh with a redirect, which this CLI does not follow/);
      const key = join(home, 'redirected.key');
      await writeFile(key, `${generatePrivateKey()}\n`, { mode: 0o600 });
      const siwe = await runCli(['--profile', 'redirected-login', '--broker-url', broker.url, 'init', 'wallet', '--siwe', '--private-key-file', key]);
      assert.equal(siwe.code, 1, siwe.stderr);
      assert.match(siwe.stderr, /answered POST \/v1\/session\/wallet_challenge with a redirect/);
      assert.deepEqual(elsewhere.seen, [], 'the refresh token and the address went nowhere else');
      assert.equal((JSON.parse(await readFile(file, 'utf8')) as { refresh_token: string }).refresh_token, 'akr_0', 'the session is as it was');
    } finally {
      await broker.close();
      await elsewhere.close();
    }
  });

  void test('credentials claiming to last longer than any the broker issues (12 h) are printed but not cached, and a cache holding such is not answered', async () => {
    const creds = (seconds: number) => ({
      access_key_id: 'ASIALONGLIVEDCREDS01',
      secret_access_key: 's'.repeat(40),
      session_token: 't'.repeat(64),
      expiration: nowSeconds() + seconds,
      wallet: `0x${'11'.repeat(20)}`,
    });
    let lasting = 10 * 86_400;
    const broker = await brokerStandIn({ 'POST /v1/mint-aws-creds': () => ({ status: 200, body: creds(lasting) }) });
    try {
      const file = await loggedIn('long-creds', broker.url);
      const cached = async () => (JSON.parse(await readFile(file, 'utf8')) as { aws_cache?: { expiration: number } }).aws_cache;
      const mint = () => runCli(['--profile', 'long-creds', 'mint', 'aws', '--credential-process']);
      for (let i = 1; i <= 2; i++) {
        const r = await mint();
        assert.equal(r.code, 0, r.stderr);
        assert.equal((JSON.parse(r.stdout) as { AccessKeyId: string }).AccessKeyId, 'ASIALONGLIVEDCREDS01');
        assert.equal(await cached(), undefined, 'not cached');
        assert.equal(broker.seen.length, i, 'each call asks the broker');
      }
      // The longest real one (12 h) is cached as before.
      lasting = 43_200;
      assert.equal((await mint()).code, 0);
      const kept = (await cached())?.expiration ?? 0;
      assert.ok(kept > nowSeconds() + 43_000, `cached until ${kept}`);
    } finally {
      await broker.close();
    }
    // A cache written with a far expiry (by an older CLI): neither the start file nor the full CLI answers it.
    await cachedProfile('long-cache', home, 10 * 86_400);
    const r = await runCli(['--profile', 'long-cache', 'mint', 'aws', '--credential-process']);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, new RegExp(`cannot reach the broker at ${deadUrl}`));
  });

  void test("a cached credential_process answer is for the session's broker only: with AGENTKEYS_BROKER_URL or --broker-url naming another, the CLI refuses instead", async () => {
    const { accessKeyId } = await cachedProfile('cache-broker');
    const other = await brokerStandIn({});
    try {
      for (const [args, extra] of [
        [['--profile', 'cache-broker', 'mint', 'aws', '--credential-process'], { AGENTKEYS_BROKER_URL: other.url }],
        [['--profile', 'cache-broker', '--broker-url', other.url, 'mint', 'aws', '--credential-process'], {}],
      ] as const) {
        const r = await runCli([...args], { env: { ...extra } });
        assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}`);
        assert.equal(r.stdout, '', 'no credentials');
        assert.match(r.stderr, /is logged in at .* and its session is not sent to/);
      }
      assert.deepEqual(other.seen, []);
      // The session's own broker, however spelled: answered from the cache.
      const same = await runCli(['--profile', 'cache-broker', 'mint', 'aws', '--credential-process'], { env: { AGENTKEYS_BROKER_URL: `${deadUrl}/` } });
      assert.equal(same.code, 0, same.stderr);
      assert.equal((JSON.parse(same.stdout) as { AccessKeyId: string }).AccessKeyId, accessKeyId);
    } finally {
      await other.close();
    }
  });

  void test('init saves its login under the renewal lock: a renewal of the old login in flight finishes first and does not write the old account back', async () => {
    let releaseRefresh!: () => void;
    let refreshArrived!: () => void;
    const released = new Promise<void>((r) => (releaseRefresh = r));
    const arrival = new Promise<void>((r) => (refreshArrived = r));
    const NEW_OMNI = `0x${'ef'.repeat(32)}`;
    const broker = await brokerStandIn({
      'POST /v1/session/refresh': async () => {
        refreshArrived();
        await released;
        const at = nowSeconds();
        return {
          status: 200,
          body: {
            token: 'tok_old_renewed',
            token_type: 'Bearer',
            expires_at: at + 3600,
            omni_account: OMNI,
            refresh_token: 'akr_1',
            refresh_expires_at: at + 86400,
          },
        };
      },
      'GET /v1/session/me': () => ({ status: 200, body: { omni_account: OMNI, user_id: 'u1', identity: null, wallets: [], expires_at: nowSeconds() + 3600 } }),
      'POST /v1/session/wallet_login': () => ({
        status: 200,
        body: { token: 'tok_new', token_type: 'Bearer', expires_at: nowSeconds() + 3600, omni_account: NEW_OMNI, user_id: 'u2', identity: null },
      }),
    });
    try {
      const file = await loggedIn('init-lock', broker.url);
      const dir = join(home, '.agentkeys', 'init-lock');
      const stored = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
      await writeFile(file, JSON.stringify({ ...stored, expires_at: nowSeconds() + 60 }), { mode: 0o600 });
      // One process renews the old login (holding the lock) while the broker takes its time...
      const renewing = runCli(['--profile', 'init-lock', 'whoami']);
      await arrival;
      // ...and meanwhile the person logs in again on the same profile.
      const key = join(home, 'init-lock.key');
      await writeFile(key, `${generatePrivateKey()}\n`, { mode: 0o600 });
      let initDone = false;
      const init = runCli(['--profile', 'init-lock', 'init', 'wallet', '--private-key-file', key]).finally(() => (initDone = true));
      await waitFor('init to wait for the lock, or to end', () =>
        initDone || readdirSync(dir).some((n) => n.startsWith('renew.lock.new-')) ? true : undefined,
      );
      assert.equal(initDone, false, 'init waits for the renewal to finish before it saves');
      releaseRefresh();
      assert.equal((await renewing).code, 0);
      const r = await init;
      assert.equal(r.code, 0, r.stderr);
      const after = JSON.parse(await readFile(file, 'utf8')) as { token: string; omni_account: string };
      assert.equal(after.token, 'tok_new', 'the new login is the one stored');
      assert.equal(after.omni_account, NEW_OMNI);
      assert.equal((JSON.parse(await readFile(join(dir, 'profile.json'), 'utf8')) as { omni_account: string }).omni_account, NEW_OMNI);
    } finally {
      releaseRefresh();
      await broker.close();
    }
  });
});

void describe('agentkeys CLI: failures a script can branch on', () => {
  void test("--json: a broker's refusal carries its closed error kind, HTTP status and fields beside the CLI's code; a refused session names the profile to log in again", async () => {
    const broker = await brokerStandIn({
      'POST /v1/mint-oidc-jwt': () => ({ status: 429, body: { error: 'rate_limited', message: 'too many mints', retry_after: 7 } }),
      'GET /v1/session/me': () => ({ status: 401, body: { error: 'unauthorized', message: 'session has been logged out' } }),
    });
    try {
      await loggedIn('refusals', broker.url);
      const limited = await runCli(['--json', '--profile', 'refusals', 'mint', 'oidc']);
      assert.equal(limited.code, 1);
      assert.deepEqual(JSON.parse(limited.stdout), {
        error: 'ERR_CLI_BROKER_ANSWER',
        message: 'too many mints (rate_limited, HTTP 429)',
        broker: { error: 'rate_limited', http_status: 429, retry_after: 7 },
      });
      const refused = await runCli(['--json', '--profile', 'refusals', 'whoami']);
      assert.equal(refused.code, 1);
      const body = JSON.parse(refused.stdout) as { error: string; message: string; broker: unknown };
      assert.equal(body.error, 'ERR_CLI_NOT_LOGGED_IN');
      assert.deepEqual(body.broker, { error: 'unauthorized', http_status: 401 });
      assert.match(body.message, /run agentkeys init --profile refusals$/);
    } finally {
      await broker.close();
    }
  });

  void test('a mint that waits for approval: without --wait, --json names the request (ERR_CLI_APPROVAL_PENDING); with --wait and no terminal, one line on stderr says what it waits for, stdout keeps the JSON alone', async () => {
    const approvalId = `apr_${'ab'.repeat(16)}`;
    const expiresAt = nowSeconds() + 300;
    const creds = { access_key_id: 'ASIAWAITEDFORAPPROVA', secret_access_key: 's'.repeat(40), session_token: 't'.repeat(64), expiration: nowSeconds() + 900 };
    const broker = await brokerStandIn({
      'POST /v1/mint-oidc-jwt': () => ({ status: 202, body: { approval_id: approvalId, status: 'pending', expires_at: expiresAt, interval: 1 } }),
      'POST /v1/mint-aws-creds': () => ({ status: 202, body: { approval_id: approvalId, status: 'pending', expires_at: expiresAt, interval: 1 } }),
      [`GET /v1/approvals/${approvalId}`]: () => ({
        status: 200,
        body: { approval_id: approvalId, status: 'approved', jwt: 'a.b.c', wallet: `0x${'11'.repeat(20)}`, ...creds },
      }),
    });
    try {
      await loggedIn('pending', broker.url);
      const noWait = await runCli(['--json', '--profile', 'pending', 'mint', 'oidc']);
      assert.equal(noWait.code, 1);
      const body = JSON.parse(noWait.stdout) as { error: string; approval_id: string; expires_at: number };
      assert.equal(body.error, 'ERR_CLI_APPROVAL_PENDING');
      assert.equal(body.approval_id, approvalId);
      assert.equal(body.expires_at, expiresAt);

      const waited = await runCli(['--json', '--profile', 'pending', 'mint', 'oidc', '--wait']);
      assert.equal(waited.code, 0, waited.stderr);
      assert.equal((JSON.parse(waited.stdout) as { jwt: string }).jwt, 'a.b.c');
      assert.match(waited.stderr, new RegExp(`^Waiting for the holder to approve ${approvalId} \\(until `));
      // An AWS SDK reads credential_process's output as its answer: nothing on stderr there.
      const sdk = await runCli(['--profile', 'pending', 'mint', 'aws', '--credential-process', '--wait']);
      assert.equal(sdk.code, 0, sdk.stderr);
      assert.equal(sdk.stderr, '');
    } finally {
      await broker.close();
    }
  });

  void test('a poll refused 429 while a mint waits for approval is waited out for its retry_after, not a failure', async () => {
    const approvalId = `apr_${'cd'.repeat(16)}`;
    let polls = 0;
    const broker = await brokerStandIn({
      'POST /v1/mint-oidc-jwt': () => ({ status: 202, body: { approval_id: approvalId, status: 'pending', expires_at: nowSeconds() + 300, interval: 1 } }),
      [`GET /v1/approvals/${approvalId}`]: () =>
        ++polls === 1
          ? { status: 429, body: { error: 'rate_limited', message: 'this request has answered 1500 polls while nothing was ready', retry_after: 1 } }
          : { status: 200, body: { approval_id: approvalId, status: 'approved', jwt: 'a.b.c', wallet: `0x${'11'.repeat(20)}` } },
    });
    try {
      await loggedIn('limited-wait', broker.url);
      const r = await runCli(['--json', '--profile', 'limited-wait', 'mint', 'oidc', '--wait']);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.equal((JSON.parse(r.stdout) as { jwt: string }).jwt, 'a.b.c');
      assert.equal(polls, 2);
    } finally {
      await broker.close();
    }
  });

  void test("a waiting mint's answer from a hostile broker: its id is shown escaped, a request past its expiry is not waited for, a 202 without expiry or pace is refused", async () => {
    const odd = 'apr_\u001b[2J\u009b31m\u202ex';
    const pastExpiry = await brokerStandIn({
      'POST /v1/mint-oidc-jwt': () => ({ status: 202, body: { approval_id: odd, status: 'pending', expires_at: nowSeconds() - 120, interval: 1 } }),
    });
    const shapeless = await brokerStandIn({
      'POST /v1/mint-oidc-jwt': () => ({ status: 202, body: { approval_id: 'apr_x', status: 'pending' } }),
    });
    try {
      await loggedIn('hostile-wait', pastExpiry.url);
      const r = await runCli(['--json', '--profile', 'hostile-wait', 'mint', 'oidc', '--wait']);
      assert.equal(r.code, 1, r.stdout);
      assert.doesNotMatch(r.stderr + r.stdout, /[\u001b\u009b\u202e]/, 'no raw escape reaches the terminal');
      assert.ok(r.stderr.includes(String.raw`Waiting for the holder to approve apr_\x1b[2J\x9b31m\u202ex (until `), r.stderr);
      assert.match((JSON.parse(r.stdout) as { message: string }).message, /expired at .* without a decision: run the mint again$/);
      assert.deepEqual(pastExpiry.seen, ['POST /v1/mint-oidc-jwt'], 'no poll after the expiry');

      await loggedIn('shapeless-wait', shapeless.url);
      const s = await runCli(['--json', '--profile', 'shapeless-wait', 'mint', 'oidc', '--wait']);
      assert.equal(s.code, 1, s.stdout);
      assert.match(
        (JSON.parse(s.stdout) as { message: string }).message,
        /answered a waiting mint without an approval id, expiry and interval the CLI can use$/,
      );
      assert.deepEqual(shapeless.seen, ['POST /v1/mint-oidc-jwt']);
    } finally {
      await pastExpiry.close();
      await shapeless.close();
    }
  });

  void test('an answer over 4 MiB, declared or streamed, is not read past its limit: the command fails saying so', async () => {
    const huge = { omni_account: OMNI, padding: 'x'.repeat(5 * 1024 * 1024) };
    const length = Buffer.byteLength(JSON.stringify(huge));
    const declared = await brokerStandIn({ 'GET /v1/session/me': () => ({ status: 200, body: huge, headers: { 'content-length': String(length) } }) });
    const streamed = await brokerStandIn({ 'GET /v1/session/me': () => ({ status: 200, body: huge }) });
    try {
      for (const [profile, broker] of [
        ['huge-declared', declared],
        ['huge-streamed', streamed],
      ] as const) {
        await loggedIn(profile, broker.url);
        const r = await runCli(['--json', '--profile', profile, 'whoami']);
        assert.equal(r.code, 1, `${profile}: ${r.stdout.slice(0, 300)}`);
        assert.match(
          (JSON.parse(r.stdout) as { message: string }).message,
          /answered GET \/v1\/session\/me with more than 4 MiB, which no answer of a broker is/,
        );
      }
    } finally {
      await declared.close();
      await streamed.close();
    }
  });

  void test('a broker URL fetch refuses to connect to says why (a port fetch blocks), not just "TypeError"', async () => {
    const r = await runCli(['--json', '--profile', 'nobody', 'init', 'email', 'a@example.com', '--code-stdin'], {
      env: { AGENTKEYS_BROKER_URL: 'http://127.0.0.1:1' },
    });
    assert.equal(r.code, 1);
    const failure = JSON.parse(r.stdout) as { error: string; message: string };
    assert.equal(failure.error, 'ERR_CLI_BROKER_UNREACHABLE', 'a script tells "no answer" from a refusal by its code');
    assert.match(failure.message, /^cannot reach the broker at http:\/\/127\.0\.0\.1:1 \(bad port\): is it running\?/);
  });
});
