/**
 * `npm test`: starts one Temporal dev server for the whole run (unless TEMPORAL_ADDRESS is set),
 * checks Postgres, bundles the workflows once, then runs every test/**\/*.test.ts (or the files
 * given as arguments) with node's test runner. Test files run two at a time, each with its own
 * database and task queue.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import pg from 'pg';
import { findOrInstallTemporalCli } from './temporal-cli';
import { startTemporalDevServer } from './temporal-dev-server';
import { bundleBrokerWorkflows } from '../worker/create-worker';

const ROOT = join(__dirname, '..');
const ADMIN_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

async function findTests(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await findTests(p)));
    else if (e.name.endsWith('.test.ts')) out.push(p);
  }
  return out.sort();
}

async function checkPostgres(): Promise<void> {
  const c = new pg.Client({ connectionString: ADMIN_DATABASE_URL, connectionTimeoutMillis: 5000 });
  try {
    await c.connect();
    await c.query('SELECT 1');
  } catch (e) {
    throw new Error(
      `tests need a Postgres server at ${ADMIN_DATABASE_URL} (set TEST_DATABASE_URL to change it): ${(e as Error).message}\n` +
        `  start one, e.g.: pg_ctlcluster <version> main start`,
    );
  } finally {
    await c.end().catch(() => undefined);
  }
}

async function main(): Promise<number> {
  const t0 = Date.now();
  const log = (l: string) => console.log(`[test] ${l}`);
  const files = process.argv.slice(2).length > 0 ? process.argv.slice(2) : await findTests(join(ROOT, 'test'));
  await checkPostgres();

  let stopServer: (() => Promise<void>) | undefined;
  let address = process.env.TEMPORAL_ADDRESS;
  if (!address) {
    const cliPath = await findOrInstallTemporalCli({ log });
    const server = await startTemporalDevServer({ cliPath, uiPort: false });
    address = server.address;
    stopServer = () => server.stop();
    log(`Temporal dev server ${address} ready in ${Date.now() - t0} ms`);
  }

  Runtime.install({ logger: new DefaultLogger('WARN') });
  const tmp = await mkdtemp(join(tmpdir(), 'akb-bundle-'));
  const bundlePath = join(tmp, 'workflow-bundle.js');
  const { code } = await bundleBrokerWorkflows();
  await writeFile(bundlePath, code);
  log(`workflows bundled; running ${files.length} test files`);

  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      '--test',
      '--test-concurrency=2',
      '--test-force-exit',
      '--test-timeout=300000',
      '--test-reporter=spec',
      ...files.map((f) => relative(ROOT, f)),
    ],
    {
      cwd: ROOT,
      stdio: 'inherit',
      env: { ...process.env, TEMPORAL_ADDRESS: address, BROKER_WORKFLOW_BUNDLE: bundlePath, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    },
  );
  const forward = (sig: NodeJS.Signals) => child.kill(sig);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  const exitCode = await new Promise<number>((resolve) => child.on('exit', (c, s) => resolve(c ?? (s ? 1 : 0))));
  await stopServer?.();
  await rm(tmp, { recursive: true, force: true });
  return exitCode;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`[test] ${(e as Error).message}`);
    process.exit(1);
  },
);
