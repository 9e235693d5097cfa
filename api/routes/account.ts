import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { BrokerError } from '../../lib/errors';
import { describeAccount, listSessions, MAX_LISTED_SESSIONS, NEVER_A_RECENT_LOGIN, REAUTH_SECONDS, revokeOwnSession } from '../../services/sessions';
import { accountSessionSchema } from '../../lib/wire';
import { commonErrors, errorBody } from '../schemas';

const sessionIdSchema = z.string().regex(/^[0-9a-f]{32}$/, 'session_id must be 32 lower-case hex digits, as GET /v1/account/sessions lists it');

const unix = (d: Date): number => Math.floor(d.getTime() / 1000);

/**
 * What an account holder sees of their own account beyond /v1/session/me (the console's account
 * page): the identities it signs in with, and its logins that can still produce a bearer (a live
 * session, or a refresh family that can still renew, once its bearer has expired too), one of
 * which it may end. A login is named by the keyed digest its session's audit rows carry, never by
 * a jti: the list hands out nothing a bearer is made of, and a name means nothing outside this
 * account.
 */
export default async function accountRoutes(appBase: FastifyInstance) {
  const app = appBase.withTypeProvider<ZodTypeProvider>();
  const { db, secrets } = app.deps;
  const authOf = (request: { auth?: { omniAccount: string; jti?: string; method?: string; kind: 'session' | 'tee' } }) => {
    if (!request.auth) throw new BrokerError('unauthorized', 'not authenticated');
    return request.auth;
  };

  app.get(
    '/v1/account/identities',
    {
      preHandler: app.requireAuth,
      schema: {
        tags: ['account'],
        summary: 'The identities this account signs in with',
        security: [{ bearer: [] }],
        response: {
          200: z.object({
            omni_account: z.string(),
            identities: z.array(
              z.object({
                type: z.string(),
                value: z.string(),
                email: z.string().nullable().describe('the verified email a Google login reported'),
                created_at: z.number().int(),
                last_login_at: z.number().int(),
              }),
            ),
          }),
          ...commonErrors,
        },
      },
    },
    async (request) => {
      const auth = authOf(request);
      const { user } = await describeAccount({ db }, auth.omniAccount);
      return {
        omni_account: auth.omniAccount,
        identities: user
          ? [
              {
                type: user.identity_type,
                value: user.identity_value,
                email: user.email,
                created_at: unix(user.created_at),
                last_login_at: unix(user.last_login_at),
              },
            ]
          : [],
      };
    },
  );

  app.get(
    '/v1/account/sessions',
    {
      preHandler: app.requireAuth,
      schema: {
        tags: ['account'],
        summary: "This account's live sessions, newest first",
        description:
          `Every login of this account that can still produce a bearer, at most ${MAX_LISTED_SESSIONS}: a session neither logged out nor expired, ` +
          'or a refresh family whose token can still renew it, also once its bearer has expired (bearer_live false). ' +
          "A login's sessions show as one entry: the bearer's own session when it is one of them, else its newest.",
        security: [{ bearer: [] }],
        response: { 200: z.object({ sessions: z.array(accountSessionSchema) }), ...commonErrors },
      },
    },
    async (request) => {
      const auth = authOf(request);
      const rows = await listSessions({ db, secrets, config: app.deps.config }, auth.omniAccount, auth.jti);
      return {
        sessions: rows.map((s) => ({
          session_id: s.sessionId,
          method: s.method,
          created_at: unix(s.created_at),
          expires_at: unix(s.expires_at),
          current: s.jti === auth.jti,
          bearer_live: s.bearerLive,
          refresh_expires_at: s.refreshExpiresAt,
        })),
      };
    },
  );

  app.delete(
    '/v1/account/sessions/:session_id',
    {
      preHandler: app.requireAuth,
      schema: {
        tags: ['account'],
        summary: 'End one of this account’s sessions (and the refresh tokens it issued)',
        description:
          '204 when it was live and is now revoked; 404 when no live session of this account has that id (another account’s included). ' +
          'It ends the whole login: the session and its refresh family with every session it issued, also when its bearer has expired but the family can still renew ' +
          '(any session id of such a login names it). ' +
          `The bearer's own session takes any bearer (a logout); any other needs a broker session whose login is at most ${REAUTH_SECONDS} s old ` +
          `(else 401 with reauthenticate: true, before the sessions are read); ${NEVER_A_RECENT_LOGIN} are 403.`,
        security: [{ bearer: [] }],
        params: z.object({ session_id: sessionIdSchema }),
        response: { 204: z.null(), 403: errorBody, 404: errorBody, ...commonErrors },
      },
    },
    async (request, reply) => {
      const auth = authOf(request);
      const revoked = await revokeOwnSession({ db, secrets, config: app.deps.config, now: app.deps.now }, auth, request.params.session_id, request.id);
      if (!revoked) throw new BrokerError('not_found', 'no live session of this account has that id');
      return reply.code(204).send(null);
    },
  );
}
