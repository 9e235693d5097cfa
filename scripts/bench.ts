/**
 * `npm run bench`: closed-loop clients over real HTTP against the broker (autocannon), per flow
 * and per concurrency, next to two references measured in the same run on the same machine:
 *
 *   floor     the stateless wallet login's own work (ecrecover, one transaction through the same
 *             recordLogin the broker calls, ES256 session token) in a bare Fastify handler
 *   ceiling   an empty workflow answering one Update, started by Update-with-Start through a bare
 *             Fastify handler, on the stack's Temporal server
 *
 *   npm run bench [-- --concurrency 1,16,64] [--duration 10] [--flows a,b] [--url http://host:port [--tee-key pem]] [--smoke]
 *   npm run bench -- --soak 300 [--soak-interval 10] [--concurrency 8]
 *   npm run bench -- --cpu-prof /tmp/prof …   (V8 CPU profiles of the stack process; scripts/bench/profile-summary.ts reads them)
 *   npm run bench -- --threads …             (the stack process's CPU per call by thread, and Postgres', under the table)
 *
 * Without --url it starts the stack (`npm start`'s scripts/stack.ts, its own Temporal dev server,
 * a fresh database on DATABASE_URL's server or the local Postgres, the STS stand-in, rate limits
 * raised) and stops it at the end; the bench plays the TEE worker (the stack trusts a key it makes
 * for the run). With --url, the floor and ceiling need DATABASE_URL and TEMPORAL_ADDRESS of that
 * broker (skipped otherwise), the email row its dev mailbox, post_heima_login the TEE's private
 * key (--tee-key) and mint-aws-creds a data role (each skipped when absent).
 * Each row is warmed up first (a third of --duration, at most 3 s; not measured).
 * --smoke: one short round (c=4, 1.2 s per row) for CI; ratios are printed, not asserted.
 * Writes bench/results.json.
 * --soak: wallet login and mint-oidc-jwt side by side for that many seconds instead of the table;
 * every --soak-interval seconds the stack's RSS (API and worker share its process) and event-loop
 * delay (scripts/bench/probe.ts, loaded before it), the Temporal server's RSS and the calls made;
 * then whether the RSS stayed within 10 % of its value after the warm-up. Writes bench/soak.json.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { createPrivateKey, randomBytes, type KeyObject } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection, WithStartWorkflowOperation } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import autocannon from 'autocannon';
import Fastify from 'fastify';
import pg from 'pg';
import { hashTypedData, hexToBytes, keccak256, toHex } from 'viem';
import { LoginProofReplayedError, recordLogin } from '../services/logins';
import { contractReplayKey, createEvmSignatureVerifier, personalMessageDigest } from '../adapters/evm-signature';
import { resolveSecrets } from '../adapters/secrets';
import { brokerDataConverter } from '../adapters/temporal-options';
import { createPool } from '../db/pool';
import { loadConfig } from '../lib/config';
import { sha256Hex } from '../lib/digest';
import { buildStatelessWalletMessage } from '../lib/wallet-message';
import { deriveOmniAccount, type Identity } from '../lib/omni';
import { generateTeeKeyPair, signTeeJwt, teeClaims } from '../fixtures/tee/jwt';
import { benchPingUpdate, type benchEmptyWorkflow, type benchMintShapeWorkflow } from './bench/ceiling-workflow';
import { AkAccount, AkFlow, AkStage } from '../lib/search-attributes';
import type { ProbeAnswer } from './bench/probe';
import { breakdown, describeBreakdown, parseStat, sampleThreads, type ThreadBreakdown } from './bench/threads';
import { roundsSummary } from './bench/rounds';
import { findFreePort } from './temporal-dev-server';

const ROOT = join(__dirname, '..');
const BENCH_GCP_AUDIENCE = '//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/bench-pool/providers/bench-broker';

// ---------------------------------------------------------------------------------------------
// Signing without awaiting: libsecp256k1, ~0.1 ms per signature, inside autocannon's setupRequest.

interface Secp256k1 {
  ecdsaSign(msg: Uint8Array, key: Uint8Array): { signature: Uint8Array; recid: number };
  publicKeyCreate(key: Uint8Array, compressed: boolean): Uint8Array;
}
const secp = createRequire(__filename)('secp256k1') as Secp256k1;

interface Wallet {
  key: Uint8Array;
  address: string;
}
function newWallet(): Wallet {
  const key = randomBytes(32);
  const pub = secp.publicKeyCreate(key, false);
  return { key, address: `0x${keccak256(pub.subarray(1)).slice(-40)}` };
}
function digestSign(w: Wallet, digest: Uint8Array): string {
  const { signature, recid } = secp.ecdsaSign(digest, w.key);
  return `${toHex(signature)}${(27 + recid).toString(16)}`;
}
function personalSign(w: Wallet, message: string): string {
  return digestSign(w, personalMessageDigest(message));
}
function walletLoginBody(w: Wallet): string {
  const timestamp = Math.floor(Date.now() / 1000);
  return JSON.stringify({ address: w.address, signature: personalSign(w, buildStatelessWalletMessage(w.address, timestamp)), timestamp });
}
function statelessBody(): string {
  return walletLoginBody(newWallet());
}

// ---------------------------------------------------------------------------------------------
// Measurement: each step's latency from the moment its request is built to its response.

interface StepStats {
  latencies: number[];
  errors: number;
  sample?: string;
}
type Ctx = Record<string, unknown> & { t0?: number; cycleT0?: number; failed?: boolean };
/** The row of a multi-step flow's whole cycle (its first request sent → its last answer, completed cycles only). */
const cycleStep = (flow: string): string => `${flow}: whole cycle`;
type Stats = Map<string, StepStats>;

function record(stats: Stats, step: string, ok: boolean, ctx: Ctx, body: string): void {
  let s = stats.get(step);
  if (!s) stats.set(step, (s = { latencies: [], errors: 0 }));
  if (ctx.t0 !== undefined) s.latencies.push(performance.now() - ctx.t0);
  if (!ok) {
    s.errors++;
    s.sample ??= body.slice(0, 200);
    ctx.failed = true;
  }
}

