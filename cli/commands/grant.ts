/**
 * `agentkeys grant …`: the main account offers (add), lists and revokes grants; the agent wallet
 * lists the grants that name it (list --agent), accepts one with its own signature, declines or
 * leaves it.
 */
import { readFile } from 'node:fs/promises';
import { Command } from 'commander';
import type { ApprovalPolicy } from '../../lib/approvals';
import { isAddressSpelling } from '../../lib/evm-address';
import { EVM_ADDRESS_RE } from '../../lib/wallet-message';
import { buildGrantAcceptanceMessage } from '../../lib/grant-acceptance';
import type { GrantScope } from '../../lib/grant-scope';
import type { GrantBody } from '../../lib/wire';
import { brokerHostOf } from '../broker-client';
import { CliError, UsageError } from '../errors';
import { askConfirm } from '../prompt';
import { shown, shownLines } from '../terminal-text';
import { CliContext } from '../context';
import { loadCliWallet, withWalletKeyOptions, type WalletKeyOptions } from '../wallet-key';

/**
 * A wallet address typed on the command line, checked as the broker checks it (lib/evm-address.ts)
 * before any request: `notAddress` says what a malformed one is; a broken EIP-55 checksum is a typo.
 */
export function addressArgument(value: string, notAddress: string): void {
  if (!EVM_ADDRESS_RE.test(value)) throw new UsageError(`"${value}" ${notAddress}`);
  if (!isAddressSpelling(value)) throw new UsageError(`"${value}" has mixed case but not a valid EIP-55 checksum: a typo? (all lower case is fine)`);
}

type AgentGrantBody = GrantBody & { main_address?: string; acceptance_message?: string };

/**
 * The acceptance text the agent wallet signs, built here from the grant as listed, never taken from
 * the broker: a hostile broker (or a plain-http path to one) could otherwise have the agent's key
 * sign any text (a login message for another site, say). The broker's own text must be this one,
 * whose Broker line names the host this CLI talks to, or nothing is signed.
 */
function acceptanceText(g: AgentGrantBody, host: string): string {
  let text: string;
  try {
    text = buildGrantAcceptanceMessage({
      broker: host,
      grantId: g.grant_id,
      mainAddress: String(g.main_address),
      agentAddress: g.agent_address,
      scope: g.scope as GrantScope,
      expiresAt: g.expires_at as number,
    });
  } catch {
    text = '';
  }
  if (text === '' || text !== g.acceptance_message)
    throw new CliError(
      `the broker asks the agent wallet to sign other text than the acceptance of grant ${shown(g.grant_id)} at ${host}; nothing signed. ` +
        `If this CLI reaches the broker under another name than its public URL's (a tunnel, an internal address), pass that host as --broker-host (the text names ${shown(brokerLineOf(g.acceptance_message))})`,
    );
  return text;
}

/** The host an acceptance text's Broker line names ("?" when it has none). */
const brokerLineOf = (text: string | undefined): string => /^Broker: (.*)$/m.exec(text ?? '')?.[1] ?? '?';

/** A grant as the broker shows it, with its approval policy when its mints wait for the holder (docs/approvals.md). */
type ListedGrant = GrantBody & { active?: boolean; approval?: ApprovalPolicy };

/** The policy in the words of `grant add`'s flags: `approval beyond (max-duration-seconds 900, targets aws,oidc, timeout-seconds 300)`. */
function approvalText(p: ApprovalPolicy): string {
  const parts = [
    p.max_duration_seconds !== undefined ? `max-duration-seconds ${p.max_duration_seconds}` : '',
    p.targets !== undefined ? `targets ${p.targets.length ? p.targets.join(',') : '(none)'}` : '',
    `timeout-seconds ${p.timeout_seconds}`,
    p.notify_email !== undefined ? `notify-email ${p.notify_email}${p.notify_email_proven_at === undefined ? ' (unproven: not mailed)' : ''}` : '',
  ].filter(Boolean);
  return shown(`approval ${p.mode} (${parts.join(', ')})`);
}

