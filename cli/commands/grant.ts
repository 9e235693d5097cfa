/** `agentkeys grant add|list|revoke`: bind agent wallets to this (main) account. */
import { Command } from 'commander';
import { EVM_ADDRESS_RE } from '../../lib/wallet-message';
import type { GrantBody } from '../../lib/wire';
import { UsageError } from '../errors';
import { CliContext } from '../context';

function grantLine(g: GrantBody & { active?: boolean }): string {
  const state = g.status ?? (g.revoked_at ? 'revoked' : g.active === false ? 'inactive' : 'active');
  const exp = g.expires_at ? new Date(g.expires_at * 1000).toISOString() : 'never';
  return `${g.grant_id}  ${state.padEnd(8)} agent ${g.agent_address}  services ${(g.scope.services ?? ['*']).join(',')}  expires ${exp}`;
}

export function grantCommand(): Command {
  const grant = new Command('grant').description('grants: which agent wallets may mint for this account');
  grant
    .command('add')
    .description('grant an agent wallet (the agent accepts with its own signature before it can mint)')
    .argument('<agent-address>', 'the agent wallet address (0x…)')
    .option('--services <list>', 'comma-separated services the agent may use (e.g. s3)')
    .option('--expires-in <seconds>', 'how long the grant lasts')
    .action(async (agent: string, o: { services?: string; expiresIn?: string }, cmd: Command) => {
      if (!EVM_ADDRESS_RE.test(agent)) throw new UsageError(`"${agent}" is not a 0x address`);
      const body: Record<string, unknown> = { agent_address: agent };
      if (o.services) body.scope = { services: o.services.split(',').map((s) => s.trim()).filter(Boolean) };
      if (o.expiresIn !== undefined) {
        const n = Number(o.expiresIn);
        if (!Number.isInteger(n) || n < 1) throw new UsageError('--expires-in takes whole seconds');
        body.expires_in = n;
      }
      const ctx = CliContext.from(cmd);
      const { broker } = await ctx.authedBroker();
      const g = (await broker.call<GrantBody>('POST', '/v1/grants', { auth: true, body })).body;
      ctx.print(g, grantLine(g));
    });
  grant
    .command('list')
    .description("this account's grants, newest first")
    .action(async (_o: object, cmd: Command) => {
      const ctx = CliContext.from(cmd);
      const { broker } = await ctx.authedBroker();
      const r = (await broker.call<{ grants: GrantBody[] }>('GET', '/v1/grants', { auth: true })).body;
      ctx.print(r, r.grants.length ? r.grants.map(grantLine) : 'no grants');
    });
  grant
    .command('revoke')
    .description('revoke a grant')
    .argument('<grant-id>', 'the grant id (grt_…)')
    .action(async (id: string, _o: object, cmd: Command) => {
      const ctx = CliContext.from(cmd);
      const { broker } = await ctx.authedBroker();
      await broker.call('DELETE', `/v1/grants/${encodeURIComponent(id)}`, { auth: true });
      ctx.print({ grant_id: id, revoked: true }, `Revoked ${id}.`);
    });
  return grant;
}

export function auditCommand(): Command {
  return new Command('audit')
    .description("this account's audit rows, newest first")
    .option('--limit <n>', 'how many rows (1–200)', '20')
    .action(async (o: { limit: string }, cmd: Command) => {
      const n = Number(o.limit);
      if (!Number.isInteger(n) || n < 1 || n > 200) throw new UsageError('--limit takes a whole number from 1 to 200');
      const ctx = CliContext.from(cmd);
      const { broker } = await ctx.authedBroker();
      const r = (await broker.call<{ entries: { seq: string | number; at?: string; created_at?: string; event: string; outcome: string }[]; next_before: string | null }>('GET', `/v1/audit?limit=${n}`, { auth: true })).body;
      ctx.print(r, r.entries.length ? r.entries.map((e) => `${String(e.seq).padStart(6)}  ${e.at ?? e.created_at ?? ''}  ${e.event}  ${e.outcome}`) : 'no audit rows');
    });
}
