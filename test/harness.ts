/**
 * Boots the whole broker for a test file against real parts: the Temporal dev server that
 * `npm test` started (TEMPORAL_ADDRESS) or one of its own, a fresh database on the real Postgres,
 * the SES and STS stand-ins, an in-process worker on its own task queue and the API on a real
 * loopback port.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, type Worker, type WorkflowBundleOption } from '@temporalio/worker';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { buildApp } from '../api/app';
import { startOpsListener, type OpsListener } from '../adapters/ops-listener';
import { processRegistry } from '../lib/metrics';
import type { ApiDeps } from '../api/dependencies';
import { connectTemporalClient } from '../adapters/temporal-client';
import { ensureAuditShards } from '../db/audit';
import { migrate } from '../db/migrate';
import { createPool, type Db } from '../db/pool';
import { startSesFixture, type SesFixture } from '../fixtures/ses';
import { startStsFixture, type StsFixture } from '../fixtures/sts';
import { loadConfig, type Config } from '../lib/config';
import { resolveSecrets, type BrokerSecrets } from '../adapters/secrets';
import { createTeeVerifierFromConfig, teeKeyReadiness } from '../adapters/tee-jwt';
import { temporalConnectionOptions } from '../adapters/temporal-options';
import type { ActivityDeps } from '../activities/deps';
import { SesMailer } from '../adapters/ses-mailer';
import { findOrInstallTemporalCli } from '../scripts/temporal-cli';
import { findFreePort, startTemporalDevServer, type TemporalDevServer } from '../scripts/temporal-dev-server';
import { bundleBrokerWorkflows, createBrokerWorker } from '../worker/create-worker';

export const ADMIN_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

let runtimeInstalled = false;
function installRuntime(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  Runtime.install({ logger: new DefaultLogger('WARN') });
}

let ownServer: Promise<TemporalDevServer> | undefined;
/** The Temporal address for tests: the runner's server, or one this process starts once. */
export async function testTemporalAddress(): Promise<string> {
  if (process.env.TEMPORAL_ADDRESS) return process.env.TEMPORAL_ADDRESS;
  ownServer ??= findOrInstallTemporalCli({ log: (l) => console.error(l) }).then((cliPath) => startTemporalDevServer({ cliPath, uiPort: false }));
  return (await ownServer).address;
}

let bundle: Promise<WorkflowBundleOption> | undefined;
/** The workflow bundle: prebuilt by the runner (BROKER_WORKFLOW_BUNDLE) or built once per process. */
export function testWorkflowBundle(): Promise<WorkflowBundleOption> {
  const prebuilt = process.env.BROKER_WORKFLOW_BUNDLE;
  bundle ??= prebuilt ? Promise.resolve({ codePath: prebuilt }) : bundleBrokerWorkflows();
  return bundle;
}

/** What the database's sessions other than this one are doing, and what they wait on: for a request that got no answer. */
async function sessionsOf(url: string): Promise<string> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query<{ pid: number; state: string | null; wait: string | null; xact_s: string | null; query: string }>(
      `SELECT pid, state, wait_event_type || ':' || wait_event AS wait, round(extract(epoch FROM now() - xact_start))::text AS xact_s, left(query, 160) AS query
         FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() ORDER BY xact_start NULLS LAST`,
    );
    return `sessions: ${r.rows.map((x) => `[${x.pid} ${x.state ?? '-'} wait=${x.wait ?? '-'} xact=${x.xact_s ?? '-'}s ${x.query.replace(/\s+/g, ' ')}]`).join(' ') || 'none'}`;
  } finally {
    await c.end();
  }
}

