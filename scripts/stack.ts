/**
 * `npm start`: the whole broker on a laptop in one process tree — a Temporal dev server (SQLite and
 * Web UI under BROKER_DATA_DIR), Postgres (DATABASE_URL, or an embedded PGlite engine served over the
 * wire protocol), migrations, the worker, the API and the dev fixtures (SES capture, STS). Ctrl-C
 * stops everything; a second start reuses the data. TEMPORAL_ADDRESS set = use that server.
 */
import { stopOnSignal } from './stop-on-signal';
import { join, resolve } from 'node:path';
import { Client } from '@temporalio/client';
import { DefaultLogger, Runtime } from '@temporalio/worker';
import pinoPretty from 'pino-pretty';
import { startApi } from '../api/start';
import { startEmbeddedPostgres } from '../db/embedded';
import { ensureAuditShards } from '../db/audit';
import { migrate } from '../db/migrate';
import { createPool } from '../db/pool';
import { startSesFixture, type SesFixture } from '../fixtures/ses';
import { startStsFixture } from '../fixtures/sts';
import { startGoogleOidcFixture } from '../fixtures/google-oidc';
import { loadOrCreateTeeFixtureKey } from '../fixtures/tee/jwt';
import { startTeeFixture } from '../fixtures/tee/server';
import { ConfigError, loadConfig } from '../lib/config';
import { resolveSecrets } from '../adapters/secrets';
import { connectTemporalClient } from '../adapters/temporal-client';
import { brokerDataConverter } from '../adapters/temporal-options';
import { temporalMetricsUrl, temporalRuntimeOptions } from '../worker/runtime';
import { startBrokerWorker, workflowBundleFromEnv } from '../worker/start';
import { randomBytes } from 'node:crypto';
import { checkCodecPath, startCodecProxy, type CodecProxy } from './codec-proxy';
import { findOrInstallTemporalCli } from './temporal-cli';
import { findFreePort, startTemporalDevServer } from './temporal-dev-server';
import { prepareTemporalNamespace } from '../adapters/temporal-namespace';
import { AgentKeysError } from '../lib/errors';
import { listenStartupLine, maskUrlPassword, startupStep } from '../lib/startup-error';

const log = (line: string) => console.log(`[stack] ${line}`);
/** The API's port when PORT is unset and 8091 is free (the walk-throughs' B=http://127.0.0.1:8091). */
const DEFAULT_API_PORT = 8091;

async function portOr(preferred: number): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((res) => {
    const srv = createServer();
    srv.once('error', () => void findFreePort().then(res));
    srv.listen(preferred, '127.0.0.1', () => srv.close(() => res(preferred)));
  });
}

