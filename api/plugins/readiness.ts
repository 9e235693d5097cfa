import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { ReadinessCheck } from '../deps';

/**
 * The parts /readyz reports on. Surfaces add their own (`app.addReadinessCheck`) when they
 * register; the deps' `readiness` entries (from main, the stack runner or a test) come first.
 */
export default fp(
  async function readinessPlugin(app: FastifyInstance) {
    const checks = new Map<string, ReadinessCheck>(Object.entries(app.deps.readiness ?? {}));
    app.decorate('readinessChecks', checks);
    app.decorate('addReadinessCheck', (name: string, check: ReadinessCheck) => {
      if (!checks.has(name)) checks.set(name, check);
    });
  },
  { name: 'readiness' },
);
