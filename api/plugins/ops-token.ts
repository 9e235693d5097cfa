import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { hasOpsBearer } from './auth';

/** What a request's Authorization says about the ops token. */
export type OpsBearer = 'none' | 'ops' | 'wrong';

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Reads `Authorization: Bearer <BROKER_OPS_TOKEN>` for every route that takes the ops token (the
     * codec, /readyz detail), under one budget of wrong tokens per source. 'none': no Authorization
     * header, or no ops token configured (nothing to guess; not counted). A source past the budget
     * is refused (429) whatever it sends, the right token included, so the limit does not tell a
     * guesser which guess was right; a wrong token counts against it.
     */
    opsBearer(request: FastifyRequest): Promise<OpsBearer>;
  }
}

export default fp(
  async function opsTokenPlugin(app: FastifyInstance) {
    const { config } = app.deps;
    const opsToken = config.BROKER_OPS_TOKEN;
    const badTokenPerIp = app.requestLimit({ name: 'ops-token:bad:ip', max: config.BROKER_RATE_LIMIT_IP_PER_MINUTE, windowMs: 60_000 });

    app.decorate('opsBearer', async (request: FastifyRequest): Promise<OpsBearer> => {
      const header = request.headers.authorization;
      if (!header || !opsToken) return 'none';
      await badTokenPerIp.check(request);
      if (hasOpsBearer(request, opsToken)) return 'ops';
      await badTokenPerIp(request);
      return 'wrong';
    });
  },
  { name: 'ops-token', dependencies: ['rate-limit'] },
);
