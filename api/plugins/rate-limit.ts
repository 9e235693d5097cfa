import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { rateLimited } from '../../lib/errors';

/**
 * Fixed-window counters held in this API process. Per-address limits that must hold across API
 * replicas live in the flows themselves (cooldowns, attempt budgets); these guard one process.
 */
export default fp(
  async function rateLimitPlugin(app: FastifyInstance) {
    const windows = new Map<string, { count: number; resetAt: number }>();
    const now = () => app.deps.now?.() ?? Date.now();
    const sweep = setInterval(() => {
      const t = now();
      for (const [k, w] of windows) if (w.resetAt <= t) windows.delete(k);
    }, 60_000);
    sweep.unref();
    app.addHook('onClose', async () => clearInterval(sweep));

    app.decorate('rateLimit', (key: string, limit: number, windowMs: number) => {
      const t = now();
      let w = windows.get(key);
      if (!w || w.resetAt <= t) {
        w = { count: 0, resetAt: t + windowMs };
        windows.set(key, w);
      }
      w.count += 1;
      if (w.count > limit) throw rateLimited('too many requests; slow down', (w.resetAt - t) / 1000);
    });
  },
  { name: 'rate-limit' },
);
