/**
 * `npm run cluster`: the production shape on one machine. A two-node Temporal v1.29.1 cluster on
 * Postgres (4 history shards) behind an HAProxy TCP balancer, two workers and two API processes
 * (separate Node processes, as in production) behind nginx on one TLS port, the Temporal Web UI,
 * and the dev fixtures (SES capture, STS, TEE). Ctrl-C stops everything it started; a crashed
 * Temporal node, worker or API process is restarted after 2 s, as systemd's Restart=always would.
 *
 * Data under BROKER_DATA_DIR (generated keys at its top, everything else in `cluster/`), the
 * Temporal state in Postgres (TEMPORAL_DATABASE_URL), the broker's own tables in DATABASE_URL.
 * Ports: CLUSTER_PORT_BASE (default 27000) and up, see scripts/cluster/layout.ts.
 * `cluster/state.json` names every process and port, for scripts/cluster-faults.ts.
 */
import { stopOnSignal } from './stop-on-signal';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { migrate } from '../db/migrate';
import { createPool } from '../db/pool';
import { startSesFixture } from '../fixtures/ses';
import { startStsFixture } from '../fixtures/sts';
import { loadOrCreateTeeFixtureKey } from '../fixtures/tee/jwt';
import { startTeeFixture } from '../fixtures/tee/server';
import { ConfigError, loadConfig } from '../lib/config';
import { OidcKeyStore } from '../adapters/oidc-keys';
import { resolveSecrets } from '../adapters/secrets';
import { bundleBrokerWorkflows } from '../worker/create-worker';
import { TEMPORAL_SERVER, TEMPORAL_SQL_TOOL, TEMPORAL_UI, findOrBuild, temporalSchemaDir } from './cluster/go-build';
import { checkCodecPath } from './codec-proxy';
import { busyPorts, defaultClusterDatabaseUrl, defaultClusterTemporalDatabaseUrl, layout, type Layout } from './cluster/layout';
import { logTail, startProcess, type Managed } from './cluster/processes';
import { ensureSelfSignedCert, findProxies, startHaproxy, startNginx, waitForPort } from './cluster/proxies';
import { HISTORY_SHARDS, ensureNamespace, parseTemporalDbUrl, setupTemporalSchema, startTemporalNode, type TemporalDb } from './cluster/temporal-nodes';

const ROOT = resolve(__dirname, '..');
const log = (line: string) => console.log(`[cluster] ${line}`);
const RESTART_DELAY_MS = 2000;

export interface ClusterState {
  startedAt: string;
  dataDir: string;
  layout: Layout;
  publicUrl: string;
  opsUrl: string;
  devMailUrl: string;
  teeFixtureUrl: string;
  temporalAddress: string;
  temporalUiUrl?: string;
  tlsCert: string;
  opsTokenFile: string;
  databaseUrl: string;
  /** Current pid of each supervised process (updated on restarts). */
  pids: Record<string, number>;
}

async function ensureDatabase(url: string): Promise<void> {
  const u = new URL(url);
  const name = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new ConfigError(`DATABASE_URL: database name ${name} must be lower-case letters, digits and _`);
  u.pathname = '/postgres';
  const c = new pg.Client({ connectionString: u.toString(), connectionTimeoutMillis: 5000 });
  try {
    await c.connect();
  } catch (e) {
    throw new ConfigError(
      `Postgres at ${u.host} does not answer (${(e as Error).message}); npm run cluster needs a Postgres server (DATABASE_URL, TEMPORAL_DATABASE_URL)`,
    );
  }
  try {
    if ((await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).rowCount === 0) await c.query(`CREATE DATABASE ${name}`);
  } finally {
    await c.end();
  }
}

async function loadOrCreateOpsToken(file: string): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch {
    const token = randomBytes(32).toString('base64url');
    await writeFile(file, `${token}\n`, { mode: 0o600, flag: 'wx' }).catch(() => undefined);
    return (await readFile(file, 'utf8')).trim();
  }
}

