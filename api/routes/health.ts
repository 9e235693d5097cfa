/**
 * Liveness and readiness. Checks here: the ops token, for the per-part detail of /readyz
 * (api/plugins/ops-token.ts); the parts themselves are api/dependencies.ts's.
 */
import type { FastifyInstance } from 'fastify';
import { dependencyChecks, runCheck, type ReadinessCheck } from '../dependencies';

/** Liveness (/healthz) and readiness (/readyz; per part with the ops token). */
export default async function healthRoutes(app: FastifyInstance) {
  const { db, temporal, secrets, config } = app.deps;
  // Each part gets BROKER_READINESS_TIMEOUT_MS (1500 ms): a hung part is named within 2 s.
  const timeoutMs = config.BROKER_READINESS_TIMEOUT_MS;
  const builtIn: Record<string, ReadinessCheck> = {
    ...dependencyChecks({ db, temporal }, timeoutMs, `namespace ${config.TEMPORAL_NAMESPACE}, task queue ${config.BROKER_TASK_QUEUE}`),
    session_key: () => Promise.resolve({ ok: Boolean(secrets.sessionKey.kid), detail: `kid ${secrets.sessionKey.kid}` }),
  };
  for (const [name, check] of Object.entries(builtIn)) app.addReadinessCheck(name, check);

  app.get('/healthz', { schema: { hide: true } }, async (_req, reply) => reply.type('text/plain').send('ok'));

  // Public: ready or not, nothing else (key thumbprints, the namespace and task queue are for
  // operators). With the ops token (Authorization: Bearer <BROKER_OPS_TOKEN>): every part and its detail.
  // A wrong token gets the public answer and counts against the source's budget of ops-token guesses,
  // shared with the codec: past it, any bearer from that source is 429 (a load balancer sends none).
  const lastOk = new Map<string, boolean>();
  app.get('/readyz', { schema: { hide: true } }, async (request, reply) => {
    const detail = (await app.opsBearer(request)) === 'ops';
    // Read at request time: surfaces registered after this plugin add their parts too.
    const entries = [...app.readinessChecks];
    const names = entries.map(([n]) => n);
    const results = await Promise.all(entries.map(([, check]) => runCheck(check, timeoutMs)));
    const parts = Object.fromEntries(names.map((n, i) => [n, results[i]]));
    // Which part went down (or came back) is logged once per change, for operators without the token.
    for (const [name, result] of Object.entries(parts)) {
      if (!result || lastOk.get(name) === result.ok) continue;
      if (!result.ok || lastOk.has(name))
        app.log[result.ok ? 'info' : 'warn'](
          { part: name, ok: result.ok, detail: result.detail },
          `readiness: ${name} ${result.ok ? 'is back' : 'is not ready'}`,
        );
      lastOk.set(name, result.ok);
    }
    const ready = results.every((r) => r.ok);
    const status = ready ? 'ready' : 'not_ready';
    return reply.code(ready ? 200 : 503).send(detail ? { status, parts } : { status });
  });
}