interface Step {
  name: string;
  method: 'GET' | 'POST';
  /** The path (and query) of this request; null skips to the next cycle. */
  path?: (ctx: Ctx) => string | null;
  /** The JSON body; null skips to the next cycle. */
  body?: (ctx: Ctx) => string | null;
  headers?: Record<string, string>;
  /** Per-request headers, computed after the body (which may leave what they need in ctx). */
  headersFor?: (ctx: Ctx) => Record<string, string>;
  expect: number;
  /** Keeps what later steps need from the answer. */
  keep?: (body: string, ctx: Ctx) => void;
}

interface Row {
  flow: string;
  step: string;
  concurrency: number;
  rps: number;
  p50: number;
  p95: number;
  p99: number;
  errors: number;
  /** Calls still unanswered when the run ended (the flow's first row carries them). */
  open: number;
  requests: number;
  errorSample?: string;
  /** CPU per answered call over the measured run, ms: the stack's process (API and worker), its Temporal server, this process (load generator; the references' handlers and worker). */
  cpu?: { stack: number; temporal: number; bench: number };
  /** --threads: the stack process's CPU per answered call by thread, and Postgres' (scripts/bench/threads.ts). */
  threads?: ThreadBreakdown;
  /** --rounds: which round of the table the row is from. */
  round?: number;
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

/** The processes whose CPU each row reports (set once the stack is up; none against --url); with --threads, the rows the stack serves by thread. */
const cpuOf: { stack?: number; temporal: number[]; threads?: { stackUrl: string } } = { temporal: [] };

/** CPU time of a process, all its threads, in ms (Linux /proc: utime + stime); 0 when unreadable. */
async function procCpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  return (stat ? parseStat(stat)?.ms : undefined) ?? 0;
}

async function cpuNow(): Promise<{ stack: number; temporal: number; bench: number }> {
  const own = process.cpuUsage();
  const temporal = await Promise.all(cpuOf.temporal.map(procCpuMs));
  return { stack: cpuOf.stack ? await procCpuMs(cpuOf.stack) : 0, temporal: temporal.reduce((a, b) => a + b, 0), bench: (own.user + own.system) / 1000 };
}

/** Warm-up first (JIT, pools, the workflow cache: not measured), then the measured run, with the CPU it took per answered call. */
async function drive(baseUrl: string, flow: string, steps: Step[], connections: number, seconds: number, warmupSeconds: number): Promise<Row[]> {
  if (warmupSeconds > 0) await run(baseUrl, flow, steps, connections, warmupSeconds);
  const stack = cpuOf.threads?.stackUrl === baseUrl ? cpuOf.stack : undefined;
  const threadsBefore = stack !== undefined ? await sampleThreads(stack) : undefined;
  const before = await cpuNow();
  const rows = await run(baseUrl, flow, steps, connections, seconds);
  const after = await cpuNow();
  const threadsAfter = stack !== undefined ? await sampleThreads(stack) : undefined;
  const calls = rows.filter((r) => r.step !== cycleStep(flow)).reduce((n, r) => n + r.requests, 0);
  if (calls === 0) return rows;
  const per = (k: 'stack' | 'temporal' | 'bench') => (after[k] - before[k]) / calls;
  const threads = stack !== undefined && threadsBefore && threadsAfter ? breakdown(stack, threadsBefore, threadsAfter, calls) : undefined;
  return rows.map((r, i) =>
    i === 0 ? { ...r, cpu: { stack: per('stack'), temporal: per('temporal'), bench: per('bench') }, ...(threads ? { threads } : {}) } : r,
  );
}

async function run(baseUrl: string, flow: string, steps: Step[], connections: number, seconds: number, stats: Stats = new Map()): Promise<Row[]> {
  const requests = steps.map((s, i): autocannon.Request => ({
    method: s.method,
    path: '/',
    headers: { 'content-type': 'application/json', ...s.headers },
    // autocannon takes a falsy answer as "start the next cycle" (its types do not say so).
    setupRequest: (req: autocannon.Request, context: object) => {
      const ctx = context as Ctx;
      if (ctx.failed) return null as unknown as autocannon.Request;
      const path = s.path ? s.path(ctx) : undefined;
      const body = s.body ? s.body(ctx) : undefined;
      if (path === null || body === null) return null as unknown as autocannon.Request;
      const headers = s.headersFor ? { ...req.headers, ...s.headersFor(ctx) } : undefined;
      ctx.t0 = performance.now();
      return { ...req, ...(path !== undefined ? { path } : {}), ...(body !== undefined ? { body } : {}), ...(headers ? { headers } : {}) };
    },
    onResponse: (status: number, body: string, context: object) => {
      const ctx = context as Ctx;
      record(stats, s.name, status === s.expect, ctx, body);
      if (status === s.expect) s.keep?.(body, ctx);
      // A flow of several steps also has its whole cycle timed: first request sent → last answer.
      if (steps.length > 1 && i === 0) ctx.cycleT0 = ctx.t0;
      if (steps.length > 1 && i === steps.length - 1 && status === s.expect && ctx.cycleT0 !== undefined) {
        record(stats, cycleStep(flow), true, { t0: ctx.cycleT0 }, body);
      }
    },
  }));
  const t0 = performance.now();
  const result = await autocannon({ url: baseUrl, connections, duration: seconds, requests, timeout: 30 });
  const wall = (performance.now() - t0) / 1000;
  const transportErrors = result.errors + result.timeouts;
  const answered = [...stats.values()].reduce((n, st) => n + st.latencies.length, 0);
  const open = Math.max(0, result.requests.sent - answered - transportErrors);
  const named = steps.length > 1 ? [...steps.map((s) => s.name), cycleStep(flow)] : steps.map((s) => s.name);
  return named.map((name, i) => {
    const st = stats.get(name) ?? { latencies: [], errors: 0 };
    const sorted = st.latencies.sort((a, b) => a - b);
    return {
      flow,
      step: name,
      concurrency: connections,
      rps: (st.latencies.length - st.errors) / wall,
      p50: pct(sorted, 50),
      p95: pct(sorted, 95),
      p99: pct(sorted, 99),
      errors: st.errors + (i === 0 ? transportErrors : 0),
      open: i === 0 ? open : 0,
      requests: st.latencies.length,
      ...(st.sample ? { errorSample: st.sample } : {}),
    };
  });
}

