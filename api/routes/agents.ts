import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { appendAudit } from '../../db/audit';
import { grantStatus, lockGrantsOfAccountForAgent, revokeGrant } from '../../db/grants';
import { bumpAgentEpoch, insertKillSwitchEntry } from '../../db/kill-switch';
import { withTransaction } from '../../db/pool';
import { BrokerError } from '../../lib/errors';
import { killSwitchExpiry, recordGrantKill, wakeKillSwitch } from '../kill-switch';
import { commonErrors, errorBody } from '../schemas';

/**
 * The kill switch per agent (docs/kill-switch.md): the account holder revokes an agent wallet.
 * Every grant of the account naming it is revoked, the agent's revocation epoch for each main
 * wallet it minted for is raised, and deny entries end the credentials it already holds. Only
 * the account that granted the agent can do this; any other caller gets the answer a missing
 * agent gets (404) and nothing changes.
 */
const agentParam = z
  .string()
  .regex(/^0x[0-9a-fA-F]{40}$/, 'wallet must be a 0x-prefixed 20-byte hex address')
  .transform((a) => a.toLowerCase());

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
      const agent = request.params.wallet;
      const at = new Date(now());
      const until = killSwitchExpiry(config, at);
      const result = await withTransaction(db, async (tx) => {
        const grants = await lockGrantsOfAccountForAgent(tx, auth.omniAccount, agent);
        if (grants.length === 0) return undefined;
        const revoked: string[] = [];
        for (const g of grants) {
          const status = grantStatus(g, at.getTime());
          if (status !== 'pending' && status !== 'active') continue;
          const r = await revokeGrant(tx, g.grant_id, auth.omniAccount, at);
          if (!r?.changed) continue;
          revoked.push(g.grant_id);
          await appendAudit(tx, {
            event: 'grant.revoke',
            outcome: 'ok',
            omniAccount: auth.omniAccount,
            requestId: request.id,
            idemKey: `grant.revoke:${g.grant_id}`,
            details: { grant_id: g.grant_id, main_address: g.main_address, agent_address: agent, via: auth.kind, by: 'agent.revoke' },
          });
          await recordGrantKill(tx, config, r.grant, at, request.id);
        }
        const ended: { user_wallet: string; epoch: number }[] = [];
        for (const wallet of [...new Set(grants.map((g) => g.main_address))]) {
          const epoch = await bumpAgentEpoch(tx, wallet, agent, at);
          ended.push({ user_wallet: wallet, epoch });
          await insertKillSwitchEntry(tx, {
            kind: 'agent',
            mainAccount: auth.omniAccount,
            userWallet: wallet,
            agentAddress: agent,
            epoch,
            revokedAt: at,
            expiresAt: until,
          });
        }
        await appendAudit(tx, {
          event: 'agent.revoke',
          outcome: 'ok',
          omniAccount: auth.omniAccount,
          requestId: request.id,
          idemKey: `agent.revoke:${agent}:${ended.map((e) => `${e.user_wallet}:${e.epoch}`).join(',')}`,
          details: {
            agent_address: agent,
            revoked_grants: revoked,
            ended_epochs: ended,
            until: Math.floor(until.getTime() / 1000),
            mode: config.BROKER_KILL_SWITCH,
            via: auth.kind,
          },
        });
        return { revoked, ended };
      });
      // Another account's agent answers exactly like an agent this account never granted.
      if (!result) throw new BrokerError('not_found', 'this account has never granted that agent wallet');
      await wakeKillSwitch(app.deps, request.log);
      request.log.info({ flow: 'kill_switch', agent }, 'agent revoked');
      return {
        agent_address: agent,
        revoked_grants: result.revoked,
        ended_epochs: result.ended,
        kill_switch: { mode: config.BROKER_KILL_SWITCH, until: Math.floor(until.getTime() / 1000) },
      };
    },
  );
}
