/**
 * Production worker entry point (`npm run worker` after `npm run build`, or `tsx worker/main.ts`):
 * runs every broker workflow and activity against TEMPORAL_ADDRESS and DATABASE_URL.
 * SIGINT/SIGTERM drain in-flight tasks, then exit. A start-up failure is one line on stderr naming
 * the variable or dependency and the fix (the stack with LOG_LEVEL=debug).
 */
import { prepareSchema } from '../db/migrate';
import { createPool } from '../db/pool';
import { ConfigError, loadConfig } from '../lib/config';
import { databaseStartupLine, listenStartupLine, startupFailureText, startupStep, temporalStartupLine } from '../lib/startup-error';
import { OidcKeyStore } from '../adapters/oidc-keys';
import { resolveSecrets } from '../adapters/secrets';
import { connectTemporalClient } from '../adapters/temporal-client';
import { prepareTemporalNamespace } from '../adapters/temporal-namespace';
import { installWorkerRuntime, temporalMetricsUrl } from './runtime';
import { startBrokerWorker, workflowBundleFromEnv } from './start';

async function main(): Promise<void> {
  const config = loadConfig();
  const databaseUrl = config.DATABASE_URL;
  const address = config.TEMPORAL_ADDRESS;
  if (!databaseUrl) throw new ConfigError('DATABASE_URL is not set: point it at Postgres (or run the whole local stack with `npm start`)');
  if (!address) throw new ConfigError('TEMPORAL_ADDRESS is not set: point it at a Temporal frontend (or run the whole local stack with `npm start`)');
  // Before any connection: the SDK's metrics exporter (BROKER_TEMPORAL_METRICS_PORT) is process-wide.
  installWorkerRuntime(config);
  const secrets = await resolveSecrets(config);
  // Fail at boot, not at the first mint, when the OIDC keyset is missing or unreadable.
  await OidcKeyStore.fromConfig(config).current();
  const db = createPool(databaseUrl, config.BROKER_DB_POOL_MAX);
  // Migrations, or with BROKER_MIGRATIONS=external the check that the schema owner ran them.
  const schema = await startupStep(
    () => prepareSchema(db, config),
    (e) => databaseStartupLine(e, databaseUrl),
  );
  for (const warning of schema.warnings) console.warn(`agentkeys-broker worker: warning: ${warning}`);
  const onTemporal = (e: unknown) => temporalStartupLine(e, address, config.TEMPORAL_NAMESPACE);
  // The namespace and its search attributes before the Schedules: a Schedule names AkFlow.
  const client = await startupStep(() => connectTemporalClient(config, secrets, address), onTemporal);
  try {
    await startupStep(
      () => prepareTemporalNamespace(client.connection, { namespace: config.TEMPORAL_NAMESPACE, address, onRegistered: (line) => console.log(line) }),
      onTemporal,
    );
  } finally {
    await client.connection.close();
  }
  const running = await startupStep(
    () => startBrokerWorker({ config, secrets, db, address, workflowBundle: workflowBundleFromEnv() }),
    (e) => listenStartupLine(e, config.BROKER_OPS_HOST, { BROKER_WORKER_OPS_PORT: config.BROKER_WORKER_OPS_PORT }),
  );
  const sdkMetrics = temporalMetricsUrl(config);
  if (running.metricsUrl) console.log(`metrics on ${running.metricsUrl} (ops listener)`);
  if (sdkMetrics) console.log(`Temporal SDK metrics on ${sdkMetrics}`);
  console.log(`worker polling task queue ${config.BROKER_TASK_QUEUE} on ${config.TEMPORAL_ADDRESS} (namespace ${config.TEMPORAL_NAMESPACE})`);
  await running.done;
  await db.end();
}

main().catch((e: unknown) => {
  console.error(startupFailureText('agentkeys-broker worker', e, process.env.LOG_LEVEL));
  process.exit(1);
});