// ---------------------------------------------------------------------------------------------
// The stack under test, and the two references.

interface Target {
  url: string;
  temporalAddress?: string;
  databaseUrl?: string;
  env: NodeJS.ProcessEnv;
  /** Signs the TEE's access JWTs for post_heima_login (the broker trusts its public half). */
  teeKey?: KeyObject;
  /** The stack's process (API and worker in one) and, for --soak, its probe (scripts/bench/probe.ts). */
  pid?: number;
  probe?: () => Promise<ProbeAnswer | undefined>;
  stop(): Promise<void>;
}

const RAISED_LIMITS = {
  BROKER_RATE_LIMIT_IP_PER_MINUTE: '1000000',
  BROKER_RATE_LIMIT_EMAIL_PER_HOUR: '1000000',
  BROKER_RATE_LIMIT_EMAIL_PER_NETWORK_PER_HOUR: '1000000',
  BROKER_RATE_LIMIT_WALLET_CHALLENGE_PER_MINUTE: '1000000',
  BROKER_RATE_LIMIT_MINT_PER_MINUTE: '1000000',
  BROKER_RATE_LIMIT_MINT_PER_IP_PER_MINUTE: '1000000',
  BROKER_RATE_LIMIT_APPROVAL_OPEN_PER_IP_PER_MINUTE: '1000000',
};

async function createDatabase(adminUrl: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `akb_bench_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`).finally(() => admin.end());
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).finally(() => c.end());
    },
  };
}

