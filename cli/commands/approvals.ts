/**
 * `agentkeys approvals`, `agentkeys approve <id>`, `agentkeys deny <id>` (the holder of a grant that
 * asks for approval, docs/approvals.md) and the agent's wait for a decision (`mint … --wait`).
 */
import { Command } from 'commander';
import type { TypedDataDefinition } from 'viem';
import { approvalRequestHash, approvalTypedData, type ApprovalDecision } from '../../lib/approvals';
import { canonicalJson } from '../../lib/canonical-json';
import { ApprovalPendingError, BrokerAnswerError, CliError } from '../errors';
import { askConfirm } from '../prompt';
import { shown, shownJson } from '../terminal-text';
import type { BrokerClient } from '../broker-client';
import { CliContext } from '../context';
import { brokerHostOf } from '../broker-client';
import { loadCliWallet, walletSourceCount, withWalletKeyOptions, type WalletKeyOptions } from '../wallet-key';

interface ApprovalBody {
  approval_id: string;
  status: string;
  grant_id: string;
  main_address: string;
  agent_address: string;
  target: string;
  params: Record<string, string | number>;
  scope: { services?: string[]; roles?: string[] } & Record<string, unknown>;
  reason: string | null;
  request_hash: string;
  requested_at: number;
  expires_at: number;
  sign?: { approve: TypedDataDefinition; deny: TypedDataDefinition };
}

interface PendingBody {
  approval_id: string;
  status: 'pending' | 'slow_down';
  expires_at: number;
  interval: number;
}

const iso = (unix: number): string => new Date(unix * 1000).toISOString();

/** The longest pace a broker may set: past 2^31 ms a timer fires at once, and a broker saying so would make the wait spin. */
const MAX_POLL_INTERVAL_SECONDS = 300;

/**
 * A broker's 202 as the CLI relies on it: an id to poll, a finite expiry and a finite pace. Anything
 * else (a hostile or broken broker) would loop without pause, never end, or crash on the date.
 */
function pendingFrom(brokerUrl: string, body: unknown): PendingBody {
  const b = body as Partial<PendingBody> | null;
  if (
    typeof b?.approval_id === 'string' &&
    b.approval_id.length > 0 &&
    Number.isFinite(b.expires_at) &&
    Math.abs(b.expires_at as number) < 1e11 &&
    Number.isFinite(b.interval)
  )
    return {
      approval_id: b.approval_id,
      status: b.status ?? 'pending',
      expires_at: b.expires_at as number,
      interval: Math.min(MAX_POLL_INTERVAL_SECONDS, Math.max(1, b.interval as number)),
    };
  throw new CliError(`the broker at ${brokerUrl} answered a waiting mint without an approval id, expiry and interval the CLI can use`);
}

/** The request as a holder reads it (the caller escapes each line: the reason is the agent's text). */
function approvalLines(a: ApprovalBody): string[] {
  const params = Object.entries(a.params)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  return [
    `${a.approval_id}  ${a.status}`,
    `  agent    ${a.agent_address} (grant ${a.grant_id})`,
    `  asks     ${a.target}${params ? ` ${params}` : ''}  services ${(a.scope.services ?? ['*']).join(',')}${a.scope.roles ? `  roles ${a.scope.roles.join(',')}` : ''}`,
    `  reason   ${a.reason ?? '(none given)'}`,
    `  asked    ${iso(a.requested_at)}, decide before ${iso(a.expires_at)}`,
  ];
}

/**
 * The EIP-712 typed data the holder signs, built here from the request as shown, never taken from
 * the broker: a hostile broker (or a plain-http path to one) could otherwise have any typed data
 * signed with the main wallet's key (a token permit, say). The request's fields must hash to the
 * broker's request_hash, and the broker's own typed data must be this one (its domain names the host
 * this CLI talks to), or nothing is signed.
 */
