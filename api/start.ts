import type { Client } from '@temporalio/client';
import type { FastifyInstance } from 'fastify';
import { buildApp, type BuildAppOptions } from './app';
import type { ApiDeps } from './dependencies';
import { startOpsListener } from '../adapters/ops-listener';
import { processRegistry } from '../lib/metrics';
import { createTeeVerifierFromConfig, teeKeyReadiness } from '../adapters/tee-jwt';
import { connectTemporalClient } from '../adapters/temporal-client';

export interface RunningApi {
  app: FastifyInstance;
  /** Where it listens, e.g. http://127.0.0.1:8091 */
  url: string;
  /** The ops listener's /metrics (BROKER_OPS_HOST:BROKER_OPS_PORT; also /docs in production); undefined when BROKER_OPS_PORT is unset. */
  metricsUrl?: string;
  close(): Promise<void>;
}

/**
 * Connects the Temporal client (or uses `temporal`, e.g. one on an in-process worker's
 * NativeConnection, whose connection the caller keeps and closes), builds the app and listens.
 */
export async function startApi(
  deps: Omit<ApiDeps, 'temporal'> & { address: string; temporal?: Client; logStream?: BuildAppOptions['logStream'] },
): Promise<RunningApi> {
  const { address, logStream, temporal: given, ...rest } = deps;
  // Throws at boot when a configured TEE key is unusable; undefined when none is configured.
  const teeVerifier = rest.teeVerifier ?? (await createTeeVerifierFromConfig(deps.config, { now: rest.now }));
  const temporal = given ?? (await connectTemporalClient(deps.config, deps.secrets, address));
  const app = await buildApp(
    { ...rest, temporal, teeVerifier, readiness: { tee_key: teeKeyReadiness(teeVerifier), ...rest.readiness } },
    logStream ? { logStream } : {},
  );
  const url = await app.listen({ host: deps.config.HOST, port: deps.config.PORT });
  const port = deps.config.BROKER_OPS_PORT;
  const ops =
    port === undefined
      ? undefined
      : await startOpsListener({ host: deps.config.BROKER_OPS_HOST, port, registries: [app.metricsRegistry, processRegistry], docs: app.opsDocs });
  return {
    app,
    url,
    metricsUrl: ops?.metricsUrl,
    async close() {
      await ops?.close();
      await app.close();
      if (!given) await temporal.connection.close();
    },
  };
}