async function main(): Promise<void> {
  const t0 = Date.now();
  const stops = stopOnSignal(log);
  const { stopAll } = stops;

  try {
    // The AWS SDK warns about Node 20 on every start; it is a notice for operators, not for a laptop stack.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    const env: NodeJS.ProcessEnv = { ...process.env };
    // Metrics on loopback: the API's ops listener (API and worker share this process, so one
    // /metrics shows both) and the Temporal SDK's exporter.
    env.BROKER_OPS_PORT ||= String(await portOr(9464));
    env.BROKER_TEMPORAL_METRICS_PORT ||= String(await portOr(9465));
    // The API moves off a taken 8091 like every other port (a second stack, another service); a PORT
    // that was set stays, and its being taken is the one-line error naming PORT.
    if (!env.PORT?.trim()) {
      env.PORT = String(await portOr(DEFAULT_API_PORT));
      if (env.PORT !== String(DEFAULT_API_PORT)) log(`port ${DEFAULT_API_PORT} is taken: the API listens on ${env.PORT} (set PORT to choose)`);
    }
    const base = loadConfig(env);
    if (base.isProduction) throw new ConfigError('npm start runs the development stack; in production run `npm run api` and `npm run worker`');
    const dataDir = resolve(base.BROKER_DATA_DIR);
    env.BROKER_DATA_DIR = dataDir;
    // The worker's own logs: warnings and errors only, so the stack's output stays readable.
    Runtime.install({ logger: new DefaultLogger('WARN'), shutdownSignals: [], ...temporalRuntimeOptions(base) });

    // The Temporal UI decodes payloads through a loopback codec path that adds a dev ops token to the
    // broker's codec endpoint (as npm run cluster's loopback nginx does): no token to paste.
    let codecProxy: CodecProxy | undefined;
    if (base.devFixtures) {
      env.BROKER_OPS_TOKEN ||= `dev-ops-${randomBytes(24).toString('hex')}`;
      codecProxy = await startCodecProxy({ apiUrl: `http://127.0.0.1:${base.PORT}`, opsToken: env.BROKER_OPS_TOKEN, port: await portOr(8095) });
      const proxy = codecProxy;
      stops.push(() => proxy.close());
    }

    // Temporal
    let address = base.TEMPORAL_ADDRESS;
    let uiUrl: string | undefined;
    if (!address) {
      const cliPath = await findOrInstallTemporalCli({ log });
      log('starting the Temporal dev server…');
      const uiPort = await portOr(8233);
      // The UI's origin may call the codec endpoint (a moved UI port too).
      env.BROKER_CODEC_CORS_ORIGINS ||= `http://localhost:${uiPort},http://127.0.0.1:${uiPort}`;
      const server = await startTemporalDevServer({
        cliPath,
        dbFile: join(dataDir, 'temporal.sqlite'),
        port: await portOr(7233),
        uiPort,
        uiCodecEndpoint: codecProxy?.url,
        namespace: base.TEMPORAL_NAMESPACE,
      });
      stops.push(() => server.stop());
      address = server.address;
      uiUrl = server.uiUrl;
      env.TEMPORAL_ADDRESS = address;
    }

    // Postgres
    let embedded: string | undefined;
    if (!base.DATABASE_URL) {
      log('starting the embedded Postgres (PGlite)…');
      const pg = await startEmbeddedPostgres({ dataDir: join(dataDir, 'pglite'), log });
      stops.push(() => pg.stop());
      env.DATABASE_URL = pg.url;
      embedded = join(dataDir, 'pglite');
    }

    // Dev fixtures: loopback stand-ins for SES, STS, the TEE worker and Google's OpenID provider.
    let devMailbox: SesFixture | undefined;
    let stsFixtureUrl: string | undefined;
    let teeFixtureUrl: string | undefined;
    let googleFixtureUrl: string | undefined;
    if (base.devFixtures) {
      if (!base.BROKER_SES_ENDPOINT) {
        const ses = await startSesFixture();
        stops.push(() => ses.close());
        env.BROKER_SES_ENDPOINT = ses.url;
        devMailbox = ses;
      }
      if (!base.BROKER_STS_ENDPOINT) {
        const sts = await startStsFixture({ jwksUrl: `${base.publicUrl}/.well-known/jwks.json` });
        stops.push(() => sts.close());
        env.BROKER_STS_ENDPOINT = sts.url;
        stsFixtureUrl = sts.url;
        env.BROKER_DATA_ROLE_ARN ??= 'arn:aws:iam::123456789012:role/agentkeys-dev-data';
      }
      if (!base.BROKER_TEE_JWT_PUBLIC_KEY && !base.BROKER_TEE_JWKS_URL) {
        // A dev TEE worker that speaks the Heima JSON-RPC and calls this broker back; trusted via its key.
        const teeKey = await loadOrCreateTeeFixtureKey(join(dataDir, 'tee-fixture-key.pem'));
        // The worker as tee-patch/agentkeys-phase0.patch makes it (add_wallet by the stored token's aud).
        const tee = await startTeeFixture({
          brokerBaseUrl: `${base.publicUrl}/`,
          privateKeyPem: teeKey.privateKeyPem,
          port: await portOr(8093),
          mode: 'patched',
        });
        stops.push(() => tee.close());
        // In the form the real TEE logs it (auth_token_key_store.rs): the PKCS#1 DER as a Rust Debug byte list.
        env.BROKER_TEE_JWT_PUBLIC_KEY = teeKey.publicKeyDebugByteList;
        teeFixtureUrl = tee.url;
      }
      if (!base.BROKER_GOOGLE_CLIENT_ID) {
        // A real OpenID provider on loopback; the broker finds it through discovery, as it finds Google.
        const google = await startGoogleOidcFixture({ port: await portOr(8094) });
        stops.push(() => google.close());
        env.BROKER_GOOGLE_ISSUER = google.url;
        env.BROKER_GOOGLE_CLIENT_ID = 'agentkeys-dev.apps.example';
        env.BROKER_GOOGLE_CLIENT_SECRET = 'agentkeys-dev-secret';
        env.BROKER_GOOGLE_RETURN_ORIGINS ||= 'http://localhost:5173,http://127.0.0.1:5173';
        googleFixtureUrl = google.url;
      }
    }

    const config = loadConfig(env);
    const secrets = await resolveSecrets(config);
    // PGlite has one session: one connection for the whole process (see db/embedded.ts).
    const db = createPool(env.DATABASE_URL as string, embedded !== undefined ? 1 : config.BROKER_DB_POOL_MAX);
    stops.push(() => db.end());
    const applied = await migrate(db);
    await ensureAuditShards(db, config.BROKER_AUDIT_SHARDS);
    if (applied.length > 0) log(`migrations applied: ${applied.join(', ')}`);
    if (base.TEMPORAL_ADDRESS) {
      const client = await connectTemporalClient(config, secrets, address);
      try {
        await prepareTemporalNamespace(client.connection, { namespace: config.TEMPORAL_NAMESPACE, address, onRegistered: log });
      } finally {
        await client.connection.close();
      }
    }

    const worker = await startBrokerWorker({ config, secrets, db, address, workflowBundle: workflowBundleFromEnv() });
    stops.push(() => worker.shutdown());
    // In a terminal the API's log lines are printed for people; piped or redirected they stay JSON (what production ships).
    const logStream = process.stdout.isTTY
      ? pinoPretty({ colorize: true, singleLine: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' })
      : undefined;
    // API and worker share this process: the API's client rides the worker's NativeConnection, so a
    // workflow start can hand its first task straight to this worker (eager start, docs/performance.md).
    const temporal = new Client({ connection: worker.connection, namespace: config.TEMPORAL_NAMESPACE, dataConverter: brokerDataConverter(secrets) });
    const api = await startupStep(
      () => startApi({ config, secrets, db, address, devMailbox, logStream, temporal, eagerWorkflowStart: true }),
      (e) => listenStartupLine(e, config.HOST, { PORT: config.PORT, BROKER_OPS_PORT: config.BROKER_OPS_PORT }),
    );
    stops.push(() => api.close());

    const codecCheck = codecProxy && uiUrl ? await checkCodecPath(codecProxy.url, uiUrl, config.TEMPORAL_NAMESPACE, secrets) : undefined;
    const lines = [
      `agentkeys-broker is up in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
      `  API          ${api.url}`,
      `  API docs     ${api.url}/docs`,
      `  Console      ${api.url}/console   (sign in, passkeys, sessions, grants, approvals, audit proofs, device codes)`,
      `  Temporal     ${address}${uiUrl ? `   UI ${uiUrl}` : ''}`,
      ...(codecProxy ? [`  Codec        ${codecCheck?.line ?? codecProxy.url}   (the UI's payload decoding; adds a dev ops token)`] : []),
      ...(api.metricsUrl ? [`  Metrics      ${api.metricsUrl}   (API, worker and process; ops listener, loopback)`] : []),
      ...(temporalMetricsUrl(config) ? [`  SDK metrics  ${temporalMetricsUrl(config)}   (Temporal SDK: temporal_*)`] : []),
      `  Database     ${maskUrlPassword(env.DATABASE_URL as string)}   (${embedded ? `embedded PGlite in ${embedded}` : 'DATABASE_URL'})`,
      ...(devMailbox ? [`  SES          ${devMailbox.url}   (stand-in; dev mail ${api.url}/_dev/mail?to=<address>)`] : []),
      ...(stsFixtureUrl ? [`  STS          ${stsFixtureUrl}   (stand-in: --endpoint-url for the AWS CLI)`] : []),
      ...(teeFixtureUrl ? [`  TEE fixture  ${teeFixtureUrl}   (email codes: ${teeFixtureUrl}_dev/email_code?email=<address>)`] : []),
      ...(googleFixtureUrl ? [`  Google       ${googleFixtureUrl}   (OpenID stand-in: add &login_hint=<address> to an authorize URL)`] : []),
      `  Data         ${dataDir}`,
      'Ctrl-C stops everything.',
    ];
    for (const l of lines) log(l);
  } catch (e) {
    // Ours name the variable and the fix in one line; anything else keeps its stack (a dev server's stderr tail).
    console.error(`[stack] could not start: ${e instanceof AgentKeysError ? e.message : ((e as Error).stack ?? String(e))}`);
    await stopAll(1);
  }
}

void main();