function grantLine(g: ListedGrant): string {
  const state = g.status ?? (g.revoked_at ? 'revoked' : g.active === false ? 'inactive' : 'active');
  const exp = g.expires_at ? new Date(g.expires_at * 1000).toISOString() : 'never';
  const line = `${g.grant_id}  ${state.padEnd(8)} agent ${g.agent_address}  services ${(g.scope.services ?? ['*']).join(',')}  expires ${exp}`;
  return g.approval ? `${line}  ${approvalText(g.approval)}` : line;
}

interface ApprovalOptions {
  approval?: string;
  approvalMaxDurationSeconds?: string;
  approvalTargets?: string;
  approvalTimeoutSeconds?: string;
  approvalNotifyEmail?: string;
  approvalNotifyEmailProofFile?: string;
}

/** A comma-separated flag value as its entries, trimmed, empty ones dropped. */
const commaList = (text: string): string[] =>
  text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

/** A whole number of seconds, as typed; its bounds are the broker's to say. */
function seconds(flag: string, v: string): number {
  if (!/^\d+$/.test(v.trim())) throw new UsageError(`${flag} takes whole seconds, not "${shown(v)}"`);
  return Number(v);
}

/**
 * The `approval` object of POST /v1/grants, one flag per field; only the syntax is checked here
 * (whole seconds, a list, a readable file): the broker's refusal names the flag (CLI_WORDS).
 */
