/**
 * Production API entry point (`npm run api` after `npm run build`, or `tsx api/main.ts`).
 * SIGINT/SIGTERM stop accepting requests, finish in-flight ones, then exit.
 */
import { ensureAuditShards } from '../db/audit';
import { migrate } from '../db/migrate';
import { createPool } from '../db/pool';
import { ConfigError, loadConfig } from '../lib/config';
import { resolveSecrets } from '../adapters/secrets';
import { StsStartupError, stsStartupGate } from '../adapters/sts-client';
import { startApi } from './start';

async function main(): Promise<void> {
  const config = loadConfig();
  if (!config.DATABASE_URL) throw new ConfigError('DATABASE_URL is not set: point it at Postgres (or run the whole local stack with `npm start`)');
  if (!config.TEMPORAL_ADDRESS)
    throw new ConfigError('TEMPORAL_ADDRESS is not set: point it at a Temporal frontend (or run the whole local stack with `npm start`)');
  const secrets = await resolveSecrets(config);
  // Migrations on a pool of their own, without the API's statement deadline (an index build may take minutes).
  const migrations = createPool(config.DATABASE_URL, 1);
  await migrate(migrations)
    .then(() => ensureAuditShards(migrations, config.BROKER_AUDIT_SHARDS))
    .finally(() => migrations.end());
  const db = createPool(config.DATABASE_URL, config.BROKER_DB_POOL_MAX, { queryTimeoutMs: config.BROKER_DB_QUERY_TIMEOUT_MS });
  // Production only: refuse to start when STS is unreachable with the broker's credentials.
  const skipCheck = process.argv.includes('--skip-startup-check') || config.BROKER_SKIP_STARTUP_CHECK === true;
  const sts = await stsStartupGate(config, { skipCheck });
  const api = await startApi({ config, secrets, db, address: config.TEMPORAL_ADDRESS, readiness: { sts } });
  api.app.log.info(`agentkeys-broker API listening on ${api.url} (public URL ${config.publicUrl}, docs ${config.publicUrl}/docs)`);
  if (api.metricsUrl) api.app.log.info(`metrics on ${api.metricsUrl} (ops listener)`);
  let closing = false;
  const stop = (signal: string) => {
    if (closing) return;
    closing = true;
    api.app.log.info(`${signal}: shutting down`);
    void api
      .close()
      .then(() => db.end())
      .then(() => process.exit(0));
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((e: unknown) => {
  console.error(e instanceof ConfigError || e instanceof StsStartupError ? e.message : e);
  process.exit(1);
});
