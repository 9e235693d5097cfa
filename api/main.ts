/**
 * Production API entry point (`npm run api` after `npm run build`, or `tsx api/main.ts`).
 * SIGINT/SIGTERM stop accepting requests, finish in-flight ones, then exit. A start-up failure
 * is one line on stderr naming the variable or dependency and the fix (the stack with LOG_LEVEL=debug).
 */
import { prepareSchema } from '../db/migrate';
import { docsUiPlace } from './plugins/docs';
import { createPool } from '../db/pool';
import { ConfigError, loadConfig, type Config } from '../lib/config';
import type { ReadinessCheck } from '../lib/readiness';
import { databaseStartupLine, listenStartupLine, startupFailureText, startupStep, temporalStartupLine } from '../lib/startup-error';
import { resolveSecrets } from '../adapters/secrets';
import { stsStartupGate } from '../adapters/sts-client';
import { connectTemporalClient } from '../adapters/temporal-client';
import { prepareTemporalNamespace } from '../adapters/temporal-namespace';
import { startApi } from './start';

async function main(): Promise<void> {
  const config = loadConfig();
  const databaseUrl = config.DATABASE_URL;
  const address = config.TEMPORAL_ADDRESS;
  if (!databaseUrl) throw new ConfigError('DATABASE_URL is not set: point it at Postgres (or run the whole local stack with `npm start`)');
  if (!address) throw new ConfigError('TEMPORAL_ADDRESS is not set: point it at a Temporal frontend (or run the whole local stack with `npm start`)');
  const secrets = await resolveSecrets(config);
  const onDatabase = (e: unknown) => databaseStartupLine(e, databaseUrl);
  const onTemporal = (e: unknown) => temporalStartupLine(e, address, config.TEMPORAL_NAMESPACE);
  // Migrations (or, with BROKER_MIGRATIONS=external, the check that they ran) on a pool of their
  // own, without the API's statement deadline (an index build may take minutes).
  const migrations = createPool(databaseUrl, 1);
  const schema = await startupStep(() => prepareSchema(migrations, config).finally(() => migrations.end()), onDatabase);
  for (const warning of schema.warnings) console.warn(`agentkeys-broker api: warning: ${warning}`);
  const db = createPool(databaseUrl, config.BROKER_DB_POOL_MAX, { queryTimeoutMs: config.BROKER_DB_QUERY_TIMEOUT_MS });
  // Production only: refuse to start when STS is unreachable with the broker's credentials.
  const skipCheck = process.argv.includes('--skip-startup-check') || config.BROKER_SKIP_STARTUP_CHECK === true;
  const sts = await stsStartupGate(config, { skipCheck });
  const temporal = await startupStep(() => connectTemporalClient(config, secrets, address), onTemporal);
  await startupStep(
    () => prepareTemporalNamespace(temporal.connection, { namespace: config.TEMPORAL_NAMESPACE, address, onRegistered: (line) => console.log(line) }),
    onTemporal,
  );
  const api = await startupStep(
    () => startApi({ config, secrets, db, address, temporal, readiness: { sts, ...dbRolesReadiness(config, schema.warnings) } }),
    (e) => listenStartupLine(e, config.HOST, { PORT: config.PORT, BROKER_OPS_PORT: config.BROKER_OPS_PORT }),
  );
  const docsUi = docsUiPlace(config);
  const docs =
    docsUi === 'public'
      ? `${config.publicUrl}/docs`
      : docsUi === 'ops' && api.metricsUrl
        ? api.metricsUrl.replace(/\/metrics$/, '/docs')
        : `${config.publicUrl}/docs/json`;
  api.app.log.info(`agentkeys-broker API listening on ${api.url} (public URL ${config.publicUrl}, docs ${docs})`);
  if (api.metricsUrl) api.app.log.info(`metrics on ${api.metricsUrl} (ops listener)`);
  let closing = false;
  const stop = (signal: string) => {
    if (closing) return;
    closing = true;
    api.app.log.info(`${signal}: shutting down`);
    void api
      .close()
      .then(() => temporal.connection.close())
      .then(() => db.end())
      .then(() => process.exit(0));
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

/**
 * Production only: /readyz's `db_roles` part, what the start-up found the login could do to the
 * audit log. Always ready (deployments that migrate under their runtime login run that way); the
 * detail is for the operator reading the parts.
 */
function dbRolesReadiness(config: Config, warnings: string[]): Record<string, ReadinessCheck> {
  if (!config.isProduction) return {};
  const detail =
    warnings.length > 0
      ? `at start-up: ${warnings.join('; ')}`
      : `at start-up: the login owns nothing of the schema and is no superuser (BROKER_MIGRATIONS=${config.BROKER_MIGRATIONS})`;
  return { db_roles: () => Promise.resolve({ ok: true, detail }) };
}

main().catch((e: unknown) => {
  console.error(startupFailureText('agentkeys-broker api', e, process.env.LOG_LEVEL));
  process.exit(1);
});
