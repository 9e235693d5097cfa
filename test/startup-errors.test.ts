/**
 * The production processes (`api/main.ts`, `worker/main.ts`) started as operators start them, with one
 * thing wrong each: each must exit 1 with one line naming the variable or dependency and the fix, and
 * no stack trace (unless LOG_LEVEL=debug).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { createOidcKeysetIfMissing } from '../adapters/oidc-keys';
import { writeKeyFile } from '../adapters/key-files';
import { databaseStartupLine, maskUrlPassword } from '../lib/startup-error';
import { generateSigningKeyJwk } from '../lib/signing-key';
import { findFreePort } from '../scripts/temporal-dev-server';
import { createTestDatabase, testTemporalAddress } from './harness';

const ROOT = join(__dirname, '..');
const TSX = pathToFileURL(join(ROOT, 'node_modules/tsx/dist/loader.mjs')).href;

let dir: string;
let base: Record<string, string>;
let dropDatabase: () => Promise<void>;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'akb-startup-'));
  const database = await createTestDatabase();
  dropDatabase = database.drop;
  const sessionKey = join(dir, 'session-key.jwk.json');
  const auditKey = join(dir, 'audit-key.jwk.json');
  await writeKeyFile(sessionKey, await generateSigningKeyJwk());
  await writeKeyFile(auditKey, await generateSigningKeyJwk());
  const oidcKeys = join(dir, 'oidc-keys.json');
  await createOidcKeysetIfMissing(oidcKeys);
  base = {
    PATH: process.env.PATH ?? '',
    NODE_ENV: 'production',
    LOG_LEVEL: 'info',
    HOST: '127.0.0.1',
    PORT: String(await findFreePort()),
    BROKER_DATA_DIR: join(dir, 'data'),
    DATABASE_URL: database.url,
    TEMPORAL_ADDRESS: await testTemporalAddress(),
    BROKER_SECRET: 'ab'.repeat(32),
    BROKER_PAYLOAD_KEY: 'cd'.repeat(32),
    BROKER_SESSION_KEY_PATH: sessionKey,
    BROKER_AUDIT_KEY_PATH: auditKey,
    BROKER_OIDC_KEY_PATH: oidcKeys,
    BROKER_DATA_ROLE_ARN: 'arn:aws:iam::123456789012:role/agentkeys-data',
    BROKER_SKIP_STARTUP_CHECK: '1',
    BROKER_TASK_QUEUE: `startup-${process.pid}`,
    AWS_REGION: 'us-east-1',
    ...(process.env.BROKER_WORKFLOW_BUNDLE ? { BROKER_WORKFLOW_BUNDLE: process.env.BROKER_WORKFLOW_BUNDLE } : {}),
  };
});
after(async () => {
  await dropDatabase?.();
  await rm(dir, { recursive: true, force: true });
});

interface Exit {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Starts `entry` with `env` (a variable set to undefined is removed) and waits for it to exit (60 s at most). */
function startProcess(entry: 'api/main.ts' | 'worker/main.ts', env: Record<string, string | undefined>, cwd = ROOT): Promise<Exit> {
  const merged = Object.fromEntries(Object.entries({ ...base, ...env }).filter((e): e is [string, string] => e[1] !== undefined));
  return new Promise((done, fail) => {
    // tsx by path: `--import tsx` resolves from the working directory, which a test moves.
    const child = spawn(process.execPath, ['--import', TSX, join(ROOT, entry)], { cwd, env: merged, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      fail(new Error(`${entry} did not exit within 60 s\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    }, 60_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}

/** Starts the API with `env` until it says it listens, then stops it (SIGTERM); rejects when it exits first or takes over 60 s. */
function startApiUntilListening(env: Record<string, string | undefined>): Promise<string> {
  const merged = Object.fromEntries(Object.entries({ ...base, ...env }).filter((e): e is [string, string] => e[1] !== undefined));
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['--import', TSX, join(ROOT, 'api/main.ts')], { cwd: ROOT, env: merged, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let listening = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      fail(new Error(`the API did not listen within 60 s\n${output}`));
    }, 60_000);
    const read = (b: Buffer) => {
      output += b.toString();
      if (!listening && output.includes('agentkeys-broker API listening on')) {
        listening = true;
        child.kill('SIGTERM');
      }
    };
    child.stdout.on('data', read);
    child.stderr.on('data', read);
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (listening) done(output);
      else fail(new Error(`the API exited (${String(code)}) before listening\n${output}`));
    });
  });
}

const TRACE = /^\s+at .+\(?.+:\d+:\d+\)?$|^\s+at /m;

/** Exit 1, the failure is the one line `<process> could not start: …` matching `line`, and nothing prints a stack frame. */
function assertOneLine(exit: Exit, processName: 'api' | 'worker', line: RegExp): string {
  const all = `${exit.stdout}${exit.stderr}`;
  assert.equal(exit.code, 1, all);
  const failures = exit.stderr.split('\n').filter((l) => l.startsWith(`agentkeys-broker ${processName} could not start: `));
  assert.equal(failures.length, 1, all);
  const failure = failures[0] as string;
  assert.match(failure, line);
  assert.doesNotMatch(all, TRACE, 'no stack trace');
  assert.doesNotMatch(all, /Error: .*\n\s+at /, 'no stack trace');
  return failure;
}

void describe('start-up errors are one line naming the variable and the fix', () => {
  void test('DATABASE_URL that is not a Postgres URL', async () => {
    for (const value of ['not-a-url', 'http://db.internal/agentkeys', 'postgres://']) {
      const exit = await startProcess('api/main.ts', { DATABASE_URL: value });
      assertOneLine(exit, 'api', /DATABASE_URL: not a Postgres URL: expected postgres:\/\/user:password@host:5432\/database/);
      assert.doesNotMatch(exit.stderr, /db\.internal|not-a-url/, 'the value is not echoed (it may hold a password)');
    }
  });

  void test('a password given as a query parameter is masked too (pg reads ?password=, ?sslpassword=, ?options=)', () => {
    const url = 'postgres://broker@db.internal:5432/agentkeys?password=hunter2secret&sslmode=require&SSLPASSWORD=k3y&options=-c%20x%3Dopt1';
    const shown = maskUrlPassword(url);
    assert.equal(shown, 'postgres://broker@db.internal:5432/agentkeys?password=***&sslmode=require&SSLPASSWORD=***&options=***');
    const line = databaseStartupLine(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), url);
    assert.doesNotMatch(line, /hunter2secret|k3y|opt1/);
    assert.match(line, /sslmode=require/, 'a plain parameter still shows');
  });

  void test('Postgres down (the password masked), a database that does not exist', async () => {
    const closed = await findFreePort();
    const down = await startProcess('api/main.ts', { DATABASE_URL: `postgres://postgres:s3cret@127.0.0.1:${closed}/agentkeys` });
    const line = assertOneLine(
      down,
      'api',
      new RegExp(`Postgres at DATABASE_URL=postgres://postgres:\\*\\*\\*@127\\.0\\.0\\.1:${closed}/agentkeys refused the connection; start Postgres or fix`),
    );
    assert.doesNotMatch(line, /s3cret/);

    const absent = await startProcess('worker/main.ts', { DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/akb_absent_database' });
    assertOneLine(absent, 'worker', /database "akb_absent_database" does not exist; create it \(createdb akb_absent_database\) or fix DATABASE_URL/);
  });

  void test('a missing key file names its variable and the exact keygen command', async () => {
    const missing = join(dir, 'absent', 'session-key.jwk.json');
    const exit = await startProcess('api/main.ts', { BROKER_SESSION_KEY_PATH: missing });
    assertOneLine(
      exit,
      'api',
      new RegExp(`BROKER_SESSION_KEY_PATH=${missing}: does not exist; generate one with \`npm run keygen -- session --out ${missing}\``),
    );
    const audit = await startProcess('worker/main.ts', { BROKER_AUDIT_KEY_PATH: join(dir, 'nope.json') });
    assertOneLine(audit, 'worker', /BROKER_AUDIT_KEY_PATH=.*nope\.json: does not exist; generate one with `npm run keygen -- audit --out .*nope\.json`/);
  });

  void test('a short BROKER_SECRET, a bad BROKER_PAYLOAD_KEY, and unset production keys name the keygen command', async () => {
    const short = await startProcess('api/main.ts', { BROKER_SECRET: 'abcd' });
    assertOneLine(short, 'api', /BROKER_SECRET must be at least 32 bytes as hex or base64 \(got 2\); generate one with `npm run keygen -- secret`/);
    const payload = await startProcess('worker/main.ts', { BROKER_PAYLOAD_KEY: 'abcd' });
    assertOneLine(payload, 'worker', /BROKER_PAYLOAD_KEY must be 32 bytes .*; generate one with `npm run keygen -- secret`/);
    const unset = await startProcess('api/main.ts', { BROKER_SESSION_KEY_PATH: undefined, BROKER_SECRET: undefined });
    assertOneLine(
      unset,
      'api',
      /refusing to start in production: BROKER_SECRET is required .*`npm run keygen -- secret`.*; BROKER_SESSION_KEY_PATH is required .*`npm run keygen -- session --out FILE`/,
    );
  });

  void test('Temporal down: the API and the worker name TEMPORAL_ADDRESS', async () => {
    const closed = `127.0.0.1:${await findFreePort()}`;
    // Each waits out its connection attempts before it gives up: both at once.
    const [api, worker] = await Promise.all([
      startProcess('api/main.ts', { TEMPORAL_ADDRESS: closed }),
      startProcess('worker/main.ts', { TEMPORAL_ADDRESS: closed }),
    ]);
    assertOneLine(api, 'api', new RegExp(`Temporal at TEMPORAL_ADDRESS=${closed} is not answering \\(.*\\); start it .* or fix TEMPORAL_ADDRESS`));
    assertOneLine(worker, 'worker', new RegExp(`Temporal at TEMPORAL_ADDRESS=${closed} is not answering \\(.*\\); start it .* or fix TEMPORAL_ADDRESS`));
  });

  void test('the port taken: names PORT and says to set it', async () => {
    const port = await findFreePort();
    const holder: Server = createServer();
    await new Promise<void>((r) => holder.listen(port, '127.0.0.1', r));
    try {
      const exit = await startProcess('api/main.ts', { PORT: String(port) });
      assertOneLine(exit, 'api', new RegExp(`PORT=${port} is already in use on 127\\.0\\.0\\.1; stop what listens there or set PORT to a free port`));
    } finally {
      await new Promise((r) => holder.close(r));
    }
  });

  void test('LOG_LEVEL=debug adds the stack trace', async () => {
    const exit = await startProcess('api/main.ts', { BROKER_SECRET: 'abcd', LOG_LEVEL: 'debug' });
    assert.equal(exit.code, 1);
    assert.match(exit.stderr, /agentkeys-broker api could not start: BROKER_SECRET must be at least 32 bytes/);
    assert.match(exit.stderr, TRACE);
  });
});

void describe("production takes trust only over https (or this machine's loopback)", () => {
  void test('a plain-http BROKER_TEE_JWKS_URL or BROKER_EVM_RPC_URL off loopback: refused in one line naming the variable, the value not echoed', async () => {
    const jwks = await startProcess('api/main.ts', { BROKER_TEE_JWKS_URL: 'http://tee.internal:2000/jwks' });
    assertOneLine(
      jwks,
      'api',
      /refusing to start in production: BROKER_TEE_JWKS_URL must be an https:\/\/ URL in production \(plain http only to 127\.0\.0\.1, localhost or \[::1\]\): .*any account; set it to the https URL$/,
    );
    assert.doesNotMatch(jwks.stderr, /tee\.internal/);
    const rpc = await startProcess('worker/main.ts', { BROKER_EVM_RPC_URL: 'http://rpc.internal:8545/v3/rpc-key-1234' });
    assertOneLine(rpc, 'worker', /BROKER_EVM_RPC_URL must be an https:\/\/ URL in production .*contract-wallet signature.*; set it to the https URL$/);
    assert.doesNotMatch(rpc.stderr, /rpc-key-1234|rpc\.internal/, 'an RPC URL may carry an API key: not echoed');
    // Plain http on the private network is refused too: only loopback stays on this machine.
    const lan = await startProcess('api/main.ts', { BROKER_TEE_JWKS_URL: 'http://10.0.9.4/jwks', BROKER_STS_ENDPOINT: 'http://sts.internal' });
    assertOneLine(lan, 'api', /BROKER_TEE_JWKS_URL must be an https:\/\/ URL .*; BROKER_STS_ENDPOINT must be an https:\/\/ URL/);
  });

  void test('https, or plain http to loopback: the API starts', async () => {
    const [loopbackJwks, loopbackRpc] = await Promise.all([
      startApiUntilListening({
        PORT: String(await findFreePort()),
        BROKER_TEE_JWKS_URL: 'http://127.0.0.1:2000/jwks',
        BROKER_EVM_RPC_URL: 'https://rpc.example.com/v3/key',
      }),
      startApiUntilListening({
        PORT: String(await findFreePort()),
        BROKER_TEE_JWKS_URL: 'https://tee.example.com/jwks',
        BROKER_EVM_RPC_URL: 'http://localhost:8545',
      }),
    ]);
    for (const output of [loopbackJwks, loopbackRpc]) assert.doesNotMatch(output, /could not start/);
  });
});

void describe('production never uses the development key files', () => {
  void test('BROKER_OIDC_KEY_PATH unset: refused in one line, although a dev keyset sits in the data directory and the working directory', async () => {
    const cwd = join(dir, 'cwd');
    await mkdir(join(cwd, '.data'), { recursive: true });
    await createOidcKeysetIfMissing(join(cwd, '.data', 'oidc-keys.json'));
    await mkdir(base.BROKER_DATA_DIR as string, { recursive: true });
    await createOidcKeysetIfMissing(join(base.BROKER_DATA_DIR as string, 'oidc-keys.json'));
    for (const entry of ['api/main.ts', 'worker/main.ts'] as const) {
      const exit = await startProcess(entry, { BROKER_OIDC_KEY_PATH: undefined }, cwd);
      assertOneLine(
        exit,
        entry === 'api/main.ts' ? 'api' : 'worker',
        /refusing to start in production: BROKER_OIDC_KEY_PATH is required in production \(create the keyset with `BROKER_OIDC_KEY_PATH=FILE npm run oidc:rotate`\)$/,
      );
    }
  });
});

void describe('npm run keygen', () => {
  void test('with no argument prints every kind, each as the command that makes it', async () => {
    const out = await new Promise<Exit>((done) => {
      const child = spawn(process.execPath, ['--import', TSX, join(ROOT, 'scripts/keygen.ts')], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
      child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
      child.once('exit', (code) => done({ code, stdout, stderr }));
    });
    assert.equal(out.code, 0, out.stderr);
    for (const kind of ['session --out FILE', 'audit --out FILE', 'secret', 'tee-thumbprint [VALUE]'])
      assert.ok(out.stdout.includes(`npm run keygen -- ${kind}`), kind);
    assert.match(out.stdout, /BROKER_OIDC_KEY_PATH=FILE npm run oidc:rotate/);
  });
});
