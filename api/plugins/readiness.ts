import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { ReadinessCheck } from '../dependencies';
import { namespaceReadiness } from '../../adapters/temporal-namespace';

/**
 * The parts /readyz reports on. Surfaces add their own (`app.addReadinessCheck`) when they
 * register; the deps' `readiness` entries (from main, the stack runner or a test) come first.
 * Built in here: `temporal_namespace`, the namespace exists and lists every broker search
 * attribute (a flow on a namespace without them fails at its first upsert), naming what is missing.
 */
export default fp(
  async function readinessPlugin(app: FastifyInstance) {
    const { config, temporal } = app.deps;
    const checks = new Map<string, ReadinessCheck>(Object.entries(app.deps.readiness ?? {}));
    if (!checks.has('temporal_namespace'))
      checks.set('temporal_namespace', namespaceReadiness(temporal.connection, config.TEMPORAL_NAMESPACE, config.TEMPORAL_ADDRESS));
    app.decorate('readinessChecks', checks);
    app.decorate('addReadinessCheck', (name: string, check: ReadinessCheck) => {
      if (!checks.has(name)) checks.set(name, check);
    });
  },
  { name: 'readiness' },
);
