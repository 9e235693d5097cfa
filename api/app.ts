import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply } from 'fastify';
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import type { ApiDeps } from './deps';
import { loggerOptions } from './logger';
import authPlugin from './plugins/auth';
import docsPlugin from './plugins/docs';
import errorsPlugin from './plugins/errors';
import rateLimitPlugin from './plugins/rate-limit';
import readinessPlugin from './plugins/readiness';
import devRoutes from './routes/dev';
import healthRoutes from './routes/health';
import sessionRoutes from './routes/session';
import sessionEmailRoutes from './routes/email-login';
import sessionWalletRoutes from './routes/wallet-login';
import grantRoutes from './routes/grants';
import teeCallbackRoutes from './routes/tee-account';
import auditRoutes from './routes/audit';
import mintRoutes from './routes/mint';
import oidcRoutes from './routes/oidc';
import codecRoutes from './routes/codec';

export interface BuildAppOptions {
  /** pino level; 'silent' in tests. */
  logLevel?: string;
  /** Where log lines go (pino `stream`); tests capture them. Default stdout. */
  logStream?: { write(line: string): void };
}

/** The broker's HTTP surface: shared plugins first, then one plugin per surface. */
export async function buildApp(deps: ApiDeps, opts: BuildAppOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: opts.logStream ? { ...(loggerOptions(opts.logLevel ?? deps.config.LOG_LEVEL) as object), stream: opts.logStream } : loggerOptions(opts.logLevel ?? deps.config.LOG_LEVEL),
    bodyLimit: deps.config.BROKER_BODY_LIMIT_BYTES,
    trustProxy: false,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && /^[\w.-]{1,64}$/.test(given) ? given : randomUUID();
    },
    // Graceful shutdown: stop accepting, let in-flight requests finish.
    return503OnClosing: true,
    // The router's own refusals (a malformed URL, a path parameter over 100 characters) in the
    // wire error shape too, without echoing the URL back (Fastify's default does both otherwise).
    frameworkErrors: (err, _request, reply: FastifyReply) => {
      const status = err.statusCode ?? 400;
      void reply.code(status).send(status >= 500 ? { error: 'internal', message: 'internal error' } : { error: 'bad_request', message: err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'a path parameter is too long' : 'the URL is malformed' });
    },
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  app.decorate('deps', deps);
  app.addHook('onSend', async (request, reply) => {
    void reply.header('x-request-id', request.id);
    void reply.header('cache-control', 'no-store');
  });

  await app.register(errorsPlugin);
  await app.register(rateLimitPlugin);
  await app.register(readinessPlugin);
  await app.register(authPlugin);
  await app.register(docsPlugin);

  await app.register(healthRoutes);
  await app.register(sessionEmailRoutes);
  await app.register(sessionWalletRoutes);
  await app.register(oidcRoutes);
  await app.register(sessionRoutes);
  await app.register(teeCallbackRoutes);
  await app.register(grantRoutes);
  await app.register(mintRoutes);
  await app.register(auditRoutes);
  await app.register(codecRoutes);
  if (deps.config.devFixtures) await app.register(devRoutes);
  return app;
}
