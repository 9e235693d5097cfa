/**
 * Staying logged in (POST /v1/session/refresh_token, /v1/session/refresh). Checks here: the body's
 * form, and that a broker session (not a TEE token) claims; every rule of refresh tokens is
 * api/session-refresh.ts's.
 */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { BrokerError } from '../../lib/errors';
import { commonErrors, errorBody, refreshedSessionSchema, refreshTokenSchema } from '../schemas';
import type { LoginMethod } from '../../lib/session-token';
import { claimRefreshToken, refreshSession } from '../session-refresh';

/** Staying logged in: a session claims a refresh token, which is traded for a new session (api/session-refresh.ts). */
export default async function refreshRoutes(appBase: FastifyInstance) {
  const app = appBase.withTypeProvider<ZodTypeProvider>();
  // Refused refreshes per client address: a refresh token is 256 random bits, so this bounds the
  // database reads a source spends on tokens that are not, not guessing; good refreshes never count
  // here (each family has its own budget of them, api/session-refresh.ts).
  const failuresPerIp = app.requestLimit({ name: 'refresh_failures:ip', max: app.deps.config.BROKER_RATE_LIMIT_IP_PER_MINUTE, windowMs: 60_000 });

  app.post(
    '/v1/session/refresh_token',
    {
      preHandler: app.requireAuth,
      schema: {
        tags: ['session'],
        summary: "The refresh token of this session (once per session; a broker session's bearer only)",
        security: [{ bearer: [] }],
        response: { 201: refreshTokenSchema, 409: errorBody, ...commonErrors },
      },
    },
    async (request, reply) => {
      const auth = request.auth;
      if (!auth) throw new BrokerError('unauthorized', 'not authenticated');
      if (auth.kind !== 'session' || !auth.jti)
        throw new BrokerError('bad_request', 'only a broker session renews here; a TEE access token is renewed at the TEE');
      return reply
        .code(201)
        .send(
          await claimRefreshToken(
            app.deps,
            { omniAccount: auth.omniAccount, jti: auth.jti, method: auth.method as LoginMethod | undefined, wallet: auth.wallet },
            request.id,
          ),
        );
    },
  );

  app.post(
    '/v1/session/refresh',
    {
      schema: {
        tags: ['session'],
        summary: 'Trade a refresh token for a new session and a new refresh token',
        description:
          'Each refresh token is accepted once. Presenting a spent one again revokes its whole family and every session the family issued (audited as session.refresh_reuse). ' +
          'Past BROKER_RATE_LIMIT_IP_PER_MINUTE refused refreshes a minute from one client address, 429 before the token is looked up. ' +
          'Past BROKER_RATE_LIMIT_REFRESH_PER_MINUTE successful refreshes of one login (refresh family) in any 60 s, 429 with Retry-After: nothing changes and the token presented stays good.',
        body: z.object({ refresh_token: z.string().min(1).max(512) }).strict(),
        response: {
          200: refreshedSessionSchema,
          ...commonErrors,
        },
      },
    },
    async (request) => {
      await failuresPerIp.check(request);
      try {
        return await refreshSession(app.deps, request.body.refresh_token, request.id);
      } catch (e) {
        if (e instanceof BrokerError && e.kind === 'unauthorized') await failuresPerIp(request);
        throw e;
      }
    },
  );
}
