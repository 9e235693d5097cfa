/**
 * Production worker entry point (`npm run worker` after `npm run build`, or `tsx worker/main.ts`):
 * runs every broker workflow and activity against TEMPORAL_ADDRESS and DATABASE_URL.
 * SIGINT/SIGTERM drain in-flight tasks, then exit.
 */
import { ensureAuditShards } from '../db/audit';
import { migrate } from '../db/migrate';
import { createPool } from '../db/pool';
import { ConfigError, loadConfig } from '../lib/config';
import { OidcKeyStore } from '../adapters/oidc-keys';
import { resolveSecrets } from '../adapters/secrets';
import { installWorkerRuntime, temporalMetricsUrl } from './runtime';
import { startBrokerWorker, workflowBundleFromEnv } from './start';

async function main(): Promise<void> {
  const config = loadConfig();
  if (!config.DATABASE_URL) throw new ConfigError('DATABASE_URL is not set: point it at Postgres (or run the whole local stack with `npm start`)');
  if (!config.TEMPORAL_ADDRESS)
    throw new ConfigError('TEMPORAL_ADDRESS is not set: point it at a Temporal frontend (or run the whole local stack with `npm start`)');
  // Before any connection: the SDK's metrics exporter (BROKER_TEMPORAL_METRICS_PORT) is process-wide.
  installWorkerRuntime(config);
  const secrets = await resolveSecrets(config);
  // Fail at boot, not at the first mint, when the OIDC keyset is missing or unreadable.
  await OidcKeyStore.fromConfig(config).current();
  const db = createPool(config.DATABASE_URL, config.BROKER_DB_POOL_MAX);
  await migrate(db);
  await ensureAuditShards(db, config.BROKER_AUDIT_SHARDS);
  const running = await startBrokerWorker({ config, secrets, db, address: config.TEMPORAL_ADDRESS, workflowBundle: workflowBundleFromEnv() });
  const sdkMetrics = temporalMetricsUrl(config);
  if (running.metricsUrl) console.log(`metrics on ${running.metricsUrl} (ops listener)`);
  if (sdkMetrics) console.log(`Temporal SDK metrics on ${sdkMetrics}`);
  console.log(`worker polling task queue ${config.BROKER_TASK_QUEUE} on ${config.TEMPORAL_ADDRESS} (namespace ${config.TEMPORAL_NAMESPACE})`);
  await running.done;
  await db.end();
}

main().catch((e: unknown) => {
  console.error(e instanceof ConfigError ? e.message : e);
  process.exit(1);
});
