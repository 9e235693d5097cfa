/**
 * `npm start` (scripts/stack.ts) as a person runs it a second time: the API's default port is taken,
 * and the banner must still give every URL the walk-throughs need.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { resolveSecrets } from '../adapters/secrets';
import { loadConfig } from '../lib/config';
import { checkCodecPath } from '../scripts/codec-proxy';
import { createTestDatabase, testTemporalAddress } from './harness';
import { startNpmStart, type NpmStart } from './support/npm-start';

/** Holds 127.0.0.1:port for the test, unless something else already does (then it is taken anyway). */
async function holdPort(port: number): Promise<Server | undefined> {
  const server = createServer();
  return new Promise((done) => {
    server.once('error', () => done(undefined));
    server.listen(port, '127.0.0.1', () => done(server));
  });
}

void describe('npm start with port 8091 taken', () => {
  let stack: NpmStart | undefined;
  let holder: Server | undefined;
  let dataDir: string;
  let drop: (() => Promise<void>) | undefined;
  let databaseUrl: string;

  before(async () => {
    holder = await holdPort(8091);
    dataDir = await mkdtemp(join(tmpdir(), 'akb-stack-'));
    const database = await createTestDatabase();
    drop = database.drop;
    // The test server trusts loopback: any password is accepted, and the banner must mask it.
    const u = new URL(database.url);
    u.password = 'banner-s3cret';
    databaseUrl = u.toString();
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      NODE_ENV: 'development',
      PORT: '',
      BROKER_DATA_DIR: dataDir,
      DATABASE_URL: databaseUrl,
      TEMPORAL_ADDRESS: await testTemporalAddress(),
      BROKER_TASK_QUEUE: `stack-${process.pid}`,
      LOG_LEVEL: 'warn',
    };
    stack = await startNpmStart(env);
  });
  after(async () => {
    await stack?.stop();
    await new Promise((r) => (holder ? holder.close(r) : r(undefined)));
    await drop?.();
    await rm(dataDir, { recursive: true, force: true });
  });

  const bannerValue = (label: string): string => (stack as NpmStart).banner(label);

  void test('the API moves to a free port and says so; the banner URLs (API, console) answer', async () => {
    assert.match(stack?.output() ?? '', /port 8091 is taken: the API listens on \d+ \(set PORT to choose\)/);
    const api = bannerValue('API').trim();
    assert.match(api, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.notEqual(new URL(api).port, '8091');
    const res = await fetch(`${api}/healthz`);
    assert.equal(res.status, 200);
    const console = bannerValue('Console').split(/\s+/)[0] as string;
    assert.equal(console, `${api}/console`);
    const page = await fetch(console);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /text\/html/);
  });

  void test('the banner prints the database URL with its password masked', () => {
    const db = bannerValue('Database');
    const shown = new URL(databaseUrl);
    shown.password = '***';
    assert.ok(db.startsWith(`${shown.toString()} `), db);
    assert.doesNotMatch(stack?.output() ?? '', /banner-s3cret/);
  });

  void test('the banner prints the SES and STS stand-ins, and they answer there', async () => {
    const ses = bannerValue('SES').split(/\s+/)[0] ?? '';
    const sts = bannerValue('STS').split(/\s+/)[0] ?? '';
    assert.match(ses, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.match(sts, /^http:\/\/127\.0\.0\.1:\d+$/);
    // The STS stand-in answers an AWS query call there, as the AWS CLI's --endpoint-url needs; the SES one its capture.
    const r = await fetch(sts, {
      method: 'POST',
      body: 'Action=GetCallerIdentity&Version=2011-06-15',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    // Unsigned, it answers as STS does: MissingAuthenticationToken in STS's XML namespace.
    assert.match(await r.text(), /<ErrorResponse xmlns="https:\/\/sts\.amazonaws\.com\/doc\/2011-06-15\/">.*MissingAuthenticationToken/);
    const m = await fetch(`${ses}/_dev/mail?to=nobody@example.com`);
    assert.equal(m.status, 200);
    assert.deepEqual(await m.json(), []);
  });

  void test('the codec path for the Temporal UI decodes with the dev ops token it adds; the broker alone refuses without one', async () => {
    const codecUrl = bannerValue('Codec').split(/\s+/)[0] ?? '';
    assert.match(codecUrl, /^http:\/\/127\.0\.0\.1:\d+\/codec$/);
    const secrets = await resolveSecrets(loadConfig({ BROKER_DATA_DIR: dataDir }));
    // The browser's way, from the UI's origin: preflight, then a decode carrying no token.
    const check = await checkCodecPath(codecUrl, 'http://localhost:8233', 'default', secrets);
    assert.equal(check.ok, true, check.line);
    const api = bannerValue('API').trim();
    const direct = await fetch(`${api}/codec/decode`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"payloads":[]}' });
    assert.equal(direct.status, 401);
  });
});