function typedDataToSign(id: string, view: ApprovalBody, decision: ApprovalDecision, host: string) {
  const fields = {
    approval_id: view.approval_id,
    grant_id: view.grant_id,
    main_address: view.main_address,
    agent_address: view.agent_address,
    target: view.target,
    params: view.params,
    scope: view.scope,
    reason: view.reason,
    requested_at: view.requested_at,
    expires_at: view.expires_at,
  };
  let hash: `0x${string}`;
  try {
    hash = approvalRequestHash(fields);
  } catch {
    throw new CliError(`the broker described approval ${id} in a form this CLI cannot hash; nothing signed`);
  }
  if (view.approval_id !== id || hash !== view.request_hash)
    throw new CliError(`the broker's request_hash for ${id} is not the hash of the request it shows; nothing signed`);
  const typed = approvalTypedData(host, id, hash, decision);
  if (canonicalJson(typed) !== canonicalJson(view.sign?.[decision] ?? null))
    throw new CliError(
      `the broker asks for a signature over other typed data than approval ${id} at ${host} (${decision}); nothing signed. ` +
        "If this CLI reaches the broker under another name than its public URL's (a tunnel, an internal address), pass that host as --broker-host",
    );
  return typed;
}

type DecideOptions = WalletKeyOptions & { yes?: boolean; brokerHost?: string };

async function decide(id: string, decision: 'approve' | 'deny', o: DecideOptions, cmd: Command): Promise<void> {
  const ctx = await CliContext.open(cmd);
  const broker = await ctx.authedBroker();
  const view = (await broker.call<ApprovalBody>('GET', `/v1/approvals/${encodeURIComponent(id)}`, { auth: true })).body;
  if (view.status !== 'pending' || !view.sign) throw new CliError(`approval ${id} is ${view.status}; only a pending request can be decided`);
  process.stderr.write(`${approvalLines(view).map(shown).join('\n')}\n`);
  let signature: string | undefined;
  if (walletSourceCount(o) > 0) {
    const account = await loadCliWallet(ctx, o);
    if (account.address.toLowerCase() !== String(view.main_address).toLowerCase())
      throw new CliError(`the key given is ${account.address}, but approval ${id} is for the grant of main wallet ${shown(String(view.main_address))}`);
    const typed = typedDataToSign(id, view, decision, brokerHostOf(o.brokerHost, broker.baseUrl));
    // Shown before signing: the EIP-712 typed data is exactly what the signature commits to.
    process.stderr.write(`Signing with ${account.address} (EIP-712):\n${shownJson(typed, 2)}\n`);
    if (!o.yes && !(await askConfirm(`Sign and ${decision} ${id}?`, 'pass --yes to sign without asking'))) throw new CliError('not signed; nothing decided');
    signature = await account.signTypedData(typed);
  } else if (!o.yes && !(await askConfirm(`${decision === 'approve' ? 'Approve' : 'Deny'} ${id} with this session?`, 'pass --yes to decide without asking'))) {
    throw new CliError('nothing decided');
  }
  const r = (
    await broker.call<{ status: string; decided_at: number }>('POST', `/v1/approvals/${encodeURIComponent(id)}/decision`, {
      auth: true,
      body: { decision, ...(signature ? { signature } : {}) },
    })
  ).body;
  ctx.print({ approval_id: id, ...r }, `${r.status === 'approved' ? 'Approved' : 'Denied'} ${id}.`);
}

export function approvalsCommand(): Command {
  return new Command('approvals')
    .description("mint requests waiting for this account's decision (grants that ask for approval)")
    .action(async (_o: object, cmd: Command) => {
      const ctx = await CliContext.open(cmd);
      const broker = await ctx.authedBroker();
      const r = (await broker.call<{ approvals: ApprovalBody[] }>('GET', '/v1/approvals?role=owner', { auth: true })).body;
      ctx.print({ approvals: r.approvals.map(({ sign: _sign, ...a }) => a) }, r.approvals.length ? r.approvals.flatMap(approvalLines) : 'no requests waiting');
    });
}

