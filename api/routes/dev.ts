/**
 * Development-only routes. Checks here: none; the routes exist only with dev fixtures on.
 */
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';

/** Development-only helpers; registered only when dev fixtures are on. */
export default async function devRoutes(appBase: FastifyInstance) {
  const app = appBase.withTypeProvider<ZodTypeProvider>();
  app.get(
    '/_dev/mail',
    {
      schema: {
        tags: ['dev'],
        summary: 'Mail captured by the SES stand-in, newest first (dev profile only)',
        querystring: z.object({ to: z.string().min(3).max(254) }),
      },
    },
    async (request) => (app.deps.devMailbox?.mailTo(request.query.to) ?? []).map(({ to, subject, text, received_at }) => ({ to, subject, text, received_at })),
  );
}
