import type { FastifyInstance } from 'fastify';
import type { ReadinessCheck } from '../deps';

const CHECK_TIMEOUT_MS = 3000;

async function run(check: ReadinessCheck): Promise<{ ok: boolean; detail?: string }> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      check(),
      new Promise<{ ok: boolean; detail: string }>((resolve) => {
        timer = setTimeout(() => resolve({ ok: false, detail: `no answer within ${CHECK_TIMEOUT_MS} ms` }), CHECK_TIMEOUT_MS);
      }),
    ]);
  } catch (e) {
    return { ok: false, detail: (e as Error).message };
  } finally {
    clearTimeout(timer);
  }
}

/** Liveness (/healthz) and readiness per part (/readyz). */
export default async function healthRoutes(app: FastifyInstance) {
  const { db, temporal, secrets, config } = app.deps;
  const builtIn: Record<string, ReadinessCheck> = {
    database: async () => {
      await db.query('SELECT 1');
      return { ok: true };
    },
    temporal: async () => {
      await temporal.workflowService.getSystemInfo({});
      return { ok: true, detail: `namespace ${config.TEMPORAL_NAMESPACE}, task queue ${config.BROKER_TASK_QUEUE}` };
    },
    session_key: () => Promise.resolve({ ok: Boolean(secrets.sessionKey.kid), detail: `kid ${secrets.sessionKey.kid}` }),
  };
  for (const [name, check] of Object.entries(builtIn)) app.addReadinessCheck(name, check);


  app.get('/healthz', { schema: { hide: true } }, async (_req, reply) => reply.type('text/plain').send('ok'));

  app.get('/readyz', { schema: { hide: true } }, async (_req, reply) => {
    // Read at request time: surfaces registered after this plugin add their parts too.
    const entries = [...app.readinessChecks];
    const names = entries.map(([n]) => n);
    const results = await Promise.all(entries.map(([, check]) => run(check)));
    const parts = Object.fromEntries(names.map((n, i) => [n, results[i]]));
    const ready = results.every((r) => r.ok);
    return reply.code(ready ? 200 : 503).send({ status: ready ? 'ready' : 'not_ready', parts });
  });
}
