import type { FastifyInstance, FastifyRequest } from 'fastify';
import fastifyMetrics from 'fastify-metrics';
import fp from 'fastify-plugin';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { Registry } from 'prom-client';
import { HTTP_REQUEST_DURATION, LATENCY_BUCKETS, loginRequests, mintRequests } from '../../lib/metrics';
import { BrokerError } from '../../lib/errors';
import { MINT_TARGETS } from '../../activities/mint-targets';

/** Every mint target's route, labelled by its path (`/v1/mint-aws-creds` → `aws_creds`). */
const MINT_ROUTES: Record<string, string> = Object.fromEntries(
  MINT_TARGETS.map((t) => [`POST ${t.path}`, t.path.replace(/^\/v1\/mint-/, '').replace(/-/g, '_')]),
);

declare module 'fastify' {
  interface FastifyInstance {
    /** This app's HTTP request histogram; the ops listener serves it with the process registry. */
    metricsRegistry: Registry;
  }
}

/** The error kind of a failed request (the wire `error`), or undefined when it did not throw. */
function errorKind(err: Error): string {
  if (err instanceof BrokerError) return err.kind;
  if (hasZodFastifySchemaValidationErrors(err)) return 'bad_request';
  const status = (err as { statusCode?: unknown }).statusCode;
  return typeof status === 'number' && status >= 400 && status < 500 ? 'bad_request' : 'internal';
}

/**
 * Request metrics of the public app: fastify-metrics' latency histogram by route pattern (never
 * the raw URL: an unknown path is `__unknown__`), method and status; and the outcome of each
 * login and mint request by flow — `ok` or the error kind the client was answered with.
 */
export default fp(
  async function metricsPlugin(app: FastifyInstance) {
    const registry = new Registry();
    app.decorate('metricsRegistry', registry);
    await app.register(fastifyMetrics, {
      endpoint: null,
      defaultMetrics: { enabled: false },
      routeMetrics: {
        enabled: { histogram: true, summary: false },
        registeredRoutesOnly: false,
        overrides: {
          histogram: {
            name: HTTP_REQUEST_DURATION,
            help: 'HTTP requests by method, route pattern and status',
            buckets: LATENCY_BUCKETS,
            registers: [registry],
          },
          // fastify-metrics builds the summary even when it is off: it goes into no registry.
          summary: { registers: [] },
        },
      },
    });

    const kinds = new WeakMap<FastifyRequest, string>();
    app.addHook('onError', async (request, _reply, err) => {
      kinds.set(request, errorKind(err));
    });
    app.addHook('onResponse', async (request, reply) => {
      const key = `${request.method} ${request.routeOptions.url ?? ''}`;
      // Labelled where the login method's routes are registered (api/login-methods.ts).
      const login = request.routeOptions.config.login;
      const mint = MINT_ROUTES[key];
      if (!login && !mint) return;
      const outcome = kinds.get(request) ?? (reply.statusCode < 400 ? 'ok' : `status_${reply.statusCode}`);
      if (login) loginRequests.inc({ flow: login.flow, step: login.step, outcome });
      if (mint) mintRequests.inc({ kind: mint, outcome });
    });
  },
  { name: 'metrics' },
);
