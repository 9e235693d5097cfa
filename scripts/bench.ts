/**
 * `npm run bench`: closed-loop clients over real HTTP against the broker (autocannon), per flow
 * and per concurrency, next to two references measured in the same run on the same machine:
 *
 *   floor     the stateless wallet login's own work (ecrecover, one transaction through the same
 *             recordLogin the broker calls, ES256 session token) in a bare Fastify handler
 *   ceiling   an empty workflow answering one Update, started by Update-with-Start through a bare
 *             Fastify handler, on the stack's Temporal server
 *
 *   npm run bench [-- --concurrency 1,16,64] [--duration 10] [--flows a,b] [--url http://host:port] [--smoke]
 *
 * Without --url it starts the stack (`npm start`'s scripts/stack.ts, its own Temporal dev server,
 * a fresh database on DATABASE_URL's server or the local Postgres, rate limits raised) and stops
 * it at the end. With --url, the floor and ceiling need DATABASE_URL and TEMPORAL_ADDRESS of that
 * broker (skipped otherwise) and the email row needs its dev mailbox (skipped when absent).
 * Each row is warmed up first (a third of --duration, at most 3 s; not measured).
 * --smoke: one short round (c=4, ~1.5 s per row) for CI; ratios are printed, not asserted.
 * Writes bench/results.json.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client, Connection, WithStartWorkflowOperation } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import autocannon from 'autocannon';
import Fastify from 'fastify';
import pg from 'pg';
import { keccak256, toHex } from 'viem';
import { LoginProofReplayedError, recordLogin } from '../activities/login-completion';
import { createEvmSignatureVerifier, personalMessageDigest } from '../adapters/evm-signature';
import { resolveSecrets } from '../adapters/secrets';
import { brokerDataConverter } from '../adapters/temporal-options';
import { createPool } from '../db/pool';
import { loadConfig } from '../lib/config';
import { sha256Hex } from '../lib/digest';
import { buildStatelessWalletMessage } from '../lib/wallet-message';
import { benchPingUpdate, type benchEmptyWorkflow } from './bench/ceiling-workflow';
import { findFreePort } from './temporal-dev-server';

const ROOT = join(__dirname, '..');

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
function personalSign(w: Wallet, message: string): string {
  const { signature, recid } = secp.ecdsaSign(personalMessageDigest(message), w.key);
  return `${toHex(signature)}${(27 + recid).toString(16)}`;
}
function statelessBody(): string {
  const w = newWallet();
  const timestamp = Math.floor(Date.now() / 1000);
  return JSON.stringify({ address: w.address, signature: personalSign(w, buildStatelessWalletMessage(w.address, timestamp)), timestamp });
}

// ---------------------------------------------------------------------------------------------
// Measurement: each step's latency from the moment its request is built to its response.

interface StepStats {
  latencies: number[];
  errors: number;
  sample?: string;
}
type Ctx = Record<string, unknown> & { t0?: number; failed?: boolean };
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
}

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

/** Warm-up first (JIT, pools, the workflow cache: not measured), then the measured run. */
async function drive(baseUrl: string, flow: string, steps: Step[], connections: number, seconds: number, warmupSeconds: number): Promise<Row[]> {
  if (warmupSeconds > 0) await run(baseUrl, flow, steps, connections, warmupSeconds);
  return run(baseUrl, flow, steps, connections, seconds);
}

