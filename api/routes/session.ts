import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { appendAudit } from '../../db/audit';
import { withTransaction } from '../../db/pool';
import { revokeSession, revokeTeeToken } from '../../db/sessions';
import { hmacHex } from '../../lib/digest';
import { findUserByOmni, listWallets } from '../../db/users';
import { BrokerError } from '../../lib/errors';
import { commonErrors, identitySchema } from '../schemas';
import { revokeFamilyOfSession } from '../session-refresh';

/** Who am I, and logout: for any bearer the broker accepts. */
export default async function sessionRoutes(appBase: FastifyInstance) {
  const app = appBase.withTypeProvider<ZodTypeProvider>();
  const { db, secrets } = app.deps;

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
      const [user, wallets] = await Promise.all([findUserByOmni(db, auth.omniAccount), listWallets(db, auth.omniAccount)]);
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
        const tokenDigest = auth.teeTokenDigest;
        if (!tokenDigest) throw new BrokerError('unauthorized', 'not authenticated');
        await withTransaction(db, async (tx) => {
          // Recorded until the token's own exp; only the call that recorded it writes the audit row.
          if (await revokeTeeToken(tx, { tokenDigest, omniAccount: auth.omniAccount, expiresAt: new Date(auth.expiresAt * 1000) })) {
            const tokenHash = hmacHex(secrets.hmacSecret, 'audit-tee-token', tokenDigest).slice(0, 32);
            await appendAudit(tx, {
              event: 'session.logout',
              outcome: 'ok',
              omniAccount: auth.omniAccount,
              requestId: request.id,
              idemKey: `session.logout:tee:${tokenHash}`,
              details: { tee_token_hash: tokenHash, method: 'tee' },
            });
          }
        });
        return reply.code(204).send(null);
      }
      if (!auth.jti) throw new BrokerError('unauthorized', 'not authenticated');
      const jti = auth.jti;
      await withTransaction(db, async (tx) => {
        // Only the call that actually revoked it writes the row: concurrent or repeated logouts add nothing.
        // Its refresh family ends with it (the token in hand and the sessions it issued).
        const family = await revokeFamilyOfSession(tx, jti);
        if ((await revokeSession(tx, jti)) || family > 0) {
          await appendAudit(tx, {
            event: 'session.logout',
            outcome: 'ok',
            omniAccount: auth.omniAccount,
            requestId: request.id,
            idemKey: `session.logout:${hmacHex(secrets.hmacSecret, 'audit-jti', jti).slice(0, 32)}`,
            details: { jti_hash: hmacHex(secrets.hmacSecret, 'audit-jti', jti).slice(0, 32), method: auth.method ?? null },
          });
        }
      });
      return reply.code(204).send(null);
    },
  );
}
