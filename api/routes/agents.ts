import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { BrokerError } from '../../lib/errors';
import { revokeAgent } from '../../services/kill-switch';
import { wakeKillSwitch } from '../kill-switch';
import { commonErrors, errorBody, evmAddressSchema } from '../schemas';

/**
 * The kill switch per agent (docs/kill-switch.md): the account holder revokes an agent wallet.
 * Every grant of the account naming it is revoked, the agent's revocation epoch for each main
 * wallet it minted for is raised, and deny entries end the credentials it already holds. Only
 * the account that granted the agent can do this; any other caller gets the answer a missing
 * agent gets (404) and nothing changes.
 */
const agentParam = evmAddressSchema('wallet');

const revokedView = z.object({
  agent_address: z.string(),
  revoked_grants: z.array(z.string()).describe('grants this call revoked'),
  ended_epochs: z.array(z.object({ user_wallet: z.string(), epoch: z.number().int() })).describe('credentials carrying these epochs are denied'),
  kill_switch: z.object({ mode: z.enum(['off', 'iam', 'file']), until: z.number().int().describe('unix seconds: the deny entries last until then') }),
});

export default async function agentRoutes(appBase: FastifyInstance) {
  const app = appBase.withTypeProvider<ZodTypeProvider>();
  const { config, db } = app.deps;
  const now = () => app.deps.now?.() ?? Date.now();
  const revokesPerAccount = app.requestLimit({ name: 'agent_revoke:account', max: config.BROKER_RATE_LIMIT_REVOKE_PER_MINUTE, windowMs: 60_000 });

  app.post(
    '/v1/agents/:wallet/revoke',
    {
      preHandler: app.requireAuth,
      schema: {
        tags: ['grants'],
        summary: 'The account holder revokes an agent wallet: its grants, and the credentials it already holds',
        description:
          'Revokes every grant of this account naming the agent, raises the agent’s revocation epoch and adds deny entries ' +
          'keyed on the agent’s session tags (docs/kill-switch.md). 404 when this account never granted the agent. Repeating it ' +
          'ends the next epoch (a no-op for credentials, recorded).',
        security: [{ bearer: [] }],
        params: z.object({ wallet: agentParam }),
        response: { 200: revokedView, 404: errorBody, ...commonErrors },
      },
    },
    async (request) => {
      const auth = request.auth;
      if (!auth) throw new BrokerError('unauthorized', 'not authenticated');
      await revokesPerAccount(request, auth.omniAccount);
      const agent = request.params.wallet;
      const result = await revokeAgent({ db, config, now }, auth, agent, request.id);
      if (!result) throw new BrokerError('not_found', 'this account has never granted that agent wallet');
      // Always, a repeated revocation too: it is how an entry whose wake-up failed is applied.
      await wakeKillSwitch(app.deps, request.log);
      request.log.info({ flow: 'kill_switch', agent }, 'agent revoked');
      return {
        agent_address: agent,
        revoked_grants: result.revoked,
        ended_epochs: result.ended,
        kill_switch: { mode: config.BROKER_KILL_SWITCH, until: Math.floor(result.until.getTime() / 1000) },
      };
    },
  );
}
