/**
 * Who am I, and logout. Checks here: a bearer is present and carries what its kind needs (a jti,
 * a TEE token digest); whether it was already revoked is services/sessions.ts's.
 */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { BrokerError } from '../../lib/errors';
import { describeAccount, logout } from '../../services/sessions';
import { commonErrors, identitySchema } from '../schemas';

/** Who am I, and logout: for any bearer the broker accepts (services/sessions.ts does the work). */
export default async function sessionRoutes(appBase: FastifyInstance) {
  const app = appBase.withTypeProvider<ZodTypeProvider>();

  app.get(
    '/v1/session/me',
    {
      preHandler: app.requireAuth,
      schema: {
        tags: ['session'],
        summary: 'The account behind the bearer',
        security: [{ bearer: [] }],
        response: {
          200: z.object({
            omni_account: z.string(),
            user_id: z.string().nullable(),
            identity: identitySchema.nullable(),
            wallets: z.array(z.object({ wallet_index: z.number().int(), address: z.string().nullable(), role: z.enum(['main', 'agent']) })),
            expires_at: z.number().int(),
            email: z.string().optional().describe('the verified email of a Google login (email_verified true), when the account has one'),
          }),
          ...commonErrors,
        },
      },
    },
    async (request) => {
      const auth = request.auth;
      if (!auth) throw new BrokerError('unauthorized', 'not authenticated');
      const { user, wallets } = await describeAccount(app.deps, auth.omniAccount);
      return {
        omni_account: auth.omniAccount,
        user_id: user?.user_id ?? null,
        identity: user ? identitySchema.parse({ type: user.identity_type, value: user.identity_value }) : null,
        wallets,
        expires_at: auth.expiresAt,
        ...(user?.email ? { email: user.email } : {}),
      };
    },
  );

  app.post(
    '/v1/session/logout',
    {
      preHandler: app.requireAuth,
      schema: {
        tags: ['session'],
        summary: 'Revoke this session',
        description: 'A broker session, or a TEE access token: the broker refuses it from then on until its exp (the TEE itself keeps no revocation list).',
        security: [{ bearer: [] }],
        response: { 204: z.null(), ...commonErrors },
      },
    },
    async (request, reply) => {
      const auth = request.auth;
      if (!auth) throw new BrokerError('unauthorized', 'not authenticated');
      if (auth.kind === 'tee') {
        if (!auth.teeTokenDigest) throw new BrokerError('unauthorized', 'not authenticated');
        await logout(app.deps, { kind: 'tee', omniAccount: auth.omniAccount, teeTokenDigest: auth.teeTokenDigest, expiresAt: auth.expiresAt }, request.id);
      } else {
        if (!auth.jti) throw new BrokerError('unauthorized', 'not authenticated');
        await logout(app.deps, { kind: 'session', omniAccount: auth.omniAccount, jti: auth.jti, method: auth.method }, request.id);
      }
      return reply.code(204).send(null);
    },
  );
}
