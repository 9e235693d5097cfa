/**
 * `npm run test:faults`: fault tests against the production shape (`npm run cluster`). With a
 * bounded load of email logins and OIDC mints running through nginx (TLS), it `kill -9`s one
 * Temporal node, one worker and one API process in turn, and prints for each fault the client
 * errors seen (every failed attempt, also those a retry then fixed), the flows that failed after
 * retries, and the stall (longest gap between two completed flows). A Temporal node or a worker
 * lost must cost no client-visible error at all; an API process killed may (the requests it held),
 * but no flow may fail. After the faults it checks
 * the audit chain (npm run audit:verify), that every mint intent has its outcome row, that every
 * session token a client received is on record, and that no user was created twice.
 * When it starts the cluster itself, the broker reaches Postgres and the Temporal balancer through
 * proxies this test controls, and it also makes each of them hang (no answer, no refusal) for at
 * least 10 s: every call must be answered within 2 s meanwhile (503 `unavailable` when it needs
 * the part), /readyz must name the part, and everything must recover without a restart.
 *
 * Uses a running cluster (BROKER_DATA_DIR/cluster/state.json with live pids) or starts one with
 * the per-address rate limit raised for the load, and stops it at the end.
 * Env: FAULT_CLIENTS (default 4), FAULT_WARMUP_S (5), FAULT_AFTER_S (25), FAULT_SKIP_KILLS.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { CONSOLE_PAGES } from '../api/plugins/console';
import type { ClusterState } from './cluster';
import { startHangProxy, type HangProxy } from './cluster/hang-proxy';
import { publicExposure } from './cluster/public-routes';
import { describeHangAnswer, HANG_CALLS, hangProblems, type HangAnswer, type HungPart } from './cluster/hang-verdict';
import { defaultClusterDatabaseUrl } from './cluster/layout';

const ROOT = resolve(__dirname, '..');
const log = (line: string) => console.log(`[faults] ${line}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Reply {
  status: number;
  body: Record<string, unknown>;
  retryAfter?: string;
}

let ca: Buffer;
let state: ClusterState;

function call(method: string, path: string, body?: unknown, token?: string, extraHeaders: Record<string, string> = {}): Promise<Reply> {
  const data = body === undefined ? undefined : JSON.stringify(body);
  const url = new URL(path, `https://127.0.0.1:${state.layout.https}`);
  return new Promise((done, fail) => {
    const req = request(
      url,
      {
        method,
        ca,
        servername: 'localhost',
        timeout: 30_000,
        headers: {
          ...(data ? { 'content-type': 'application/json' } : {}),
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...extraHeaders,
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          let parsed: Record<string, unknown> = {};
          try {
            parsed = JSON.parse(text) as Record<string, unknown>;
          } catch {
            parsed = { raw: text.slice(0, 200) };
          }
          const retryAfter = res.headers['retry-after'];
          done({ status: res.statusCode ?? 0, body: parsed, ...(typeof retryAfter === 'string' ? { retryAfter } : {}) });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', fail);
    req.end(data);
  });
}

/**
 * Every route of the OpenAPI document and every console page, through nginx: each must reach the
 * broker (which answers a PATCH, a method no route takes, with its own 404) and the codec and dev
 * routes must not (nginx's own 404, deploy/nginx/agentkeys-broker.conf). The live counterpart of
 * test/nginx-routes.test.ts. Answers the paths served wrongly.
 */
async function routesThroughNginx(): Promise<{ checked: number; wrong: string[] }> {
  const doc = await call('GET', '/docs/json');
  const documented = Object.keys((doc.body.paths ?? {}) as Record<string, unknown>).map((p) => p.replace(/\{[^}]+\}/g, 'x1'));
  const paths = [...documented, ...CONSOLE_PAGES, '/console/app.js'];
  const wrong: string[] = [];
  for (const path of paths) {
    const r = await call('PATCH', path);
    const byNginx = r.status === 404 && r.body.message === 'no such route';
    const opsOnly = publicExposure(path) === 'ops';
    if (byNginx !== opsOnly) wrong.push(`${path}: ${byNginx ? "nginx's own 404" : `reached the broker (${r.status})`}`);
  }
  return { checked: paths.length, wrong };
}