/** GET through nginx over TLS, trusting only the cluster's own certificate. */
function httpsGet(url: string, ca: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((done, fail) => {
    const req = request(url, { ca, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => done({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', fail);
    req.end();
  });
}

/** A process restarted after a crash (Restart=always); `current` is the live incarnation. */
interface Supervised {
  name: string;
  current: Managed;
  stop(): Promise<void>;
}

async function main(): Promise<void> {
  const t0 = Date.now();
  const stops = stopOnSignal(log);
  const { stopAll } = stops;

  try {
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    const base = loadConfig(process.env);
    if (base.isProduction)
      throw new ConfigError(
        'npm run cluster runs a production-shaped cluster with dev fixtures on one machine; in production run the API and the worker under systemd (deploy/systemd)',
      );
    const dataDir = resolve(base.BROKER_DATA_DIR);
    const clusterDir = join(dataDir, 'cluster');
    const logDir = join(clusterDir, 'logs');
    await mkdir(logDir, { recursive: true, mode: 0o700 });

    const portBase = Number(process.env.CLUSTER_PORT_BASE ?? 27000);
    if (!Number.isInteger(portBase) || portBase < 1024 || portBase > 62000) throw new ConfigError('CLUSTER_PORT_BASE must be an integer from 1024 to 62000');
    const l = layout(portBase);
    const busy = await busyPorts(l);
    if (busy.length > 0) throw new ConfigError(`ports already in use: ${busy.join(', ')} (another cluster running? pick another CLUSTER_PORT_BASE)`);

    const proxies = await findProxies();
    const server = await findOrBuild(TEMPORAL_SERVER, log, process.env.TEMPORAL_SERVER_PATH);
    const sqlTool = await findOrBuild(TEMPORAL_SQL_TOOL, log, process.env.TEMPORAL_SQL_TOOL_PATH);
    let uiServer: string | undefined;
    try {
      uiServer = await findOrBuild(TEMPORAL_UI, log, process.env.TEMPORAL_UI_SERVER_PATH);
    } catch (e) {
      log(`the Temporal Web UI is not available, continuing without it: ${(e as Error).message.split('\n')[0]}`);
    }

    // Postgres: the Temporal stores and the broker's database.
    const temporalDb: TemporalDb = parseTemporalDbUrl(process.env.TEMPORAL_DATABASE_URL ?? defaultClusterTemporalDatabaseUrl(dataDir));
    const databaseUrl = base.DATABASE_URL ?? defaultClusterDatabaseUrl(dataDir);
    await ensureDatabase(databaseUrl);
    log(`setting up the Temporal schema in ${temporalDb.database} and ${temporalDb.visibilityDatabase} (${temporalDb.host}:${temporalDb.port})…`);
    await setupTemporalSchema({ sqlTool, schemaDir: await temporalSchemaDir(), db: temporalDb, log });

    const pids: Record<string, number> = {};
    // Replaced once everything is up; a restart before that has nothing to record yet.
    let writeState = async (): Promise<void> => undefined;
    const supervise = (name: string, start: () => Promise<Managed>, first: Managed): Supervised => {
      const s: Supervised = {
        name,
        current: first,
        stop: async () => {
          await s.current.stop();
        },
      };
      const watch = (m: Managed) => {
        void m.exited.then(async (reason) => {
          if (stops.stopping) return;
          log(`${name} (pid ${m.pid}) ended: ${reason}; restarting in ${RESTART_DELAY_MS / 1000} s (log ${m.log})`);
          await new Promise((r) => setTimeout(r, RESTART_DELAY_MS));
          for (;;) {
            if (stops.stopping) return;
            try {
              s.current = await start();
              pids[name] = s.current.pid;
              await writeState();
              log(`${name} is back (pid ${s.current.pid})`);
              watch(s.current);
              return;
            } catch (e) {
              log(`${name} did not come back: ${(e as Error).message.split('\n')[0]}; trying again`);
              await new Promise((r) => setTimeout(r, RESTART_DELAY_MS));
            }
          }
        });
      };
      watch(first);
      stops.push(() => s.stop());
      return s;
    };
    // HAProxy first: it is the address the nodes' cluster metadata and every client name.
    const haproxy = await startHaproxy({ bin: proxies.haproxy, l, dir: join(clusterDir, 'haproxy'), logDir });
    stops.push(() => haproxy.stop());
    pids.haproxy = haproxy.pid;
    const temporalAddress = `127.0.0.1:${l.temporalLb}`;

    log(`starting ${l.nodes.length} Temporal nodes (${HISTORY_SHARDS} history shards)…`);
    const temporalRoot = join(clusterDir, 'temporal');
    const startNode = (i: number) =>
      startTemporalNode({ index: i, server, root: temporalRoot, logDir, ports: l.nodes[i]!, db: temporalDb, clusterAddress: temporalAddress });
    // The first node alone, then the rest: on a fresh database each node's start writes the
    // cluster's metadata, and two first writes at once can fail one node ("failed to initialize
    // current cluster metadata", seen in a fresh-clone CI run).
    const first = await startNode(0);
    const nodes = [first, ...(await Promise.all(l.nodes.slice(1).map((_, i) => startNode(i + 1))))];
    nodes.forEach((n, i) => {
      pids[n.name] = n.pid;
      supervise(n.name, () => startNode(i), n);
    });
    await ensureNamespace(temporalAddress, base.TEMPORAL_NAMESPACE, log);

    // Keys and secrets are created here once, so the four broker processes do not race to create them.
    const opsTokenFile = join(clusterDir, 'ops-token');
    const opsToken = base.BROKER_OPS_TOKEN ?? (await loadOrCreateOpsToken(opsTokenFile));
    const opsUrl = `http://127.0.0.1:${l.ops}`;
    const publicUrl = base.BROKER_PUBLIC_URL ?? `https://localhost:${l.https}`;
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      NODE_ENV: base.NODE_ENV,
      BROKER_DATA_DIR: dataDir,
      DATABASE_URL: databaseUrl,
      // CLUSTER_BROKER_TEMPORAL_ADDRESS: what the workers and APIs dial instead of HAProxy (the fault tests' proxy).
      TEMPORAL_ADDRESS: process.env.CLUSTER_BROKER_TEMPORAL_ADDRESS ?? temporalAddress,
      BROKER_PUBLIC_URL: publicUrl,
      // nginx on this host replaces X-Forwarded-For with the client's address; only it is believed.
      BROKER_TRUST_PROXY: process.env.BROKER_TRUST_PROXY ?? '127.0.0.1/32',
      BROKER_OPS_TOKEN: opsToken,
      // Four processes share one Postgres (max_connections 100 by default) with the Temporal nodes.
      BROKER_DB_POOL_MAX: process.env.BROKER_DB_POOL_MAX ?? '4',
      BROKER_CODEC_CORS_ORIGINS: process.env.BROKER_CODEC_CORS_ORIGINS ?? `http://127.0.0.1:${l.temporalUi},http://localhost:${l.temporalUi}`,
      HOST: '127.0.0.1',
    };
    const config = loadConfig(env);
    const secrets = await resolveSecrets(config);
    await OidcKeyStore.fromConfig(config).current();

    // Dev fixtures, in this process: SES capture, STS, and a TEE worker that calls the broker back.
    let devMailUrl = '';
    let teeFixtureUrl = '';
    if (config.devFixtures) {
      if (!config.BROKER_SES_ENDPOINT) {
        const ses = await startSesFixture({ port: l.ses });
        stops.push(() => ses.close());
        env.BROKER_SES_ENDPOINT = ses.url;
        devMailUrl = `${ses.url}/_dev/mail?to=<address>`;
      }
      if (!config.BROKER_STS_ENDPOINT) {
        // STS fetches the broker's JWKS through the ops listener (plain HTTP on loopback, both API processes).
        const sts = await startStsFixture({ port: l.sts, jwksUrl: `${opsUrl}/.well-known/jwks.json` });
        stops.push(() => sts.close());
        env.BROKER_STS_ENDPOINT = sts.url;
        env.BROKER_DATA_ROLE_ARN ??= 'arn:aws:iam::123456789012:role/agentkeys-dev-data';
      }
      if (!config.BROKER_TEE_JWT_PUBLIC_KEY && !config.BROKER_TEE_JWKS_URL) {
        const teeKey = await loadOrCreateTeeFixtureKey(join(dataDir, 'tee-fixture-key.pem'));
        // This process does not trust the self-signed certificate, so the fixture calls back through the ops listener.
        const tee = await startTeeFixture({ brokerBaseUrl: `${opsUrl}/`, privateKeyPem: teeKey.privateKeyPem, port: l.tee });
        stops.push(() => tee.close());
        env.BROKER_TEE_JWT_PUBLIC_KEY = teeKey.publicKeyDebugByteList;
        teeFixtureUrl = tee.url;
      }
    }

    const db = createPool(databaseUrl, 1);
    const applied = await migrate(db);
    await db.end();
    if (applied.length > 0) log(`migrations applied: ${applied.join(', ')}`);

    // One workflow bundle for both workers (bundling takes seconds of CPU each).
    const bundlePath = join(clusterDir, 'workflow-bundle.js');
    const { code } = await bundleBrokerWorkflows();
    await writeFile(bundlePath, code);
    env.BROKER_WORKFLOW_BUNDLE = bundlePath;

    const node = (name: string, entry: string, extra: NodeJS.ProcessEnv) =>
      startProcess({ name, command: process.execPath, args: ['--import', 'tsx', entry], cwd: ROOT, logDir, env: { ...env, ...extra } });
    const startWorker = async (i: number): Promise<Managed> => {
      const p = node(`worker-${i + 1}`, 'worker/main.ts', {
        BROKER_WORKER_OPS_PORT: String(l.workerMetrics[i]),
        BROKER_TEMPORAL_METRICS_PORT: String(l.workerSdkMetrics[i]),
      });
      const deadline = Date.now() + 90_000;
      while (!(await readFile(p.log, 'utf8').catch(() => '')).includes('worker polling task queue')) {
        if (p.exitReason() !== undefined) throw new Error(`${p.name} stopped (${p.exitReason()}); ${p.log}:\n${await logTail(p.log)}`);
        if (Date.now() > deadline) throw new Error(`${p.name} did not start polling within 90 s; ${p.log}:\n${await logTail(p.log)}`);
        await new Promise((r) => setTimeout(r, 250));
      }
      return p;
    };
    const startApiProcess = async (i: number): Promise<Managed> => {
      const p = node(`api-${i + 1}`, 'api/main.ts', { PORT: String(l.apis[i]), BROKER_OPS_PORT: String(l.apiMetrics[i]) });
      await waitForPort(l.apis[i]!, p, 90_000);
      return p;
    };
    log(`starting ${l.apis.length} workers and ${l.apis.length} API processes…`);
    const workers = await Promise.all([0, 1].map((i) => startWorker(i)));
    workers.forEach((w, i) => {
      pids[w.name] = w.pid;
      supervise(w.name, () => startWorker(i), w);
    });
    const apis = await Promise.all(l.apis.map((_, i) => startApiProcess(i)));
    apis.forEach((a, i) => {
      pids[a.name] = a.pid;
      supervise(a.name, () => startApiProcess(i), a);
    });

    const tls = await ensureSelfSignedCert(join(clusterDir, 'tls'), log);
    const nginx = await startNginx({
      bin: proxies.nginx,
      l,
      dir: join(clusterDir, 'nginx'),
      logDir,
      cert: tls.cert,
      key: tls.key,
      bodyLimit: config.BROKER_BODY_LIMIT_BYTES,
      opsToken,
    });
    stops.push(() => nginx.stop());
    pids.nginx = nginx.pid;

    let temporalUiUrl: string | undefined;
    if (uiServer) {
      const uiRoot = join(clusterDir, 'ui');
      await mkdir(join(uiRoot, 'config'), { recursive: true });
      await writeFile(
        join(uiRoot, 'config', 'cluster.yaml'),
        [
          '# Generated by npm run cluster.',
          `temporalGrpcAddress: ${temporalAddress}`,
          'host: 127.0.0.1',
          `port: ${l.temporalUi}`,
          'enableUi: true',
          `defaultNamespace: ${config.TEMPORAL_NAMESPACE}`,
          'refreshInterval: 1m',
          'notifyOnNewVersion: false',
          // The browser calls <endpoint>/decode; nginx's ops listener adds the ops token.
          'codec:',
          `  endpoint: ${opsUrl}/codec`,
          'cors:',
          '  cookieInsecure: true',
          '',
        ].join('\n'),
      );
      const ui = startProcess({ name: 'temporal-ui', command: uiServer, args: ['--root', uiRoot, '--config', 'config', '--env', 'cluster', 'start'], logDir });
      try {
        await waitForPort(l.temporalUi, ui);
        stops.push(() => ui.stop());
        pids[ui.name] = ui.pid;
        temporalUiUrl = `http://127.0.0.1:${l.temporalUi}`;
      } catch (e) {
        log(`the Temporal Web UI did not start, continuing without it: ${(e as Error).message.split('\n')[0]}`);
      }
    }

    // Smoke check through nginx and TLS, as a client sees it.
    const ca = await readFile(tls.cert);
    const probe = await httpsGet(`https://127.0.0.1:${l.https}/.well-known/jwks.json`, ca);
    if (probe.status !== 200) throw new Error(`GET /.well-known/jwks.json through nginx answered ${probe.status}: ${probe.body.slice(0, 200)}`);

    // The UI's codec path, as the browser takes it: preflight, then decode without a token of its own.
    let codecCheck = 'not checked (no Temporal UI)';
    if (temporalUiUrl) codecCheck = (await checkCodecPath(`${opsUrl}/codec`, temporalUiUrl, config.TEMPORAL_NAMESPACE, secrets)).line;

    writeState = async () => {
      const state: ClusterState = {
        startedAt: new Date(t0).toISOString(),
        dataDir,
        layout: l,
        publicUrl,
        opsUrl,
        devMailUrl,
        teeFixtureUrl,
        temporalAddress,
        temporalUiUrl,
        tlsCert: tls.cert,
        opsTokenFile,
        databaseUrl,
        pids,
      };
      await writeFile(join(clusterDir, 'state.json'), `${JSON.stringify(state, null, 2)}\n`);
    };
    await writeState();
    stops.push(() => writeFile(join(clusterDir, 'state.json'), '{}\n'));

    const metricsUrl = (port: number) => `http://127.0.0.1:${port}/metrics`;
    const lines = [
      `agentkeys-broker cluster is up in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
      `  Public API   ${publicUrl}   (nginx, TLS; self-signed: curl --cacert ${tls.cert}, or -k)`,
      `  API docs     ${publicUrl}/docs`,
      `  Ops          ${opsUrl}   (loopback only: /readyz, /codec, /_dev; ops token in ${base.BROKER_OPS_TOKEN ? 'BROKER_OPS_TOKEN' : opsTokenFile})`,
      `  API procs    ${l.apis.map((p) => `127.0.0.1:${p}`).join(', ')}   workers: ${workers.length}`,
      `  Metrics      APIs ${l.apiMetrics.map(metricsUrl).join(', ')}`,
      `               workers ${l.workerMetrics.map(metricsUrl).join(', ')}; Temporal SDK ${l.workerSdkMetrics.map(metricsUrl).join(', ')}`,
      `  Temporal     ${temporalAddress} (HAProxy; stats http://127.0.0.1:${l.haproxyStats}/) -> ${l.nodes.map((n) => `127.0.0.1:${n.frontend}`).join(', ')}`,
      `  Temporal UI  ${temporalUiUrl ?? 'not running (see above)'}   codec: ${codecCheck}`,
      `  Databases    Temporal: ${temporalDb.database}, ${temporalDb.visibilityDatabase}; broker: ${new URL(databaseUrl).pathname.slice(1)} (${temporalDb.host}:${temporalDb.port})`,
      ...(devMailUrl ? [`  Dev mail     ${devMailUrl}`] : []),
      ...(teeFixtureUrl ? [`  TEE fixture  ${teeFixtureUrl}   (email codes: ${teeFixtureUrl}_dev/email_code?email=<address>)`] : []),
      `  Logs         ${logDir}`,
      'Ctrl-C stops everything.',
    ];
    for (const line of lines) log(line);
  } catch (e) {
    console.error(`[cluster] could not start: ${e instanceof ConfigError ? e.message : ((e as Error).stack ?? String(e))}`);
    await stopAll(1);
  }
}

void main();