export function decisionCommands(): Command[] {
  return (['approve', 'deny'] as const).map((decision) =>
    withWalletKeyOptions(
      new Command(decision)
        .description(
          `${decision} an agent's mint request: a wallet key signs the request's EIP-712 typed data (shown first); without one the session decides (its login at most 5 minutes old)`,
        )
        .argument('<approval-id>', 'the request id (apr_…)'),
    )
      .option('--yes', 'decide without asking (for scripts; what is signed is still printed on stderr)')
      .option('--broker-host <host>', "the host of the broker's public URL, when this CLI reaches it under another name (a tunnel, an internal address)")
      .action(async (id: string, o: DecideOptions, cmd: Command) => decide(id, decision, o, cmd)),
  );
}

/** A 429's `retry_after` as a wait in seconds: whole, 1 to 60 (a broker's larger or malformed value is not waited for). */
function retryAfterOf(body: Record<string, unknown>): number {
  const s = body.retry_after;
  return typeof s === 'number' && Number.isFinite(s) ? Math.min(60, Math.max(1, Math.ceil(s))) : 1;
}

/**
 * The agent's side of a mint that answered 202: polls the request at its interval (slower when told
 * slow_down) until the holder decides, with a spinner; answers the credential, or throws the refusal.
 */
export async function waitForApproval<T>(ctx: CliContext, broker: BrokerClient, pending: PendingBody, quiet = false): Promise<T> {
  const text = `Waiting for the holder to approve ${pending.approval_id} (until ${iso(pending.expires_at)}; Ctrl-C stops waiting)`;
  // Where no spinner shows (--json, or no terminal) one line on stderr says what the command waits
  // for (a script's log names the request to approve). Not for an AWS SDK or a Google library, which
  // read the output as their answer.
  if (!quiet && (ctx.json || !process.stderr.isTTY)) process.stderr.write(`${shown(text)}\n`);
  const spin = await ctx.spinner(text);
  try {
    let interval = pending.interval;
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, interval * 1000));
      // The broker ends a request at its expiry (an error); one that still says "pending" a minute
      // after it is not waited for.
      if (Date.now() > (pending.expires_at + 60) * 1000)
        throw new CliError(`the approval request ${pending.approval_id} expired at ${iso(pending.expires_at)} without a decision: run the mint again`);
      let r;
      try {
        r = await broker.call<PendingBody | (T & { status: 'approved' })>('GET', `/v1/approvals/${encodeURIComponent(pending.approval_id)}`, {
          auth: true,
        });
      } catch (e) {
        // Polled too often (this account's poll limit, or the request's own budget): still waiting, slower.
        if (!(e instanceof BrokerAnswerError) || e.kind !== 'rate_limited') throw e;
        interval = Math.max(interval, retryAfterOf(e.body));
        continue;
      }
      if (r.body.status === 'approved') return r.body;
      interval = pendingFrom(broker.baseUrl, r.body).interval;
    }
  } finally {
    spin.stop();
  }
}

/** A mint's answer: the credential, or (202) the wait for approval when `wait` is set, else a clear stop naming the request. */
export async function mintOrWait<T>(
  ctx: CliContext,
  broker: BrokerClient,
  path: string,
  body: Record<string, unknown> | undefined,
  wait: boolean,
  opts: {
    /** Stops the caller's own spinner before this one starts. */
    beforeWait?: () => void;
    /** Nothing on stderr while waiting (credential_process, Google's executable). */
    quiet?: boolean;
  } = {},
): Promise<T> {
  const r = await broker.call<T | PendingBody>('POST', path, { auth: true, body });
  if (r.status !== 202) return r.body as T;
  opts.beforeWait?.();
  const pending = pendingFrom(broker.baseUrl, r.body);
  if (!wait)
    throw new ApprovalPendingError(
      `this mint waits for the grant holder's approval (request ${pending.approval_id}, until ${iso(pending.expires_at)}); run again with --wait to wait for it`,
      pending.approval_id,
      pending.expires_at,
    );
  return waitForApproval<T>(ctx, broker, pending, opts.quiet);
}