async function startStackProcess(opts: { probe: boolean; cpuProfDir?: string }): Promise<Target> {
  const adminUrl = process.env.DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const database = await createDatabase(adminUrl);
  const dataDir = await mkdtemp(join(tmpdir(), 'akb-bench-'));
  const port = await findFreePort();
  // The bench plays the TEE worker: the stack trusts this key (and starts no TEE fixture of its own).
  const tee = await generateTeeKeyPair();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NODE_ENV: 'development',
    LOG_LEVEL: 'warn',
    HOST: '127.0.0.1',
    PORT: String(port),
    BROKER_DATA_DIR: dataDir,
    DATABASE_URL: database.url,
    BROKER_TEE_JWT_PUBLIC_KEY: tee.publicKeyPem,
    ...RAISED_LIMITS,
  };
  delete env.TEMPORAL_ADDRESS;
  delete env.BROKER_TEE_JWKS_URL;
  const entry = join(ROOT, opts.probe ? 'scripts/bench/probed-stack.ts' : 'scripts/stack.ts');
  // --cpu-prof: V8 writes the stack process's profile (one file per thread) into the directory when it exits.
  const profile = opts.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', resolve(opts.cpuProfDir)] : [];
  const child: ChildProcess = spawn(process.execPath, [...profile, '--import', 'tsx', entry], {
    env,
    stdio: ['ignore', 'pipe', 'inherit', ...(opts.probe ? (['ipc'] as const) : [])],
    cwd: ROOT,
  });
  let out = '';
  const starting = new Promise<{ url: string; temporal: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the stack did not come up in 180 s:\n${out}`)), 180_000);
    child.once('exit', (code) => reject(new Error(`the stack exited (${code}):\n${out}`)));
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const api = /API\s+(http:\/\/\S+)/.exec(out);
      const temporal = /Temporal\s+(\S+:\d+)/.exec(out);
      if (api?.[1] && temporal?.[1] && /Ctrl-C stops everything/.test(out)) {
        clearTimeout(timer);
        resolve({ url: api[1], temporal: temporal[1] });
      }
    });
  });
  // A stack that never came up leaves no process, database or data directory behind.
  const up = await starting.catch(async (e: unknown) => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    await database.drop().catch(() => undefined);
    await rm(dataDir, { recursive: true, force: true });
    throw e;
  });
  child.removeAllListeners('exit');
  return {
    url: up.url,
    temporalAddress: up.temporal,
    databaseUrl: database.url,
    env,
    teeKey: tee.privateKey,
    ...(child.pid !== undefined ? { pid: child.pid } : {}),
    ...(opts.probe ? { probe: () => askProbe(child) } : {}),
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      await database.drop().catch(() => undefined);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

function askProbe(child: ChildProcess): Promise<ProbeAnswer | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off('message', onMessage);
      resolve(undefined);
    }, 5_000);
    const onMessage = (m: unknown) => {
      if ((m as { type?: unknown } | null)?.type !== 'bench-probe') return;
      clearTimeout(timer);
      child.off('message', onMessage);
      resolve(m as ProbeAnswer);
    };
    child.on('message', onMessage);
    child.send({ type: 'bench-probe' });
  });
}

/** Resident set of a process from /proc (Linux), in bytes; undefined when it cannot be read. */
async function procRss(pid: number): Promise<number | undefined> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => undefined);
  const kb = status && /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1];
  return kb ? Number(kb) * 1024 : undefined;
}

/** All descendants of a process (Linux /proc), e.g. the Temporal dev server under the stack. */
async function descendants(root: number): Promise<number[]> {
  const parent = new Map<number, number>();
  for (const name of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => undefined);
    const ppid = stat ? Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) : Number.NaN;
    if (Number.isInteger(ppid)) parent.set(Number(name), ppid);
  }
  const found: number[] = [];
  const seen = new Set([root]);
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, ppid] of parent) {
      if (!seen.has(pid) && seen.has(ppid)) {
        seen.add(pid);
        found.push(pid);
        grew = true;
      }
    }
  }
  return found;
}

/** The floor and the ceiling, each behind a bare Fastify handler on one loopback port. */
async function startReferences(target: Target): Promise<{ url: string; floor: boolean; ceiling: boolean; stop(): Promise<void> }> {
  const app = Fastify({ logger: false });
  const stops: (() => Promise<unknown>)[] = [];
  let floor = false;
  let ceiling = false;
  if (target.databaseUrl) {
    const config = loadConfig({ ...target.env, DATABASE_URL: target.databaseUrl });
    const secrets = await resolveSecrets(config);
    const db = createPool(target.databaseUrl, config.BROKER_DB_POOL_MAX);
    stops.push(() => db.end());
    const verifier = createEvmSignatureVerifier();
    const windowMs = config.BROKER_WALLET_WINDOW_SECONDS * 1000;
    app.post('/floor/wallet_login', async (request, reply) => {
      const { address, signature, timestamp } = request.body as { address: string; signature: string; timestamp: number };
      const nowMs = Date.now();
      if (Math.abs(nowMs - timestamp * 1000) > windowMs) return reply.code(410).send({ error: 'expired' });
      const message = buildStatelessWalletMessage(address, timestamp);
      const check = await verifier.verify({ address, message, signature });
      if (!check.valid) return reply.code(401).send({ error: 'unauthorized' });
      const jti = randomBytes(16).toString('hex');
      try {
        return await recordLogin(
          { config, secrets, db, now: Date.now },
          {
            method: 'wallet',
            identity: { type: 'evm', value: address },
            requestId: sha256Hex(signature),
            wallet: address,
            // The route's two keys (api/routes/wallet-login.ts): the signature's and the (address, message) one.
            consumeProof: {
              hash: check.replayKey,
              aliases: [contractReplayKey(address, message)],
              purpose: 'wallet_login',
              expiresAt: Math.floor((nowMs + windowMs) / 1000),
            },
          },
          { jti, idemKey: `login:floor:${jti}` },
        );
      } catch (e) {
        if (e instanceof LoginProofReplayedError) return reply.code(409).send({ error: 'conflict' });
        throw e;
      }
    });
    floor = true;
  }
  if (target.temporalAddress) {
    const config = loadConfig(target.env);
    const secrets = await resolveSecrets(config);
    const dataConverter = brokerDataConverter(secrets);
    const taskQueue = `bench-ceiling-${randomBytes(4).toString('hex')}`;
    const workflowBundle = await bundleWorkflowCode({ workflowsPath: require.resolve('./bench/ceiling-workflow'), logger: new DefaultLogger('WARN') });
    const nativeConnection = await NativeConnection.connect({ address: target.temporalAddress });
    const worker = await Worker.create({
      connection: nativeConnection,
      namespace: config.TEMPORAL_NAMESPACE,
      taskQueue,
      workflowBundle,
      dataConverter,
      activities: { benchNoop: async () => 'ok' },
    });
    const running = worker.run();
    stops.push(async () => {
      worker.shutdown();
      await running;
      await nativeConnection.close();
    });
    const connection = await Connection.connect({ address: target.temporalAddress });
    stops.push(() => connection.close());
    const client = new Client({ connection, namespace: config.TEMPORAL_NAMESPACE, dataConverter });
    app.post('/ceiling/empty', async () => {
      const startWorkflowOperation = new WithStartWorkflowOperation<typeof benchEmptyWorkflow>('benchEmptyWorkflow', {
        workflowId: `bench-ceiling/${randomBytes(16).toString('hex')}`,
        taskQueue,
        args: [],
        workflowIdConflictPolicy: 'USE_EXISTING',
      });
      return { answer: await client.workflow.executeUpdateWithStart(benchPingUpdate, { startWorkflowOperation }) };
    });
    // The mint's shape, empty: its client rides the worker's connection, so the start is eager as the broker's is.
    const eager = new Client({ connection: nativeConnection, namespace: config.TEMPORAL_NAMESPACE, dataConverter });
    for (const [path, startAttributes, upsert] of [
      ['/ceiling/mint-shape', false, false],
      ['/ceiling/mint-shape-sa-start', true, false],
      ['/ceiling/mint-shape-sa', true, true],
    ] as const) {
      app.post(path, async () => {
        const workflowId = `bench-shape/${randomBytes(16).toString('hex')}`;
        const answer = await eager.workflow.execute<typeof benchMintShapeWorkflow>('benchMintShapeWorkflow', {
          workflowId,
          taskQueue,
          args: [{ upsert }],
          requestEagerStart: true,
          ...(startAttributes
            ? {
                typedSearchAttributes: [
                  { key: AkFlow, value: 'mint' },
                  { key: AkStage, value: 'started' },
                  { key: AkAccount, value: workflowId },
                ],
              }
            : {}),
        });
        return { answer };
      });
    }
    ceiling = true;
  }
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  return {
    url,
    floor,
    ceiling,
    async stop() {
      await app.close();
      for (const s of stops.reverse()) await s().catch(() => undefined);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The flows.

async function sessionToken(url: string, wallet: Wallet = newWallet()): Promise<string> {
  const res = await fetch(`${url}/v1/session/wallet_login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: walletLoginBody(wallet) });
  if (res.status !== 200) throw new Error(`wallet_login for the mint session answered ${res.status}: ${await res.text()}`);
  return ((await res.json()) as { token: string }).token;
}

async function hasDevMailbox(url: string): Promise<boolean> {
  const res = await fetch(`${url}/_dev/mail?to=nobody%40example.com`);
  return res.status === 200;
}

/** Whether the broker mints AWS credentials (a data role and an STS to call); one real mint decides. */
async function canMintAws(url: string, token: string): Promise<boolean> {
  const res = await fetch(`${url}/v1/mint-aws-creds`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: '{}',
  });
  if (res.status === 200) return true;
  console.log(`[bench] mint-aws-creds skipped: the broker answered ${res.status} (${(await res.text()).slice(0, 200)})`);
  return false;
}

/** A TEE access JWT, as the Heima TEE signs it, for a fresh account per call: first-time bookkeeping each time. */
function teeLoginBody(tee: { key: KeyObject; clientId: string }) {
  return (ctx: Ctx): string => {
    const userId: Identity = { type: 'email', value: `bench-${randomBytes(8).toString('hex')}@example.com` };
    ctx.teeToken = signTeeJwt(tee.key, teeClaims(deriveOmniAccount(tee.clientId, userId), 'access', tee.clientId, Math.floor(Date.now() / 1000)));
    return JSON.stringify({ userId, clientId: tee.clientId, clientAuth: null, heimaLoginSuccess: true });
  };
}