/** Creates an empty database on the test Postgres and returns its URL and a dropper. */
export async function createTestDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `akb_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(ADMIN_DATABASE_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: ADMIN_DATABASE_URL });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

/** A request to an API with a JSON body (and bearer), its answer parsed when it is JSON. */
export type ApiRequest = (
  method: string,
  path: string,
  opts?: { body?: unknown; token?: string; headers?: Record<string, string> },
) => Promise<{ status: number; headers: Headers; body: unknown; text: string }>;

/**
 * The longest a test waits for one answer: well past every deadline the API keeps (a flow's 30 s),
 * so only a request the API holds without end meets it, and fails its test naming the request
 * (instead of the file's 300-s timeout naming nothing).
 */
export const REQUEST_WAIT_MS = 90_000;

/**
 * ApiRequest against the API at `baseUrl`. `onNoAnswer` adds to the error of a request that got no
 * answer within REQUEST_WAIT_MS what was going on then (the stack: its database's sessions).
 */
export function apiRequest(baseUrl: string, onNoAnswer?: () => Promise<string>): ApiRequest {
  return async (method, path, o = {}) => {
    const headers: Record<string, string> = { ...o.headers };
    if (o.body !== undefined) headers['content-type'] ??= 'application/json';
    if (o.token) headers.authorization = `Bearer ${o.token}`;
    const started = Date.now();
    let res: Response;
    let text: string;
    try {
      res = await fetch(baseUrl + path, {
        method,
        headers,
        body: o.body === undefined ? undefined : typeof o.body === 'string' ? o.body : JSON.stringify(o.body),
        signal: AbortSignal.timeout(REQUEST_WAIT_MS),
      });
      text = await res.text();
    } catch (e) {
      if ((e as Error).name !== 'TimeoutError') throw e;
      const state = onNoAnswer ? await onNoAnswer().catch((err: unknown) => `(could not read: ${(err as Error).message})`) : '';
      throw new Error(`${method} ${path}: no answer within ${Date.now() - started} ms${state ? `; then ${state}` : ''}`, { cause: e });
    }
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: res.status, headers: res.headers, body, text };
  };
}

/** The stack's API again under other settings, on a port of its own (its own request limits), for `run`; closed after. */
export async function withApiUnder<T>(stack: TestStack, env: Record<string, string>, run: (url: string) => Promise<T>): Promise<T> {
  const config = loadConfig({ ...stack.childEnv(), ...env });
  let app: FastifyInstance | undefined;
  try {
    app = await buildApp({ ...stack.deps, config }, { logLevel: 'silent' });
    return await run(await app.listen({ host: '127.0.0.1', port: 0 }));
  } finally {
    await app?.close();
  }
}

export interface TestStack {
  /** Base URL of the API, e.g. http://127.0.0.1:40111 */
  url: string;
  config: Config;
  secrets: BrokerSecrets;
  db: Db;
  temporal: Client;
  ses: SesFixture;
  sts: StsFixture;
  app: FastifyInstance;
  deps: ApiDeps;
  /** What the in-process worker's activities run with: for a test that calls an activity itself. */
  activityDeps: ActivityDeps;
  /** The API's ops listener /metrics, when the stack was started with BROKER_OPS_PORT in env. */
  metricsUrl?: string;
  /** The in-process worker; undefined when started with { worker: false }. */
  worker?: Worker;
  /** Starts (again) an in-process worker on the stack's task queue. */
  startWorker(): Promise<void>;
  /** Stops the in-process worker, waiting for it to drain. */
  stopWorker(): Promise<void>;
  /** Environment a child process (e.g. `tsx worker/main.ts`) needs to join this stack. */
  childEnv(): NodeJS.ProcessEnv;
  /** fetch against the API with a JSON body. */
  request: ApiRequest;
  stop(): Promise<void>;
}

export interface StartStackOptions {
  /** Environment overrides (e.g. short windows): strings as in process.env. */
  env?: Record<string, string>;
  /** Start the in-process worker (default true). */
  worker?: boolean;
  /** Extra API deps (e.g. a TEE verifier) merged after the defaults. */
  apiDeps?: Partial<ApiDeps>;
  /** Receives the API's pino lines at level trace (default: the API logs nothing). */
  logStream?: { write(line: string): void };
  /**
   * The API gets a pool of its own, as api/main.ts makes it (BROKER_DB_QUERY_TIMEOUT_MS), on the
   * URL this returns for the test database's (e.g. through a proxy); the worker keeps the direct one.
   */
  apiDatabaseUrl?: (url: string) => string;
  /** The API's Temporal client connects here (e.g. through a proxy) instead of the test server's address. */
  apiTemporalAddress?: string;
  /**
   * Sets up the fresh database in place of the stack's own migration: called with its superuser
   * URL, it migrates (e.g. as an owner role, `npm run db:migrate`) and returns the URL every part
   * of the stack connects with instead (e.g. a runtime login granted by db/roles.ts).
   */
  prepareDatabase?: (url: string) => Promise<string>;
}

export async function startStack(opts: StartStackOptions = {}): Promise<TestStack> {
  installRuntime();
  // Undo whatever was started if a later step fails, so a broken start cannot hang the run.
  const cleanups: (() => Promise<unknown>)[] = [];
  const cleanup = async () => {
    for (const fn of cleanups.reverse()) await fn().catch(() => undefined);
  };
  try {
    return await startStackSteps(opts, cleanups);
  } catch (e) {
    await cleanup();
    throw e;
  }
}

async function startStackSteps(opts: StartStackOptions, cleanups: (() => Promise<unknown>)[]): Promise<TestStack> {
  const [address, port, workflowBundle] = await Promise.all([testTemporalAddress(), findFreePort(), testWorkflowBundle()]);
  const database = await createTestDatabase();
  cleanups.push(database.drop);
  const ses = await startSesFixture();
  cleanups.push(() => ses.close());
  const sts = await startStsFixture();
  cleanups.push(() => sts.close());
  const dataDir = await mkdtemp(join(tmpdir(), 'akb-test-'));
  cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
  const databaseUrl = opts.prepareDatabase ? await opts.prepareDatabase(database.url) : database.url;
  const env: Record<string, string> = {
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    HOST: '127.0.0.1',
    PORT: String(port),
    BROKER_DATA_DIR: dataDir,
    DATABASE_URL: databaseUrl,
    TEMPORAL_ADDRESS: address,
    BROKER_TASK_QUEUE: `test-${randomBytes(6).toString('hex')}`,
    BROKER_SES_ENDPOINT: ses.url,
    BROKER_STS_ENDPOINT: sts.url,
    BROKER_DEV_FIXTURES: 'true',
    BROKER_DATA_ROLE_ARN: 'arn:aws:iam::123456789012:role/agentkeys-data',
    // Tests make many challenges and mints from one address and account; the tests of these limits set their own.
    BROKER_RATE_LIMIT_WALLET_CHALLENGE_PER_MINUTE: '100000',
    BROKER_RATE_LIMIT_MINT_PER_MINUTE: '100000',
    BROKER_RATE_LIMIT_MINT_PER_IP_PER_MINUTE: '100000',
    BROKER_RATE_LIMIT_APPROVAL_OPEN_PER_IP_PER_MINUTE: '100000',
    // /readyz shows its parts to this bearer only (stack.request('GET', '/readyz', { token: stack.config.BROKER_OPS_TOKEN })).
    BROKER_OPS_TOKEN: `ops-${randomBytes(24).toString('hex')}`,
    ...opts.env,
  };
  const config = loadConfig(env);
  const secrets = await resolveSecrets(config);
  const db = createPool(databaseUrl, config.BROKER_DB_POOL_MAX);
  cleanups.push(() => db.end());
  if (!opts.prepareDatabase) {
    await migrate(db);
    await ensureAuditShards(db, config.BROKER_AUDIT_SHARDS);
  }
  const temporal = await connectTemporalClient(config, secrets, address);
  cleanups.push(() => temporal.connection.close());
  const mailer = new SesMailer(config.BROKER_EMAIL_FROM, { region: config.AWS_REGION, endpoint: ses.url });
  const activityDeps: ActivityDeps = { config, db, secrets, mailer, now: Date.now };
  const workerConnection = await NativeConnection.connect(temporalConnectionOptions(config, address));
  cleanups.push(() => workerConnection.close());

  let worker: Worker | undefined;
  let running: Promise<void> | undefined;
  const startWorker = async () => {
    worker = await createBrokerWorker({ deps: activityDeps, connection: workerConnection, workflowBundle });
    running = worker.run();
  };
  const stopWorker = async () => {
    if (!worker) return;
    if (worker.getState() === 'RUNNING') worker.shutdown();
    await running;
    worker = undefined;
  };
  cleanups.push(stopWorker);
  if (opts.worker !== false) await startWorker();

  // The TEE verifier from config (BROKER_TEE_JWT_PUBLIC_KEY / BROKER_TEE_JWKS_URL) unless the test gives one.
  const teeVerifier = opts.apiDeps?.teeVerifier ?? (await createTeeVerifierFromConfig(config, { now: opts.apiDeps?.now }));
  let apiDb = db;
  if (opts.apiDatabaseUrl) {
    const own = createPool(opts.apiDatabaseUrl(databaseUrl), config.BROKER_DB_POOL_MAX, { queryTimeoutMs: config.BROKER_DB_QUERY_TIMEOUT_MS });
    cleanups.push(() => own.end());
    apiDb = own;
  }
  let apiTemporal = temporal;
  if (opts.apiTemporalAddress) {
    const own = await connectTemporalClient(config, secrets, opts.apiTemporalAddress);
    cleanups.push(() => own.connection.close());
    apiTemporal = own;
  }
  const deps: ApiDeps = {
    config,
    secrets,
    db: apiDb,
    temporal: apiTemporal,
    devMailbox: ses,
    teeVerifier,
    ...opts.apiDeps,
    readiness: { tee_key: teeKeyReadiness(teeVerifier), ...opts.apiDeps?.readiness },
  };
  const app = await buildApp(deps, opts.logStream ? { logLevel: 'trace', logStream: opts.logStream } : { logLevel: 'silent' });
  cleanups.push(() => app.close());
  await app.listen({ host: '127.0.0.1', port });
  const url = `http://127.0.0.1:${port}`;
  let ops: OpsListener | undefined;
  if (config.BROKER_OPS_PORT !== undefined) {
    ops = await startOpsListener({
      host: config.BROKER_OPS_HOST,
      port: config.BROKER_OPS_PORT,
      registries: [app.metricsRegistry, processRegistry],
      docs: app.opsDocs,
    });
    cleanups.push(() => (ops as OpsListener).close());
  }

  const stack: TestStack = {
    url,
    config,
    secrets,
    db,
    temporal,
    ses,
    sts,
    app,
    deps,
    activityDeps,
    metricsUrl: ops?.metricsUrl,
    get worker() {
      return worker;
    },
    startWorker,
    stopWorker,
    childEnv: () => ({ ...process.env, ...env }),
    request: apiRequest(url, async () => `pool ${db.totalCount} open, ${db.idleCount} idle, ${db.waitingCount} waiting; ${await sessionsOf(databaseUrl)}`),
    async stop() {
      await ops?.close();
      await app.close();
      await stopWorker();
      await workerConnection.close();
      await temporal.connection.close();
      if (apiTemporal !== temporal) await apiTemporal.connection.close();
      mailer.destroy();
      await Promise.all([ses.close(), sts.close()]);
      await db.end();
      if (apiDb !== db) await apiDb.end();
      await database.drop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
  return stack;
}