async function approvalPolicyOf(o: ApprovalOptions): Promise<Record<string, unknown> | undefined> {
  const given = (
    [
      ['--approval-max-duration-seconds', o.approvalMaxDurationSeconds],
      ['--approval-targets', o.approvalTargets],
      ['--approval-timeout-seconds', o.approvalTimeoutSeconds],
      ['--approval-notify-email', o.approvalNotifyEmail],
      ['--approval-notify-email-proof-file', o.approvalNotifyEmailProofFile],
    ] as const
  ).filter(([, v]) => v !== undefined);
  if (o.approval === undefined) {
    if (given.length) throw new UsageError(`${given[0]?.[0]} goes with --approval <mode> (always or beyond)`);
    return undefined;
  }
  const policy: Record<string, unknown> = { mode: o.approval };
  if (o.approvalMaxDurationSeconds !== undefined) policy.max_duration_seconds = seconds('--approval-max-duration-seconds', o.approvalMaxDurationSeconds);
  if (o.approvalTargets !== undefined) policy.targets = commaList(o.approvalTargets);
  if (o.approvalTimeoutSeconds !== undefined) policy.timeout_seconds = seconds('--approval-timeout-seconds', o.approvalTimeoutSeconds);
  if (o.approvalNotifyEmail !== undefined) policy.notify_email = o.approvalNotifyEmail;
  if (o.approvalNotifyEmailProofFile !== undefined) {
    const path = o.approvalNotifyEmailProofFile;
    let token: string;
    try {
      token = (await readFile(path, 'utf8')).trim();
    } catch (e) {
      throw new CliError(`cannot read the --approval-notify-email-proof-file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    if (!token)
      throw new CliError(
        `--approval-notify-email-proof-file ${path} is empty: it holds the access token of a session of the --approval-notify-email address (agentkeys token --profile <that login's profile>)`,
      );
    policy.notify_email_proof = token;
  }
  return policy;
}

export function grantCommand(): Command {
  const grant = new Command('grant').description('grants: which agent wallets may mint for this account');
  grant
    .command('add')
    .description('grant an agent wallet (the agent accepts with its own signature before it can mint)')
    .argument('<agent-address>', 'the agent wallet address (0x…)')
    .option('--services <list>', 'comma-separated services the agent may use (e.g. s3)')
    .option('--expires-in <seconds>', 'how long the grant lasts')
    .option('--approval <mode>', "the agent's mints wait for your approval: always, or beyond the standing limit the flags below set (docs/approvals.md)")
    .option(
      '--approval-max-duration-seconds <seconds>',
      'with --approval beyond: a mint asking a longer duration waits (as does a target without a duration not in --approval-targets)',
    )
    .option('--approval-targets <list>', 'with --approval beyond: comma-separated mint targets (aws, oidc, gcp) that mint at once; any other waits')
    .option('--approval-timeout-seconds <seconds>', "how long you have to decide (the broker's default: 300)")
    .option('--approval-notify-email <address>', "where you are told of a request (default: this account's own verified address)")
    .option(
      '--approval-notify-email-proof-file <file>',
      'a file holding the access token of a session of --approval-notify-email (agentkeys token --profile <its profile>), unless that is your own verified address',
    )
    .action(async (agent: string, o: { services?: string; expiresIn?: string } & ApprovalOptions, cmd: Command) => {
      addressArgument(agent, 'is not a 0x address');
      const body: Record<string, unknown> = { agent_address: agent };
      if (o.services) body.scope = { services: commaList(o.services) };
      if (o.expiresIn !== undefined) {
        const n = Number(o.expiresIn);
        if (!Number.isInteger(n) || n < 1) throw new UsageError('--expires-in takes whole seconds');
        body.expires_in = n;
      }
      const approval = await approvalPolicyOf(o);
      if (approval) body.approval = approval;
      const ctx = await CliContext.open(cmd);
      const broker = await ctx.authedBroker();
      const g = (await broker.call<ListedGrant>('POST', '/v1/grants', { auth: true, body })).body;
      ctx.print(g, grantLine(g));
    });
  grant
    .command('list')
    .description("this account's grants, newest first (--agent: the grants naming this wallet as agent)")
    .option('--agent', 'list the grants that name the wallet this profile signed in with as their agent')
    .action(async (o: { agent?: boolean }, cmd: Command) => {
      const ctx = await CliContext.open(cmd);
      const broker = await ctx.authedBroker();
      const r = (await broker.call<{ grants: ListedGrant[] }>('GET', o.agent ? '/v1/grants?role=agent' : '/v1/grants', { auth: true })).body;
      ctx.print(r, r.grants.length ? r.grants.map(grantLine) : 'no grants');
    });
  withWalletKeyOptions(
    grant
      .command('accept')
      .description('as the agent: accept a pending grant by signing its acceptance text with the agent wallet')
      .argument('<grant-id>', 'the grant id (grt_…)'),
  )
    .option('--yes', 'sign without asking (for scripts; the text is still printed on stderr)')
    .option('--broker-host <host>', "the host of the broker's public URL, when this CLI reaches it under another name (a tunnel, an internal address)")
    .action(async (id: string, o: WalletKeyOptions & { yes?: boolean; brokerHost?: string }, cmd: Command) => {
      const ctx = await CliContext.open(cmd);
      const account = await loadCliWallet(ctx, o);
      const broker = await ctx.authedBroker();
      const listed = (await broker.call<{ grants: AgentGrantBody[] }>('GET', '/v1/grants?role=agent', { auth: true })).body.grants;
      const g = listed.find((x) => x.grant_id === id);
      if (!g) throw new UsageError(`no grant ${id} names the wallet this profile signed in with; log in as the agent wallet first (agentkeys init wallet)`);
      if (g.status !== 'pending' || !g.acceptance_message)
        throw new UsageError(`grant ${id} is ${g.status ?? 'not pending'}; only a pending grant can be accepted`);
      if (account.address.toLowerCase() !== g.agent_address.toLowerCase()) {
        throw new UsageError(`the key given is ${account.address}, but grant ${id} names ${g.agent_address} as its agent`);
      }
      const text = acceptanceText(g, brokerHostOf(o.brokerHost, broker.baseUrl));
      // Shown before signing: what the agent agrees to is the text itself.
      process.stderr.write(`Signing with ${account.address}:\n${shownLines(text)}\n`);
      if (!o.yes) {
        const yes = await askConfirm(`Sign and accept grant ${id}?`, 'pass --yes to sign without asking');
        if (!yes) throw new CliError('not signed; the grant stays pending');
      }
      const signature = await account.signMessage({ message: text });
      const accepted = (await broker.call<GrantBody>('POST', `/v1/grants/${encodeURIComponent(id)}/accept`, { body: { signature } })).body;
      ctx.print(accepted, `Accepted: ${grantLine(accepted)}`);
    });
  grant
    .command('decline')
    .description('as the agent: decline a pending grant that names this wallet')
    .argument('<grant-id>', 'the grant id (grt_…)')
    .action(async (id: string, _o: object, cmd: Command) => {
      const ctx = await CliContext.open(cmd);
      const broker = await ctx.authedBroker();
      const g = (await broker.call<GrantBody>('POST', `/v1/grants/${encodeURIComponent(id)}/decline`, { auth: true })).body;
      ctx.print(g, `Declined: ${grantLine(g)}`);
    });
  grant
    .command('leave')
    .description('as the agent: leave an accepted grant (this wallet then mints for itself again)')
    .argument('<grant-id>', 'the grant id (grt_…)')
    .action(async (id: string, _o: object, cmd: Command) => {
      const ctx = await CliContext.open(cmd);
      const broker = await ctx.authedBroker();
      await broker.call('DELETE', `/v1/grants/${encodeURIComponent(id)}`, { auth: true });
      ctx.print({ grant_id: id, left: true }, `Left ${id}.`);
    });
  grant
    .command('revoke')
    .description('revoke a grant')
    .argument('<grant-id>', 'the grant id (grt_…)')
    .action(async (id: string, _o: object, cmd: Command) => {
      const ctx = await CliContext.open(cmd);
      const broker = await ctx.authedBroker();
      await broker.call('DELETE', `/v1/grants/${encodeURIComponent(id)}`, { auth: true });
      ctx.print({ grant_id: id, revoked: true }, `Revoked ${id}.`);
    });
  return grant;
}

export function auditCommand(): Command {
  return new Command('audit')
    .description("this account's audit rows, newest first (--grants: the mints your agents made under your grants)")
    .option('--limit <n>', 'how many rows (1–200)', '20')
    .option('--grants', "the mint rows your agents wrote under this account's grants, each with the agent's wallet")
    .action(async (o: { limit: string; grants?: boolean }, cmd: Command) => {
      const n = Number(o.limit);
      if (!Number.isInteger(n) || n < 1 || n > 200) throw new UsageError('--limit takes a whole number from 1 to 200');
      const ctx = await CliContext.open(cmd);
      const broker = await ctx.authedBroker();
      const r = (
        await broker.call<{
          entries: {
            seq: string | number;
            at?: string;
            created_at?: string;
            event: string;
            outcome: string;
            details?: { child_wallet?: unknown; grant_id?: unknown };
          }[];
          next_before: string | null;
        }>('GET', `/v1/audit?limit=${n}${o.grants ? '&of=grants' : ''}`, { auth: true })
      ).body;
      const text = (label: string, v: unknown) => (typeof v === 'string' ? `  ${label} ${v}` : '');
      // A refused mint's row names the grant it asked under, not always the agent.
      const under = (e: (typeof r.entries)[number]) => (o.grants ? `${text('agent', e.details?.child_wallet)}${text('grant', e.details?.grant_id)}` : '');
      ctx.print(
        r,
        r.entries.length
          ? r.entries.map((e) => `${String(e.seq).padStart(6)}  ${e.at ?? e.created_at ?? ''}  ${e.event}  ${e.outcome}${under(e)}`)
          : o.grants
            ? 'no mints under your grants'
            : 'no audit rows',
      );
    });
}
