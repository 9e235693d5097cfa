/**
 * `agentkeys agent revoke <wallet>`: the kill switch per agent (docs/kill-switch.md). The main
 * account revokes an agent wallet it granted: every grant naming it, and the credentials it
 * already holds, as far as the broker's kill switch mode reaches.
 */
import { Command } from 'commander';
import type { AgentRevokedBody } from '../../lib/wire';
import { CliContext } from '../context';
import { addressArgument } from './grant';

const counted = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** What a revocation changed, and what it means for the credentials the agent already holds. */
export function revokedLine(r: AgentRevokedBody): string {
  const agent = r.agent_address;
  // The broker ends an epoch only when a grant to the agent was accepted during it, so a repeat
  // (or an agent that never accepted) revokes nothing and ends nothing.
  if (r.revoked_grants.length === 0 && r.ended_epochs.length === 0)
    return `Nothing changed: agent ${agent} has no pending or active grant from this account, and no credential of it is left to end (it was revoked before, or never accepted a grant).`;
  const grants = r.revoked_grants.length
    ? `${counted(r.revoked_grants.length, 'grant')} revoked (${r.revoked_grants.join(', ')})`
    : 'no grant was left to revoke';
  const head = `Revoked agent ${agent}: ${grants}`;
  // Revoking an accepted grant that is still live always ends the agent's epoch, so grants revoked with none ended were all pending.
  if (r.ended_epochs.length === 0) return `${head}; none had been accepted, so it holds no credentials for this account to end.`;
  const held = r.ended_epochs.map((e) => `${e.user_wallet} (epoch ${e.epoch})`).join(', ');
  const until = new Date(r.kill_switch.until * 1000).toISOString();
  const mode: string = r.kill_switch.mode;
  switch (r.kill_switch.mode) {
    case 'iam':
      return `${head}; its credentials for ${held} are denied until ${until} (kill switch: iam).`;
    case 'file':
      return `${head}; its credentials for ${held} are denied once the broker's operator applies the kill switch policy file (the deny lasts until ${until}; kill switch: file).`;
    case 'off':
      return `${head}; credentials it already holds for ${held} stay valid until they expire: the broker records the revocation but applies no deny (kill switch: off).`;
    default:
      // A mode this CLI does not know: say only what the answer says, not whether anything is denied.
      return `${head}; the deny entries for its credentials for ${held} last until ${until} (kill switch: ${mode}).`;
  }
}

export function agentCommand(): Command {
  const agent = new Command('agent').description('agent wallets this account granted: revoke one with the credentials it holds');
  agent
    .command('revoke')
    .description('revoke an agent wallet: every grant of this account naming it, and the credentials it already holds (the kill switch)')
    .argument('<wallet>', 'the agent wallet address (0x…)')
    .action(async (wallet: string, _o: object, cmd: Command) => {
      // Checked here, before the session is read: a mistyped address costs no request and is not
      // answered as an agent this account never granted.
      addressArgument(wallet, 'is not a wallet address: 0x and 40 hex digits');
      const ctx = await CliContext.open(cmd);
      const broker = await ctx.authedBroker();
      const r = (await broker.call<AgentRevokedBody>('POST', `/v1/agents/${encodeURIComponent(wallet)}/revoke`, { auth: true })).body;
      ctx.print(r, revokedLine(r));
    });
  return agent;
}