/** A holder (its wallet signs decisions) and an agent bound by a grant that asks for approval of every mint. */
interface ApprovalParties {
  holder: Wallet;
  holderToken: string;
  agentToken: string;
}

async function approvalParties(url: string): Promise<ApprovalParties> {
  const [holder, agent] = [newWallet(), newWallet()];
  const [holderToken, agentToken] = await Promise.all([sessionToken(url, holder), sessionToken(url, agent)]);
  const post = async (path: string, body: unknown, token?: string): Promise<Record<string, string>> => {
    const res = await fetch(`${url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: JSON.stringify(body),
    });
    if (res.status >= 300) throw new Error(`${path} answered ${res.status}: ${await res.text()}`);
    return (await res.json()) as Record<string, string>;
  };
  const grant = await post('/v1/grants', { agent_address: agent.address, approval: { mode: 'always' } }, holderToken);
  await post(`/v1/grants/${grant.grant_id}/accept`, { signature: personalSign(agent, grant.acceptance_message ?? '') });
  return { holder, holderToken, agentToken };
}

/** request → decision → credential: the agent asks (202), the holder reads and signs (EIP-712), the agent collects. */
function mintApprovalSteps({ holder, holderToken, agentToken }: ApprovalParties): Step[] {
  const agentAuth = { authorization: `Bearer ${agentToken}` };
  const holderAuth = { authorization: `Bearer ${holderToken}` };
  return [
    {
      name: 'mint_approval: mint-oidc-jwt → 202',
      method: 'POST',
      path: () => '/v1/mint-oidc-jwt',
      headers: agentAuth,
      body: () => '{"reason":"bench"}',
      expect: 202,
      keep: (body, ctx) => {
        ctx.approvalId = (JSON.parse(body) as { approval_id: string }).approval_id;
      },
    },
    {
      name: 'mint_approval: holder reads the request',
      method: 'GET',
      path: (ctx) => `/v1/approvals/${ctx.approvalId as string}`,
      headers: holderAuth,
      expect: 200,
      keep: (body, ctx) => {
        ctx.typed = (JSON.parse(body) as { sign?: { approve: unknown } }).sign?.approve;
      },
    },
    {
      name: 'mint_approval: holder approves (EIP-712)',
      method: 'POST',
      path: (ctx) => `/v1/approvals/${ctx.approvalId as string}/decision`,
      headers: holderAuth,
      body: (ctx) =>
        ctx.typed
          ? JSON.stringify({ decision: 'approve', signature: digestSign(holder, hexToBytes(hashTypedData(ctx.typed as Parameters<typeof hashTypedData>[0]))) })
          : null,
      expect: 200,
    },
    {
      name: 'mint_approval: agent collects the credential',
      method: 'GET',
      path: (ctx) => `/v1/approvals/${ctx.approvalId as string}`,
      headers: agentAuth,
      expect: 200,
    },
  ];
}

interface FlowOptions {
  token: string;
  /** The mint_approval flow's parties, when it runs. */
  approval?: ApprovalParties;
  email: boolean;
  aws: boolean;
  tee?: { key: KeyObject; clientId: string };
}

function flows({ token, email, aws, tee, approval }: FlowOptions): Record<string, Step[]> {
  const f: Record<string, Step[]> = {
    wallet_login: [{ name: 'wallet_login (stateless)', method: 'POST', path: () => '/v1/session/wallet_login', body: statelessBody, expect: 200 }],
    siwe: [
      {
        name: 'wallet_challenge (siwe)',
        method: 'POST',
        path: () => '/v1/session/wallet_challenge',
        body: (ctx) => {
          const w = newWallet();
          ctx.key = toHex(w.key);
          return JSON.stringify({ address: w.address, format: 'siwe' });
        },
        expect: 200,
        keep: (body, ctx) => {
          const c = JSON.parse(body) as { request_id: string; message: string };
          ctx.requestId = c.request_id;
          ctx.message = c.message;
        },
      },
      {
        name: 'wallet_login {request_id}',
        method: 'POST',
        path: () => '/v1/session/wallet_login',
        body: (ctx) => {
          const key = Buffer.from((ctx.key as string).slice(2), 'hex');
          return JSON.stringify({ request_id: ctx.requestId, signature: personalSign({ key, address: '' }, ctx.message as string) });
        },
        expect: 200,
      },
    ],
    mint_oidc_jwt: [
      { name: 'mint-oidc-jwt', method: 'POST', path: () => '/v1/mint-oidc-jwt', headers: { authorization: `Bearer ${token}` }, body: () => '{}', expect: 200 },
    ],
    mint_gcp_token: [
      {
        name: 'mint-gcp-token',
        method: 'POST',
        path: () => '/v1/mint-gcp-token',
        headers: { authorization: `Bearer ${token}` },
        body: () => JSON.stringify({ audience: BENCH_GCP_AUDIENCE }),
        expect: 200,
      },
    ],
  };
  if (aws) {
    f.mint_aws_creds = [
      {
        name: 'mint-aws-creds (STS stand-in)',
        method: 'POST',
        path: () => '/v1/mint-aws-creds',
        headers: { authorization: `Bearer ${token}` },
        body: () => '{}',
        expect: 200,
      },
    ];
  }
  if (approval) f.mint_approval = mintApprovalSteps(approval);
  if (tee) {
    f.post_heima_login = [
      {
        name: 'post_heima_login (TEE JWT, new account)',
        method: 'POST',
        path: () => '/v3/account/post_heima_login',
        body: teeLoginBody(tee),
        headersFor: (ctx) => ({ authorization: `Bearer ${ctx.teeToken as string}` }),
        expect: 200,
      },
    ];
  }
  if (email) {
    f.email_login = [
      {
        name: 'email_code',
        method: 'POST',
        path: () => '/v1/session/email_code',
        body: (ctx) => {
          ctx.email = `bench-${randomBytes(8).toString('hex')}@example.com`;
          return JSON.stringify({ email: ctx.email });
        },
        expect: 202,
        keep: (body, ctx) => {
          ctx.requestId = (JSON.parse(body) as { request_id: string }).request_id;
        },
      },
      {
        name: '(dev mailbox read)',
        method: 'GET',
        path: (ctx) => `/_dev/mail?to=${encodeURIComponent(ctx.email as string)}`,
        expect: 200,
        keep: (body, ctx) => {
          const mail = (JSON.parse(body) as { text: string }[])[0];
          ctx.code = mail ? /\b(\d{6})\b/.exec(mail.text)?.[1] : undefined;
        },
      },
      {
        name: 'email_login (verify)',
        method: 'POST',
        path: () => '/v1/session/email_login',
        body: (ctx) => (ctx.code ? JSON.stringify({ request_id: ctx.requestId, code: ctx.code }) : null),
        expect: 200,
      },
    ];
  }
  return f;
}

// ---------------------------------------------------------------------------------------------
// --soak: steady load, and the stack's memory and event-loop delay over time.

interface SoakSample {
  /** Seconds since the load started. */
  t: number;
  /** The stack process: API and worker share it (scripts/stack.ts). */
  rss?: number;
  heapUsed?: number;
  loopDelay?: ProbeAnswer['loopDelay'];
  temporalRss?: number;
  /** Per flow, over the interval. */
  calls: Record<string, { rps: number; p50: number; errors: number }>;
}

async function temporalServerRss(stackPid: number): Promise<number | undefined> {
  let total: number | undefined;
  for (const pid of await descendants(stackPid)) {
    const comm = (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim();
    if (!comm.startsWith('temporal')) continue;
    total = (total ?? 0) + ((await procRss(pid)) ?? 0);
  }
  return total;
}

async function soak(target: Target, seconds: number, interval: number, concurrency: number): Promise<void> {
  const token = await sessionToken(target.url);
  const all = flows({ token, email: false, aws: false });
  const load: Record<string, Step[]> = { wallet_login: all.wallet_login ?? [], mint_oidc_jwt: all.mint_oidc_jwt ?? [] };
  const warmup = Math.max(interval, seconds / 5);
  console.log(
    `[soak] ${seconds} s of ${Object.keys(load).join(' + ')} at c=${concurrency} each; a sample every ${interval} s; RSS after ${warmup} s is the reference. ` +
      (target.probe
        ? 'API and worker run in one process (the stack): its RSS is both.'
        : 'RSS and event-loop delay need the stack the bench starts (not --url).'),
  );
  const stats = new Map<string, Stats>();
  const seen = new Map<string, number>();
  const t0 = performance.now();
  const running = Promise.all(
    Object.entries(load).map(([flow, steps]) => {
      const st: Stats = new Map();
      stats.set(flow, st);
      return run(target.url, flow, steps, concurrency, seconds, st);
    }),
  );
  const samples: SoakSample[] = [];
  const mb = (b: number | undefined) => (b === undefined ? '—' : (b / 2 ** 20).toFixed(1));
  for (let k = 1; k * interval <= seconds; k++) {
    await sleep(Math.max(0, t0 + k * interval * 1000 - performance.now()));
    const probe = await target.probe?.();
    const rss = probe?.rss ?? (target.pid ? await procRss(target.pid) : undefined);
    const sample: SoakSample = {
      t: Math.round((performance.now() - t0) / 1000),
      ...(rss !== undefined ? { rss } : {}),
      ...(probe ? { heapUsed: probe.heapUsed, loopDelay: probe.loopDelay } : {}),
      calls: {},
    };
    const temporalRss = target.pid ? await temporalServerRss(target.pid) : undefined;
    if (temporalRss !== undefined) sample.temporalRss = temporalRss;
    for (const [flow, st] of stats) {
      const step = [...st.values()][0] ?? { latencies: [], errors: 0 };
      const from = seen.get(flow) ?? 0;
      const fresh = step.latencies.slice(from).sort((a, b) => a - b);
      seen.set(flow, step.latencies.length);
      const errorsBefore = seen.get(`${flow}:errors`) ?? 0;
      seen.set(`${flow}:errors`, step.errors);
      sample.calls[flow] = { rps: fresh.length / interval, p50: pct(fresh, 50), errors: step.errors - errorsBefore };
    }
    samples.push(sample);
    const loop = sample.loopDelay
      ? `loop delay p50 ${sample.loopDelay.p50.toFixed(1)} p99 ${sample.loopDelay.p99.toFixed(1)} max ${sample.loopDelay.max.toFixed(1)} ms`
      : 'loop delay —';
    const calls = Object.entries(sample.calls)
      .map(([flow, c]) => `${flow} ${c.rps.toFixed(1)}/s p50 ${c.p50.toFixed(0)} ms ${c.errors} err`)
      .join(', ');
    console.log(
      `[soak] t=${sample.t}s api+worker RSS ${mb(sample.rss)} MB (heap ${mb(sample.heapUsed)}), ${loop}, Temporal server RSS ${mb(sample.temporalRss)} MB; ${calls}`,
    );
  }
  await running;

  const reference = samples.find((x) => x.t >= warmup && x.rss !== undefined);
  const after = reference ? samples.filter((x) => x.t > reference.t && x.rss !== undefined) : [];
  const drift = (x: SoakSample) => ((x.rss as number) / (reference?.rss as number) - 1) * 100;
  const worst = after.reduce<SoakSample | undefined>((w, x) => (w === undefined || Math.abs(drift(x)) > Math.abs(drift(w)) ? x : w), undefined);
  const within = worst === undefined ? undefined : Math.abs(drift(worst)) <= 10;
  // A fall (a major GC) is no leak: growth is reported on its own.
  const growth = after.length === 0 ? undefined : Math.max(...after.map(drift));
  const f = (v: number | undefined, d = 1) => (v === undefined || Number.isNaN(v) ? '—' : v.toFixed(d));
  const flowNames = Object.keys(load);
  console.log(
    [
      '',
      `| t s | API+worker RSS MB | heap MB | loop delay p50 / p99 / max ms | Temporal server RSS MB | ${flowNames.map((n) => `${n} rps / p50 ms / errors`).join(' | ')} |`,
      `|---|---|---|---|---|${flowNames.map(() => '---|').join('')}`,
      ...samples.map(
        (x) =>
          `| ${x.t} | ${mb(x.rss)} | ${mb(x.heapUsed)} | ${x.loopDelay ? `${f(x.loopDelay.p50)} / ${f(x.loopDelay.p99)} / ${f(x.loopDelay.max)}` : '—'} | ${mb(x.temporalRss)} | ${flowNames
            .map((n) => {
              const c = x.calls[n];
              return c ? `${f(c.rps)} / ${f(c.p50, 0)} / ${c.errors}` : '—';
            })
            .join(' | ')} |`,
      ),
      '',
    ].join('\n'),
  );
  const verdict =
    within === undefined
      ? 'RSS: no sample after the warm-up to compare (run longer than two intervals past it, against the stack the bench starts)'
      : `API+worker RSS after warm-up: ${mb(reference?.rss)} MB at t=${reference?.t}s; the farthest later sample ${mb(worst?.rss)} MB at t=${worst?.t}s (${drift(worst as SoakSample) >= 0 ? '+' : ''}${f(drift(worst as SoakSample))} %): ${within ? 'within' : 'NOT within'} 10 %; ` +
        `largest growth ${f(growth)} % (${(growth as number) <= 10 ? 'at most' : 'more than'} 10 %)`;
  console.log(`[soak] ${verdict}`);
  await mkdir(join(ROOT, 'bench'), { recursive: true });
  await writeFile(
    join(ROOT, 'bench/soak.json'),
    `${JSON.stringify({ at: new Date().toISOString(), seconds, interval, concurrency, warmup, samples, withinTenPercent: within ?? null, largestGrowthPercent: growth ?? null }, null, 2)}\n`,
  );
  console.log('[bench] wrote bench/soak.json');
}

// ---------------------------------------------------------------------------------------------

interface Args {
  url?: string;
  concurrency: number[];
  duration: number;
  warmup: number;
  smoke: boolean;
  /** Rows to run (flow names, `floor`, `ceiling`); all when absent. */
  only?: string[];
  /** --soak <seconds>: steady load instead of the table; memory and event-loop delay every soakInterval s. */
  soak?: number;
  soakInterval: number;
  /** --tee-key <pem>: the TEE's private key, for post_heima_login against --url. */
  teeKeyFile?: string;
  /** --cpu-prof <dir>: the stack process (API + worker) writes V8 CPU profiles there when it stops. */
  cpuProfDir?: string;
  /** --threads: also the stack process's CPU per call by thread, and Postgres' (Linux). */
  threads: boolean;
  /** --rounds N: the table N times, each ratio to its own round's ceiling, then the medians. */
  rounds: number;
}

const USAGE =
  'usage: npm run bench -- [--concurrency 1,16,64] [--duration 10] [--flows floor,ceiling,shape,shape_sa_start,shape_sa,wallet_login,siwe,mint_oidc_jwt,mint_gcp_token,mint_aws_creds,mint_approval,post_heima_login,email_login] ' +
  '[--url http://host:port [--tee-key tee-private.pem]] [--smoke] [--soak 300 [--soak-interval 10] [--concurrency 8]] [--cpu-prof dir] [--threads] [--rounds 3]';

function parseArgs(argv: string[]): Args {
  const get = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const smoke = argv.includes('--smoke');
  const soak = argv.includes('--soak') ? Number(get('--soak')) : undefined;
  const soakInterval = Number(get('--soak-interval') ?? 10);
  const concurrency = (get('--concurrency') ?? (smoke ? '4' : soak !== undefined ? '8' : '1,16,64')).split(',').map(Number);
  // The smoke: 8 rows × (1.2 s + 0.3 s warm-up) ≈ 12 s of load.
  const duration = Number(get('--duration') ?? (smoke ? 1.2 : 10));
  if (concurrency.some((c) => !Number.isInteger(c) || c < 1) || !(duration > 0) || (soak !== undefined && !(soak >= soakInterval && soakInterval > 0))) {
    throw new Error(USAGE);
  }
  const only = get('--flows')?.split(',');
  const teeKeyFile = get('--tee-key');
  const cpuProfDir = get('--cpu-prof');
  const rounds = Number(get('--rounds') ?? 1);
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 20) throw new Error(USAGE);
  return {
    url: get('--url'),
    concurrency,
    duration,
    warmup: smoke ? 0.3 : Math.min(3, duration / 3),
    smoke,
    ...(only ? { only } : {}),
    ...(soak !== undefined ? { soak } : {}),
    soakInterval,
    ...(teeKeyFile ? { teeKeyFile } : {}),
    ...(cpuProfDir ? { cpuProfDir } : {}),
    threads: argv.includes('--threads'),
    rounds,
  };
}

/** A row as the table prints it: with its rate against the floor's or the ceiling's at the same c, and its p50 against the ceiling's. */
type TableRow = Row & { full_floor?: number; full_ceiling?: number; p50_ceiling?: number };

function table(rows: TableRow[]): string {
  const f = (v: number | undefined, d = 1) => (v === undefined || Number.isNaN(v) ? '—' : v.toFixed(d));
  const lines = [
    '| flow / call | c | rps | p50 ms | p95 ms | p99 ms | errors | open at end | full/floor | full/ceiling | CPU ms/call stack / Temporal / bench |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.step}${r.round ? ` (round ${r.round})` : ''} | ${r.concurrency} | ${f(r.rps, 0)} | ${f(r.p50)} | ${f(r.p95)} | ${f(r.p99)} | ${r.errors} | ${r.open} | ${f(r.full_floor, 2)} | ${f(r.full_ceiling, 2)} | ${r.cpu ? `${f(r.cpu.stack)} / ${f(r.cpu.temporal)} / ${f(r.cpu.bench)}` : '—'} |`,
    ),
  ];
  return lines.join('\n');
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  Runtime.install({ logger: new DefaultLogger('WARN'), shutdownSignals: [] });
  const target: Target = args.url
    ? {
        url: args.url.replace(/\/+$/, ''),
        temporalAddress: process.env.TEMPORAL_ADDRESS,
        databaseUrl: process.env.DATABASE_URL,
        env: { ...process.env },
        ...(args.teeKeyFile ? { teeKey: createPrivateKey(await readFile(args.teeKeyFile, 'utf8')) } : {}),
        stop: async () => undefined,
      }
    : await startStackProcess({ probe: args.soak !== undefined, ...(args.cpuProfDir ? { cpuProfDir: args.cpuProfDir } : {}) });
  console.log(`[bench] broker ${target.url}${target.temporalAddress ? `, Temporal ${target.temporalAddress}` : ''}`);
  if (target.pid !== undefined) {
    cpuOf.stack = target.pid;
    cpuOf.temporal = await descendants(target.pid);
    if (args.threads) cpuOf.threads = { stackUrl: target.url };
  }
  if (args.soak !== undefined) {
    try {
      await soak(target, args.soak, args.soakInterval, args.concurrency[0] ?? 8);
    } finally {
      await target.stop();
    }
    return;
  }
  const refs = await startReferences(target);
  try {
    const token = await sessionToken(target.url);
    const email = await hasDevMailbox(target.url);
    const wantedFlow = (name: string) => !args.only || args.only.includes(name);
    const aws = wantedFlow('mint_aws_creds') && (await canMintAws(target.url, token));
    const tee = target.teeKey ? { key: target.teeKey, clientId: loadConfig(target.env).BROKER_CLIENT_ID } : undefined;
    const approval = wantedFlow('mint_approval') ? await approvalParties(target.url) : undefined;
    if (!tee && wantedFlow('post_heima_login'))
      console.log('[bench] post_heima_login skipped: no TEE key (with --url, pass --tee-key <the TEE private key PEM>)');
    const all: TableRow[] = [];
    // --rounds N: the whole table N times over, interleaved, so each ratio compares rows run minutes apart at most.
    for (let round = 1; round <= args.rounds; round++)
      for (const c of args.concurrency) {
        const rows: Row[] = [];
        const refRows: Record<string, Row | undefined> = {};
        if (refs.floor && wantedFlow('floor')) {
          const [r] = await drive(
            refs.url,
            'floor',
            [{ name: 'floor: wallet login work, bare handler', method: 'POST', path: () => '/floor/wallet_login', body: statelessBody, expect: 200 }],
            c,
            args.duration,
            args.warmup,
          );
          refRows.floor = r;
          if (r) rows.push(r);
        }
        if (refs.ceiling && wantedFlow('ceiling')) {
          const [r] = await drive(
            refs.url,
            'ceiling',
            [{ name: 'ceiling: empty workflow, Update-with-Start', method: 'POST', path: () => '/ceiling/empty', body: () => '{}', expect: 200 }],
            c,
            args.duration,
            args.warmup,
          );
          refRows.ceiling = r;
          if (r) rows.push(r);
        }
        // The empty mint shapes (scripts/bench/ceiling-workflow.ts): only when named in --flows.
        for (const [flow, name, path] of [
          ['shape', 'empty mint shape: start + local activity + result', '/ceiling/mint-shape'],
          ['shape_sa_start', 'empty mint shape + its start search attributes', '/ceiling/mint-shape-sa-start'],
          ['shape_sa', 'empty mint shape + start search attributes + upsert', '/ceiling/mint-shape-sa'],
        ] as const) {
          if (!refs.ceiling || !args.only?.includes(flow)) continue;
          rows.push(
            ...(await drive(refs.url, flow, [{ name, method: 'POST', path: () => path, body: () => '{}', expect: 200 }], c, args.duration, args.warmup)),
          );
        }
        for (const [flow, steps] of Object.entries(flows({ token, email, aws, ...(tee ? { tee } : {}), ...(approval ? { approval } : {}) }))) {
          if (!wantedFlow(flow)) continue;
          for (const r of await drive(target.url, flow, steps, c, args.duration, args.warmup)) rows.push(r);
        }
        for (const r of rows) {
          const row: TableRow = { ...r, ...(args.rounds > 1 ? { round } : {}) };
          if (r.flow === 'wallet_login' && refRows.floor?.rps) row.full_floor = r.rps / refRows.floor.rps;
          if (r.flow !== 'floor' && r.flow !== 'ceiling' && r.flow !== 'wallet_login' && refRows.ceiling?.rps) {
            row.full_ceiling = r.rps / refRows.ceiling.rps;
            row.p50_ceiling = r.p50 / refRows.ceiling.p50;
          }
          all.push(row);
          console.log(
            `[bench] c=${c} ${r.step}: ${r.rps.toFixed(0)}/s p50 ${r.p50.toFixed(1)} ms, ${r.errors} errors, ${r.open} open at end${r.errorSample ? ` (e.g. ${r.errorSample})` : ''}`,
          );
        }
      }
    console.log(`\n${table(all)}\n`);
    console.log(
      "full/floor: the flow's rps over the floor's at the same c; full/ceiling: over the empty workflow's. Email and SIWE rows count completed calls of each step of a cycle.",
    );
    if (args.rounds > 1) for (const line of roundsSummary(all)) console.log(line);
    // --threads: the stack process by thread, for the rows it served (the references run in this process).
    for (const r of all) if (r.threads) console.log(`[bench] c=${r.concurrency} ${r.step}, CPU ms/call: ${describeBreakdown(r.threads)}`);
    await mkdir(join(ROOT, 'bench'), { recursive: true });
    await writeFile(join(ROOT, 'bench/results.json'), `${JSON.stringify({ at: new Date().toISOString(), args, rows: all }, null, 2)}\n`);
    console.log('[bench] wrote bench/results.json');
  } finally {
    await refs.stop();
    await target.stop();
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