async function devMail(to: string): Promise<string | undefined> {
  const res = await fetch(state.devMailUrl.replace('<address>', encodeURIComponent(to)));
  const mails = (await res.json()) as { text: string }[];
  return mails[0]?.text.match(/code is (\d{6})/)?.[1];
}

interface Stats {
  ok: number;
  failedFlows: number;
  errors: number;
  errorKinds: Map<string, number>;
  completions: number[];
  tokens: string[];
  jwts: number;
  /** email_code / email_login calls that succeeded only when repeated under their Idempotency-Key. */
  repeatedLogins: number;
}

const newStats = (): Stats => ({ ok: 0, failedFlows: 0, errors: 0, errorKinds: new Map(), completions: [], tokens: [], jwts: 0, repeatedLogins: 0 });

/**
 * One step with client retries (network errors, 502/503/504: what a client retries); every failed
 * attempt is counted. A retry repeats the call as it was: email_code and email_login carry an
 * Idempotency-Key, so a repeat whose first try got through gets its answer (the same request; a
 * fresh session for the same code) instead of 429 or 410 (docs/cluster.md, runs 3 and 4).
 */
async function step(stats: Stats, name: string, fn: () => Promise<Reply>, okStatus: number): Promise<Reply> {
  let last = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const r = await fn();
      if (r.status === okStatus) {
        if (attempt > 0 && name.startsWith('email_')) stats.repeatedLogins += 1;
        return r;
      }
      last = `${name} ${r.status} ${JSON.stringify(r.body.error ?? r.body.raw ?? '')}`;
      if (![502, 503, 504].includes(r.status)) break;
    } catch (e) {
      last = `${name} ${(e as Error).message}`;
    }
    stats.errors += 1;
    stats.errorKinds.set(last, (stats.errorKinds.get(last) ?? 0) + 1);
    await sleep(500 * (attempt + 1));
  }
  throw new Error(last);
}

let seq = 0;
/** One login + mint, each call retried as it was (step). */
async function flow(stats: Stats): Promise<void> {
  const email = `fault-${Date.now().toString(36)}-${process.pid}-${seq++}@example.com`;
  const codeKey = { 'idempotency-key': `code-${randomUUID()}` };
  const code = await step(stats, 'email_code', () => call('POST', '/v1/session/email_code', { email }, undefined, codeKey), 202);
  const requestId = String(code.body.request_id);
  let otp: string | undefined;
  for (let i = 0; i < 300 && !otp; i++) {
    otp = await devMail(email);
    if (!otp) await sleep(100);
  }
  if (!otp) throw new Error('email_code: no mail within 30 s');
  const loginKey = { 'idempotency-key': `login-${randomUUID()}` };
  const login = await step(stats, 'email_login', () => call('POST', '/v1/session/email_login', { request_id: requestId, code: otp }, undefined, loginKey), 200);
  const token = String(login.body.token);
  stats.tokens.push(token);
  await step(stats, 'mint-oidc-jwt', () => call('POST', '/v1/mint-oidc-jwt', {}, token), 200);
  stats.jwts += 1;
}

/** Runs `clients` loops of flows until `until()` says stop. */
async function load(stats: Stats, clients: number, until: () => boolean): Promise<void> {
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (!until()) {
        try {
          await flow(stats);
          stats.ok += 1;
          stats.completions.push(Date.now());
        } catch (e) {
          stats.failedFlows += 1;
          const k = `flow failed: ${(e as Error).message}`;
          stats.errorKinds.set(k, (stats.errorKinds.get(k) ?? 0) + 1);
        }
      }
    }),
  );
}

