/** Test helpers for the /docs UI's placement (api/plugins/docs.ts): the stack's broker with other settings, on its own public and ops ports. */
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../api/app';
import { oidcKeysetPath } from '../adapters/oidc-keys';
import { startOpsListener, type OpsListener } from '../adapters/ops-listener';
import type { Config } from '../lib/config';
import { findFreePort } from '../scripts/temporal-dev-server';
import type { TestStack } from './harness';

/**
 * The stack's config with `config` over it; in production with the keyset file named (production
 * never falls back to the development keyset, adapters/oidc-keys.ts): the stack's own.
 */
export function productionReady(base: Pick<TestStack, 'config'>, config: Partial<Config>): Config {
  const merged = { ...base.config, ...config };
  return merged.isProduction ? { ...merged, BROKER_OIDC_KEY_PATH: merged.BROKER_OIDC_KEY_PATH ?? oidcKeysetPath(base.config) } : merged;
}

export interface DocsVariant {
  app: FastifyInstance;
  ops: OpsListener;
  /** The public listener, e.g. http://127.0.0.1:40001 */
  url: string;
  /** The ops listener, e.g. http://127.0.0.1:40002 */
  opsUrl: string;
  close(): Promise<void>;
}

/** The stack's broker with other settings, listening on its own public and ops ports, wired as api/start.ts wires them. */
export async function docsVariant(base: TestStack, config: Partial<Config>): Promise<DocsVariant> {
  // Its own public URL, as a deployment's is: the document's server, where "Try it out" sends calls.
  const port = await findFreePort();
  const publicUrl = `http://127.0.0.1:${port}`;
  const app = await buildApp({ ...base.deps, config: productionReady(base, { publicUrl, ...config }) }, { logLevel: 'silent' });
  const url = await app.listen({ host: '127.0.0.1', port });
  const ops = await startOpsListener({ host: '127.0.0.1', port: 0, registries: [app.metricsRegistry], docs: app.opsDocs });
  return {
    app,
    ops,
    url,
    opsUrl: new URL(ops.metricsUrl).origin,
    async close() {
      await ops.close();
      await app.close();
    },
  };
}
