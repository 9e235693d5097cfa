import type { FastifyInstance } from 'fastify';
import { buildApp } from './app';
import type { ApiDeps } from './deps';
import { connectTemporalClient } from './temporal-client';

export interface RunningApi {
  app: FastifyInstance;
  /** Where it listens, e.g. http://127.0.0.1:8091 */
  url: string;
  close(): Promise<void>;
}

/** Connects the Temporal client, builds the app and listens on HOST:PORT. */
export async function startApi(deps: Omit<ApiDeps, 'temporal'> & { address: string }): Promise<RunningApi> {
  const { address, ...rest } = deps;
  const temporal = await connectTemporalClient(deps.config, deps.secrets, address);
  const app = await buildApp({ ...rest, temporal });
  const url = await app.listen({ host: deps.config.HOST, port: deps.config.PORT });
  return {
    app,
    url,
    async close() {
      await app.close();
      await temporal.connection.close();
    },
  };
}
