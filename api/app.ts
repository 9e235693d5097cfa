import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import { serializerCompiler } from 'fastify-type-provider-zod';
import type { TrustProxy } from '../lib/config';
import type { ApiDeps } from './dependencies';
import { loggerOptions } from './logger';
import { validatorCompiler } from './schemas';
import authPlugin from './plugins/auth';
import docsPlugin from './plugins/docs';
import errorsPlugin from './plugins/errors';
import metricsPlugin from './plugins/metrics';
import securityHeadersPlugin from './plugins/security-headers';
import rateLimitPlugin from './plugins/rate-limit';
import readinessPlugin from './plugins/readiness';
import flowDeadlinePlugin from './plugins/flow-deadline';
import devRoutes from './routes/dev';
import healthRoutes from './routes/health';
import sessionRoutes from './routes/session';
import refreshRoutes from './routes/refresh';
import approvalRoutes from './routes/approvals';
import grantRoutes from './routes/grants';
import { registerLoginMethods } from './login-methods';
import { PASSKEY_ID_MAX_CHARS } from './routes/passkey';
import agentRoutes from './routes/agents';
import auditRoutes from './routes/audit';
import mintRoutes from './routes/mint';
import oidcRoutes from './routes/oidc';
import codecRoutes from './routes/codec';
import opsTokenPlugin from './plugins/ops-token';
import consolePlugin from './plugins/console';
import accountRoutes from './routes/account';

export interface BuildAppOptions {
  /** pino level; 'silent' in tests. */
  logLevel?: string;
  /** Where log lines go (pino `stream`); tests capture them. Default stdout. */
  logStream?: { write(line: string): void };
}

/** A caller's own X-Request-Id, when it is a plain token: kept beside the broker's id, never instead of it. */
export function clientRequestId(req: Pick<IncomingMessage, 'headers'>): string | undefined {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && /^[\w.-]{1,64}$/.test(given) ? given : undefined;
}

/** BROKER_TRUST_PROXY as Fastify takes it: a hop count becomes "trust the nearest N hops". */
function trustProxyOption(setting: TrustProxy): false | string[] | ((address: string, hop: number) => boolean) {
  if (typeof setting !== 'number') return setting;
  return (_address, hop) => hop < setting;
}

/**
 * Warns once (per app: one per API process) when a peer that BROKER_TRUST_PROXY does not name sends
 * X-Forwarded-For. The header is then ignored and that peer is the client address: behind a load
 * balancer left off the setting every client shares the balancer's address, so each per-address
 * limit becomes one global budget and BROKER_TEE_CALLBACK_ALLOW sees the balancer, not the TEE.
 * Neither the header's value nor any other request data is logged, only the peer.
 */
function warnOnUntrustedForwardedFor(app: FastifyInstance, setting: TrustProxy): void {
  let warned = false;
  app.addHook('onRequest', async (request) => {
    if (warned) return;
    const forwarded = [request.headers['x-forwarded-for'] ?? []].flat().join(',');
    if (forwarded.replace(/[\s,]/g, '') === '') return;
    // Fastify walks X-Forwarded-For only past trusted peers: `ips` is the TCP peer alone when it is not one.
    if (setting !== false && (request.ips?.length ?? 0) > 1) return;
    warned = true;
    const peer = request.raw.socket.remoteAddress ?? 'unknown';
    const now = setting === false ? 'unset' : String(setting);
    request.log.warn(
      { peer, setting: 'BROKER_TRUST_PROXY' },
      `X-Forwarded-For from ${peer} ignored: that peer is not on BROKER_TRUST_PROXY (${now}), so it is the client address of its requests ` +
        `(rate limits, BROKER_TEE_CALLBACK_ALLOW). If ${peer} is your load balancer, add it to BROKER_TRUST_PROXY (docs/deploy.md). ` +
        'Logged once per process.',
    );
  });
}

/** The broker's HTTP surface: shared plugins first, then one plugin per surface. */
export async function buildApp(deps: ApiDeps, opts: BuildAppOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: opts.logStream
      ? { ...(loggerOptions(opts.logLevel ?? deps.config.LOG_LEVEL) as object), stream: opts.logStream }
      : loggerOptions(opts.logLevel ?? deps.config.LOG_LEVEL),
    bodyLimit: deps.config.BROKER_BODY_LIMIT_BYTES,
    // The router refuses a longer path parameter before any route sees it (Fastify's default is 100
    // characters, which left a passkey with an id over 75 bytes impossible to remove). Every other
    // parameter's own schema bounds it to 42 characters or fewer.
    routerOptions: { maxParamLength: PASSKEY_ID_MAX_CHARS },
    // request.ip (rate limits, the TEE callback allow-list, logs) is the TCP peer unless the peer is
    // a load balancer named in BROKER_TRUST_PROXY; then it is the address that balancer saw.
    trustProxy: trustProxyOption(deps.config.BROKER_TRUST_PROXY),
    // Always the broker's own id (audit rows, logs, the X-Request-Id answer): a caller cannot choose it.
    genReqId: () => randomUUID(),
    // A caller's X-Request-Id rides along on every log line of its request, labelled as the client's.
    childLoggerFactory: (logger, bindings, options, rawReq) => {
      const clientId = clientRequestId(rawReq);
      return logger.child(clientId ? { ...bindings, client_request_id: clientId } : bindings, options);
    },
    // Graceful shutdown: stop accepting, let in-flight requests finish.
    return503OnClosing: true,
    // The router's own refusals (a malformed URL, a path parameter over maxParamLength) in the
    // wire error shape too, without echoing the URL back (Fastify's default does both otherwise).
    frameworkErrors: (err, _request, reply: FastifyReply) => {
      const status = err.statusCode ?? 400;
      void reply
        .code(status)
        .send(
          status >= 500
            ? { error: 'internal', message: 'internal error' }
            : { error: 'bad_request', message: err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'a path parameter is too long' : 'the URL is malformed' },
        );
    },
  });
  warnOnUntrustedForwardedFor(app, deps.config.BROKER_TRUST_PROXY);
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.decorate('deps', deps);
  app.addHook('onSend', async (request, reply) => {
    void reply.header('x-request-id', request.id);
    const clientId = clientRequestId(request.raw);
    if (clientId) void reply.header('x-client-request-id', clientId);
    void reply.header('cache-control', 'no-store');
  });

  await app.register(errorsPlugin);
  await app.register(metricsPlugin);
  await app.register(securityHeadersPlugin);
  await app.register(rateLimitPlugin);
  await app.register(opsTokenPlugin);
  await app.register(readinessPlugin);
  await app.register(flowDeadlinePlugin);
  await app.register(authPlugin);
  await app.register(docsPlugin);

  await app.register(healthRoutes);
  await registerLoginMethods(app);
  await app.register(oidcRoutes);
  await app.register(sessionRoutes);
  await app.register(refreshRoutes);
  await app.register(grantRoutes);
  await app.register(agentRoutes);
  await app.register(mintRoutes);
  await app.register(approvalRoutes);
  await app.register(auditRoutes);
  await app.register(codecRoutes);
  await app.register(accountRoutes);
  await app.register(consolePlugin);
  if (deps.config.devFixtures) await app.register(devRoutes);
  return app;
}