/**
 * `what` hangs (every connection through `proxy` stalls: no answer, no refusal) for at least 10 s:
 * whether the API answers within 2 s meanwhile (503 `unavailable` for what needs the part, the
 * normal answer otherwise, /readyz naming the part: scripts/cluster/hang-verdict.ts), and whether
 * everything recovers without a restart. False when any of that fails.
 */
async function hangFault(what: string, part: HungPart, proxy: HangProxy, results: string[], all: Stats[]): Promise<boolean> {
  const stats = newStats();
  await flow(stats);
  const token = stats.tokens[0]!;
  const opsToken = (await readFile(state.opsTokenFile, 'utf8')).trim();
  const pidsBefore = { ...state.pids };
  proxy.hang();
  const hungAt = Date.now();
  log(`${what} unreachable: every connection through the proxy hangs`);
  const timed = async (name: string, fn: () => Promise<Omit<HangAnswer, 'call' | 'ms'>>): Promise<HangAnswer> => {
    const t = Date.now();
    try {
      return { call: name, ...(await fn()), ms: Date.now() - t };
    } catch (e) {
      return { call: name, status: 0, failure: (e as Error).message, ms: Date.now() - t };
    }
  };
  const answer = (r: Reply) => ({ status: r.status, error: typeof r.body.error === 'string' ? r.body.error : undefined, retryAfter: r.retryAfter });
  const answers = await Promise.all([
    timed(HANG_CALLS.me, async () => answer(await call('GET', '/v1/session/me', undefined, token))),
    timed(HANG_CALLS.emailCode, async () => answer(await call('POST', '/v1/session/email_code', { email: `hang-${Date.now()}@example.com` }))),
    timed(HANG_CALLS.mint, async () => answer(await call('POST', '/v1/mint-oidc-jwt', {}, token))),
    timed(HANG_CALLS.readyz, async () => {
      const res = await fetch(`${state.opsUrl}/readyz`, { headers: { authorization: `Bearer ${opsToken}` }, signal: AbortSignal.timeout(30_000) });
      const body = (await res.json()) as { parts?: Record<string, { ok: boolean; detail?: string }> };
      const down = Object.entries(body.parts ?? {}).filter(([, p]) => !p.ok);
      for (const [n, p] of down) log(`  /readyz: ${n}: ${p.detail ?? 'down'}`);
      return { status: res.status, partsDown: down.map(([n]) => n) };
    }),
  ]);
  for (const a of answers) log(`  ${describeHangAnswer(a)}`);
  const problems = hangProblems(part, answers);
  await sleep(Math.max(0, 10_000 - (Date.now() - hungAt)));
  proxy.restore();
  const restoredAt = Date.now();
  log(`${what} reachable again after ${((restoredAt - hungAt) / 1000).toFixed(0)} s (at least 10 s, longer while calls were still waiting)`);
  let recoveredMs = -1;
  const after = newStats();
  while (Date.now() - restoredAt < 60_000) {
    try {
      await flow(after);
      recoveredMs = Date.now() - restoredAt;
      break;
    } catch {
      await sleep(500);
    }
  }
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  const restarted = Object.entries(pidsBefore).filter(([n, p]) => state.pids[n] !== p || !alive(p));
  const slowest = Math.max(...answers.map((a) => a.ms));
  const line =
    `${what} hung for ${((restoredAt - hungAt) / 1000).toFixed(0)} s: ${answers.length - new Set(problems.map((p) => p.split(':')[0])).size}/${answers.length} calls ` +
    `answered as required within 2 s (slowest ${(slowest / 1000).toFixed(2)} s); ` +
    `first full flow after it came back: ${recoveredMs < 0 ? 'none within 60 s' : `${(recoveredMs / 1000).toFixed(1)} s`}; ` +
    `processes restarted: ${restarted.length ? restarted.map(([n]) => n).join(', ') : 'none'}`;
  log(line);
  results.push(line);
  all.push(stats, after);
  for (const p of problems) log(`  NOT MET: ${p}`);
  return problems.length === 0 && recoveredMs >= 0 && restarted.length === 0;
}