async function run(baseUrl: string, flow: string, steps: Step[], connections: number, seconds: number): Promise<Row[]> {
  const stats: Stats = new Map();
  const requests = steps.map((s): autocannon.Request => ({
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
      ctx.t0 = performance.now();
      return { ...req, ...(path !== undefined ? { path } : {}), ...(body !== undefined ? { body } : {}) };
    },
    onResponse: (status: number, body: string, context: object) => {
      const ctx = context as Ctx;
      record(stats, s.name, status === s.expect, ctx, body);
      if (status === s.expect) s.keep?.(body, ctx);
    },
  }));
  const t0 = performance.now();
  const result = await autocannon({ url: baseUrl, connections, duration: seconds, requests, timeout: 30 });
  const wall = (performance.now() - t0) / 1000;
  const transportErrors = result.errors + result.timeouts;
  const answered = [...stats.values()].reduce((n, st) => n + st.latencies.length, 0);
  const open = Math.max(0, result.requests.sent - answered - transportErrors);
  return steps.map((s, i) => {
    const st = stats.get(s.name) ?? { latencies: [], errors: 0 };
    const sorted = st.latencies.sort((a, b) => a - b);
    return {
      flow,
      step: s.name,
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
  stop(): Promise<void>;
}

const RAISED_LIMITS = {
  BROKER_RATE_LIMIT_IP_PER_MINUTE: '1000000',
  BROKER_RATE_LIMIT_EMAIL_PER_HOUR: '1000000',
  BROKER_RATE_LIMIT_WALLET_CHALLENGE_PER_MINUTE: '1000000',
  BROKER_RATE_LIMIT_MINT_PER_MINUTE: '1000000',
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

async function startStackProcess(): Promise<Target> {
  const adminUrl = process.env.DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const database = await createDatabase(adminUrl);
  const dataDir = await mkdtemp(join(tmpdir(), 'akb-bench-'));
  const port = await findFreePort();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NODE_ENV: 'development',
    LOG_LEVEL: 'warn',
    HOST: '127.0.0.1',
    PORT: String(port),
    BROKER_DATA_DIR: dataDir,
    DATABASE_URL: database.url,
    ...RAISED_LIMITS,
  };
  delete env.TEMPORAL_ADDRESS;
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts/stack.ts')], { env, stdio: ['ignore', 'pipe', 'inherit'], cwd: ROOT });
  let out = '';
  const up = await new Promise<{ url: string; temporal: string }>((resolve, reject) => {
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
  child.removeAllListeners('exit');
  return {
    url: up.url,
    temporalAddress: up.temporal,
    databaseUrl: database.url,
    env,
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
      const check = await verifier.verify({ address, message: buildStatelessWalletMessage(address, timestamp), signature });
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
            consumeProof: { hash: check.replayKey, purpose: 'wallet_login', expiresAt: Math.floor((nowMs + windowMs) / 1000) },
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
    const worker = await Worker.create({ connection: nativeConnection, namespace: config.TEMPORAL_NAMESPACE, taskQueue, workflowBundle, dataConverter });
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

async function sessionToken(url: string): Promise<string> {
  const res = await fetch(`${url}/v1/session/wallet_login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: statelessBody() });
  if (res.status !== 200) throw new Error(`wallet_login for the mint session answered ${res.status}: ${await res.text()}`);
  return ((await res.json()) as { token: string }).token;
}

async function hasDevMailbox(url: string): Promise<boolean> {
  const res = await fetch(`${url}/_dev/mail?to=nobody%40example.com`);
  return res.status === 200;
}

function flows(token: string, email: boolean): Record<string, Step[]> {
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
    mint_oidc_jwt: [{ name: 'mint-oidc-jwt', method: 'POST', path: () => '/v1/mint-oidc-jwt', headers: { authorization: `Bearer ${token}` }, body: () => '{}', expect: 200 }],
  };
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

interface Args {
  url?: string;
  concurrency: number[];
  duration: number;
  warmup: number;
  smoke: boolean;
  /** Rows to run (flow names, `floor`, `ceiling`); all when absent. */
  only?: string[];
}

function parseArgs(argv: string[]): Args {
  const get = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const smoke = argv.includes('--smoke');
  const concurrency = (get('--concurrency') ?? (smoke ? '4' : '1,16,64')).split(',').map(Number);
  const duration = Number(get('--duration') ?? (smoke ? 1.5 : 10));
  if (concurrency.some((c) => !Number.isInteger(c) || c < 1) || !(duration > 0)) {
    throw new Error('usage: npm run bench -- [--concurrency 1,16,64] [--duration 10] [--flows floor,ceiling,wallet_login,siwe,mint_oidc_jwt,email_login] [--url http://host:port] [--smoke]');
  }
  const only = get('--flows')?.split(',');
  return { url: get('--url'), concurrency, duration, warmup: smoke ? 0.3 : Math.min(3, duration / 3), smoke, ...(only ? { only } : {}) };
}

function table(rows: (Row & { full_floor?: number; full_ceiling?: number })[]): string {
  const f = (v: number | undefined, d = 1) => (v === undefined || Number.isNaN(v) ? '—' : v.toFixed(d));
  const lines = [
    '| flow / call | c | rps | p50 ms | p95 ms | p99 ms | errors | open at end | full/floor | full/ceiling |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.step} | ${r.concurrency} | ${f(r.rps, 0)} | ${f(r.p50)} | ${f(r.p95)} | ${f(r.p99)} | ${r.errors} | ${r.open} | ${f(r.full_floor, 2)} | ${f(r.full_ceiling, 2)} |`,
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
        stop: async () => undefined,
      }
    : await startStackProcess();
  console.log(`[bench] broker ${target.url}${target.temporalAddress ? `, Temporal ${target.temporalAddress}` : ''}`);
  const refs = await startReferences(target);
  try {
    const token = await sessionToken(target.url);
    const email = await hasDevMailbox(target.url);
    const all: (Row & { full_floor?: number; full_ceiling?: number })[] = [];
    for (const c of args.concurrency) {
      const rows: Row[] = [];
      const refRows: Record<string, Row | undefined> = {};
      const wanted = (name: string) => !args.only || args.only.includes(name);
      if (refs.floor && wanted('floor')) {
        const [r] = await drive(refs.url, 'floor', [{ name: 'floor: wallet login work, bare handler', method: 'POST', path: () => '/floor/wallet_login', body: statelessBody, expect: 200 }], c, args.duration, args.warmup);
        refRows.floor = r;
        if (r) rows.push(r);
      }
      if (refs.ceiling && wanted('ceiling')) {
        const [r] = await drive(refs.url, 'ceiling', [{ name: 'ceiling: empty workflow, Update-with-Start', method: 'POST', path: () => '/ceiling/empty', body: () => '{}', expect: 200 }], c, args.duration, args.warmup);
        refRows.ceiling = r;
        if (r) rows.push(r);
      }
      for (const [flow, steps] of Object.entries(flows(token, email))) {
        if (!wanted(flow)) continue;
        for (const r of await drive(target.url, flow, steps, c, args.duration, args.warmup)) rows.push(r);
      }
      for (const r of rows) {
        const row: Row & { full_floor?: number; full_ceiling?: number } = { ...r };
        if (r.flow === 'wallet_login' && refRows.floor?.rps) row.full_floor = r.rps / refRows.floor.rps;
        if (r.flow !== 'floor' && r.flow !== 'ceiling' && r.flow !== 'wallet_login' && refRows.ceiling?.rps) row.full_ceiling = r.rps / refRows.ceiling.rps;
        all.push(row);
        console.log(`[bench] c=${c} ${r.step}: ${r.rps.toFixed(0)}/s p50 ${r.p50.toFixed(1)} ms, ${r.errors} errors, ${r.open} open at end${r.errorSample ? ` (e.g. ${r.errorSample})` : ''}`);
      }
    }
    console.log(`\n${table(all)}\n`);
    console.log('full/floor: the flow\'s rps over the floor\'s at the same c; full/ceiling: over the empty workflow\'s. Email and SIWE rows count completed calls of each step of a cycle.');
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