async function readState(dataDir: string): Promise<ClusterState | undefined> {
  try {
    const s = JSON.parse(await readFile(join(dataDir, 'cluster', 'state.json'), 'utf8')) as Partial<ClusterState>;
    if (!s.pids) return undefined;
    for (const pid of Object.values(s.pids)) process.kill(pid, 0);
    return s as ClusterState;
  } catch {
    return undefined;
  }
}

async function waitForRestart(dataDir: string, name: string, oldPid: number, timeoutMs = 90_000): Promise<number> {
  const t = Date.now();
  while (Date.now() - t < timeoutMs) {
    const s = await readState(dataDir);
    const pid = s?.pids[name];
    if (s && pid && pid !== oldPid) {
      state = s;
      return Date.now() - t;
    }
    await sleep(250);
  }
  throw new Error(`${name} was not restarted within ${timeoutMs / 1000} s`);
}

async function main(): Promise<number> {
  const dataDir = resolve(process.env.BROKER_DATA_DIR ?? '.data');
  const clients = Number(process.env.FAULT_CLIENTS ?? 4);
  const warmupMs = Number(process.env.FAULT_WARMUP_S ?? 5) * 1000;
  const afterMs = Number(process.env.FAULT_AFTER_S ?? 25) * 1000;
  let cluster: ChildProcess | undefined;
  let dbProxy: HangProxy | undefined;
  let temporalProxy: HangProxy | undefined;
  let s = await readState(dataDir);
  if (!s) {
    log('no running cluster: starting npm run cluster (logs in BROKER_DATA_DIR/cluster/logs)…');
    // The broker reaches Postgres through a proxy this test can make hang.
    const dbUrl = new URL(process.env.DATABASE_URL ?? defaultClusterDatabaseUrl(dataDir));
    dbProxy = await startHangProxy({ host: dbUrl.hostname, port: Number(dbUrl.port || 5432) });
    dbUrl.hostname = '127.0.0.1';
    dbUrl.port = String(dbProxy.port);
    // …and Temporal through one in front of HAProxy (the cluster's layout puts HAProxy at base + 233).
    const base = Number(process.env.CLUSTER_PORT_BASE ?? 27000);
    temporalProxy = await startHangProxy({ host: '127.0.0.1', port: base + 233 });
    cluster = spawn(process.execPath, ['--import', 'tsx', 'scripts/cluster.ts'], {
      cwd: ROOT,
      stdio: ['ignore', 'inherit', 'inherit'],
      env: {
        ...process.env,
        BROKER_DATA_DIR: dataDir,
        DATABASE_URL: dbUrl.toString(),
        CLUSTER_BROKER_TEMPORAL_ADDRESS: `127.0.0.1:${temporalProxy.port}`,
        BROKER_RATE_LIMIT_IP_PER_MINUTE: process.env.BROKER_RATE_LIMIT_IP_PER_MINUTE ?? '100000',
        BROKER_RATE_LIMIT_MINT_PER_IP_PER_MINUTE: process.env.BROKER_RATE_LIMIT_MINT_PER_IP_PER_MINUTE ?? '100000',
        BROKER_RATE_LIMIT_APPROVAL_OPEN_PER_IP_PER_MINUTE: process.env.BROKER_RATE_LIMIT_APPROVAL_OPEN_PER_IP_PER_MINUTE ?? '100000',
      },
    });
    const t = Date.now();
    while (!(s = await readState(dataDir))) {
      if (cluster.exitCode !== null) throw new Error(`npm run cluster exited with ${cluster.exitCode}`);
      if (Date.now() - t > 15 * 60_000) throw new Error('the cluster did not come up within 15 min');
      await sleep(1000);
    }
  }
  state = s;
  ca = await readFile(state.tlsCert);
  const stopCluster = async () => {
    dbProxy?.restore();
    temporalProxy?.restore();
    if (cluster && cluster.exitCode === null) {
      cluster.kill('SIGINT');
      await new Promise((r) => cluster?.once('exit', r));
    }
    await dbProxy?.close();
    await temporalProxy?.close();
  };

  try {
    const db = new pg.Client({ connectionString: state.databaseUrl });
    await db.connect();
    const since = (await db.query<{ now: Date }>('SELECT now() AS now')).rows[0]!.now;

    const routes = await routesThroughNginx();
    log(`routes through nginx: ${routes.checked} paths, ${routes.wrong.length} served wrongly`);
    for (const w of routes.wrong) log(`  NOT MET: ${w}`);

    const baseline = newStats();
    const t0 = Date.now();
    await load(baseline, clients, () => Date.now() - t0 > 8000);
    log(`baseline: ${baseline.ok} flows in 8 s (${(baseline.ok / 8).toFixed(1)}/s, ${clients} clients), ${baseline.errors} errors`);

    // How many client-visible errors each fault may cost. A Temporal node or a worker lost is
    // invisible to callers (the other takes over within the request's deadline; the API re-sends a
    // call Temporal answered UNAVAILABLE: adapters/temporal-retry.ts). An API process killed loses
    // the requests it held (nginx re-sends no POST that reached it): the client's repeat must
    // succeed (no failed flow), but the first try's error is seen.
    const faults: { name: string; target: string; maxErrors?: number }[] = [
      { name: 'kill -9 one Temporal node', target: 'temporal-node1', maxErrors: 0 },
      { name: 'kill -9 one worker', target: 'worker-1', maxErrors: 0 },
      { name: 'kill -9 one API process', target: 'api-1' },
    ];
    const tooMany: string[] = [];
    const results: string[] = [];
    const all: Stats[] = [baseline];
    // FAULT_SKIP_KILLS=1: only the hang faults below (quicker when working on those).
    for (const f of process.env.FAULT_SKIP_KILLS ? [] : faults) {
      const stats = newStats();
      all.push(stats);
      const start = Date.now();
      let killedAt = 0;
      const running = load(stats, clients, () => killedAt > 0 && Date.now() - killedAt > afterMs);
      await sleep(warmupMs);
      const pid = state.pids[f.target];
      if (!pid) throw new Error(`no pid for ${f.target} in state.json`);
      killedAt = Date.now();
      process.kill(pid, 'SIGKILL');
      log(`${f.name}: killed ${f.target} (pid ${pid})`);
      const restartMs = await waitForRestart(dataDir, f.target, pid);
      await running;
      const marks = [killedAt - 1, ...stats.completions.filter((c) => c >= killedAt)].sort((a, b) => a - b);
      let stall = 0;
      for (let i = 1; i < marks.length; i++) stall = Math.max(stall, marks[i]! - marks[i - 1]!);
      const line =
        `${f.name}: ${stats.ok} flows ok, ${stats.failedFlows} failed after retries, ${stats.errors} client-visible errors` +
        `${stats.repeatedLogins ? ` (${stats.repeatedLogins} email call${stats.repeatedLogins > 1 ? 's' : ''} answered on a repeat with its Idempotency-Key)` : ''}; ` +
        `stall ${(stall / 1000).toFixed(1)} s (longest gap between completed flows after the kill); ` +
        `${f.target} restarted after ${(restartMs / 1000).toFixed(1)} s; ${((Date.now() - start) / 1000).toFixed(0)} s under load`;
      log(line);
      for (const [k, n] of stats.errorKinds) log(`    ${n} x ${k}`);
      results.push(line);
      if (f.maxErrors !== undefined && stats.errors > f.maxErrors) {
        tooMany.push(`${f.name}: ${stats.errors} client-visible errors (allowed: ${f.maxErrors})`);
        log(`  NOT MET: ${tooMany.at(-1)}`);
      }
      await sleep(3000);
    }

    let hangFaultsOk = true;
    if (dbProxy && temporalProxy) {
      for (const [what, part, proxy] of [
        ['Postgres', 'database', dbProxy],
        ['the Temporal frontend', 'temporal', temporalProxy],
      ] as const) {
        const r = await hangFault(what, part, proxy, results, all);
        hangFaultsOk &&= r;
      }
    } else {
      log('hang faults skipped: they need the cluster started by this test (the broker then reaches Postgres and Temporal through proxies the test controls)');
    }

    // Consistency: the audit chain, mint intents with outcomes, sessions on record, no duplicate users.
    // The published audit keys, read through nginx as any verifier would (its TLS certificate is
    // the cluster's own, which only this client trusts), handed to audit:verify as a file.
    const published = await call('GET', '/v1/audit/keys');
    if (published.status !== 200) throw new Error(`GET /v1/audit/keys answered ${published.status}`);
    const keysFile = join(await mkdtemp(join(tmpdir(), 'akb-audit-keys-')), 'audit-keys.json');
    await writeFile(keysFile, JSON.stringify(published.body));
    const verify = spawn(process.execPath, ['--import', 'tsx', 'scripts/audit-verify.ts', '--keys', keysFile], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, DATABASE_URL: state.databaseUrl },
    });
    let verifyOut = '';
    verify.stdout?.on('data', (c: Buffer) => (verifyOut += c.toString()));
    verify.stderr?.on('data', (c: Buffer) => (verifyOut += c.toString()));
    const verifyCode = await new Promise<number>((r) => verify.on('exit', (c) => r(c ?? 1)));
    log(`audit:verify exit ${verifyCode}: ${verifyOut.trim()}`);

    const q = async (sql: string) => Number((await db.query<{ n: string }>(sql, [since])).rows[0]?.n ?? 0);
    const intents = await q("SELECT count(*) AS n FROM audit_log WHERE event = 'mint.oidc.intent' AND at::timestamptz >= $1");
    const outcomesOk = await q("SELECT count(*) AS n FROM audit_log WHERE event = 'mint.oidc' AND outcome = 'ok' AND at::timestamptz >= $1");
    const orphanIntents = await q(
      "SELECT count(*) AS n FROM audit_log i WHERE i.event = 'mint.oidc.intent' AND i.at::timestamptz >= $1 AND NOT EXISTS (SELECT 1 FROM audit_log o WHERE o.event = 'mint.oidc' AND o.request_id = i.request_id)",
    );
    const sessions = await q('SELECT count(*) AS n FROM sessions WHERE created_at >= $1');
    const dupUsers = await q(
      'SELECT count(*) AS n FROM (SELECT omni_account FROM users WHERE $1::timestamptz IS NOT NULL GROUP BY omni_account HAVING count(*) > 1) d',
    );
    const tokens = all.flatMap((x) => x.tokens);
    const jwts = all.reduce((n, x) => n + x.jwts, 0);
    const jtis = tokens.map((t) => (JSON.parse(Buffer.from(t.split('.')[1] ?? '', 'base64url').toString('utf8')) as { jti?: string }).jti ?? '');
    const known = Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM sessions WHERE jti = ANY($1)', [jtis])).rows[0]?.n ?? 0);
    await db.end();
    const consistency = [
      `mints: clients received ${jwts} JWTs; audit has ${intents} intents, ${outcomesOk} ok outcomes, ${orphanIntents} intents without an outcome`,
      `sessions: clients received ${tokens.length} tokens, ${known} of them on record; ${sessions} sessions created in the run`,
      `users created twice: ${dupUsers}`,
    ];
    for (const c of consistency) log(c);

    const failed =
      routes.wrong.length > 0 ||
      !hangFaultsOk ||
      tooMany.length > 0 ||
      verifyCode !== 0 ||
      orphanIntents > 0 ||
      known !== tokens.length ||
      dupUsers > 0 ||
      outcomesOk < jwts ||
      all.some((x) => x.failedFlows > 0);
    log(failed ? 'FAILED' : 'passed');
    log('summary:');
    for (const r of results) log(`  ${r}`);
    for (const t of tooMany) log(`  NOT MET: ${t}`);
    return failed ? 1 : 0;
  } finally {
    await stopCluster();
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`[faults] ${(e as Error).stack ?? String(e)}`);
    process.exit(2);
  },
);
