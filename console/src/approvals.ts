import type { ApprovalRequestFields } from '../../lib/approvals';
import { ApiError, asksForRecentSignIn, call } from './api';
import { actionButton, h, message, when } from './dom';
import { connectWallet, injectedWallet, signTypedData, withDomainType, type TypedData } from './wallet';

/**
 * /console/approvals: the mints of this account's agents that wait for its decision
 * (GET /v1/approvals?role=owner). A wallet-login session decides with its wallet: the EIP-712
 * typed data the broker returns for that decision, shown first, then signed with
 * eth_signTypedData_v4. Any other session decides without a signature, which the broker accepts
 * only when its sign-in is recent; when it is not, the page says so and offers to sign in again.
 */

type Decision = 'approve' | 'deny';

/** A listed request as the page reads it: the fields its hash covers (GET /v1/approvals also answers status, request_hash…) and, while pending, what to sign. */
type Approval = ApprovalRequestFields & { sign?: Record<Decision, TypedData> };

interface SessionList {
  sessions: { method: string; current: boolean }[];
}

export interface ApprovalsHost {
  /** Renders the current page again. */
  render(): Promise<void>;
  /** Ends this session and shows the sign-in page, coming back to `next` once signed in. */
  signInAgain(next: string): void;
}

/** Login methods whose sessions carry a wallet: the broker wants that wallet's signature. */
const WALLET_METHODS = new Set(['wallet', 'siwe']);

function duration(seconds: number): string {
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 360) / 10} h`;
}

function paramsText(params: Record<string, string | number>): string {
  const parts = Object.entries(params).map(([k, v]) => (k === 'duration_seconds' && typeof v === 'number' ? `duration ${duration(v)}` : `${k} ${v}`));
  return parts.join(', ') || 'the defaults';
}

function scopeText(scope: Record<string, unknown>): string {
  const list = (v: unknown): string[] => (Array.isArray(v) ? v.map(String) : []);
  const parts = [...list(scope.services).map((s) => `service ${s}`), ...list(scope.roles).map((r) => `role ${r}`)];
  const rest = Object.entries(scope).filter(([k]) => k !== 'services' && k !== 'roles');
  for (const [k, v] of rest) parts.push(`${k} ${JSON.stringify(v)}`);
  return parts.join(', ') || 'any service';
}

/**
 * "in 4 min 12 s" (the seconds rounded up), or "expired" once expires_at has passed — never before
 * (by this device's clock; the broker's decides).
 */
export function expiresIn(expiresAt: number, nowMs = Date.now()): string {
  const leftMs = expiresAt * 1000 - nowMs;
  if (leftMs <= 0) return 'expired';
  const left = Math.ceil(leftMs / 1000);
  const m = Math.floor(left / 60);
  return m > 0 ? `in ${m} min ${left % 60} s` : `in ${left} s`;
}

/** What a refused decision means for the person, and what to do. */
function refusal(e: unknown, host: ApprovalsHost): HTMLElement[] {
  if (!(e instanceof ApiError)) {
    const code = (e as { code?: unknown } | null)?.code;
    if (code === 4001) return [message('error', 'The wallet declined to sign: nothing was decided.')];
    throw e;
  }
  if (asksForRecentSignIn(e)) {
    const again = h('button', { type: 'button' }, 'Sign in again');
    again.addEventListener('click', () => host.signInAgain('/console/approvals'));
    return [
      message('error', 'Your sign-in is more than 5 minutes old. To decide without a wallet signature, sign in again, then decide: nothing was decided.'),
      again,
    ];
  }
  if (e.status === 410) return [message('error', 'This request has expired: nothing was decided. The agent has to ask again.')];
  if (e.status === 404) return [message('error', 'This request is no longer on this account (reload the page).')];
  if (e.status === 409) return [message('error', `Not decided: ${e.message}`)];
  return [message('error', e.message)];
}

function approvalItem(a: Approval, withWallet: boolean, host: ApprovalsHost, tick: (f: () => void) => void): HTMLElement {
  const out = h('div', { class: 'decision' });
  const status = h('span', { class: 'tag' }, 'waiting');
  const left = h('dd', { 'data-expires': '' }, expiresIn(a.expires_at));
  tick(() => {
    left.textContent = expiresIn(a.expires_at);
  });
  const buttons = h('div', { class: 'row' });

  const done = (decision: Decision) => {
    status.textContent = decision === 'approve' ? 'approved' : 'denied';
    status.className = decision === 'approve' ? 'tag ok' : 'tag bad';
    buttons.replaceChildren();
    out.replaceChildren(
      message('ok', decision === 'approve' ? 'Approved: the agent gets its credential on its next poll.' : 'Denied: the agent gets nothing.'),
    );
  };

  const send = async (decision: Decision, signature?: string) => {
    try {
      await call('POST', `/v1/approvals/${a.approval_id}/decision`, { decision, ...(signature ? { signature } : {}) });
    } catch (e) {
      out.replaceChildren(...refusal(e, host));
      return;
    }
    done(decision);
  };

  /** A wallet session: show the typed data, then ask the wallet for its signature. */
  const review = (decision: Decision) => {
    const data = a.sign?.[decision];
    if (!data) {
      out.replaceChildren(message('error', 'The broker sent nothing to sign for this request: reload the page.'));
      return;
    }
    const typed = withDomainType(data);
    const sign = actionButton(
      decision === 'approve' ? 'Sign and approve' : 'Sign and deny',
      out,
      async () => {
        const address = await connectWallet();
        if (address.toLowerCase() !== a.main_address.toLowerCase())
          throw new Error(
            `the wallet's account is ${address}, not the grant's main wallet ${a.main_address}: switch accounts in the wallet; nothing was signed`,
          );
        let signature: string;
        try {
          signature = await signTypedData(data, address);
        } catch (e) {
          out.replaceChildren(...refusal(e, host));
          return;
        }
        await send(decision, signature);
      },
      decision === 'approve' ? '' : 'danger',
    );
    const cancel = h('button', { type: 'button', class: 'secondary' }, 'Cancel');
    cancel.addEventListener('click', () => out.replaceChildren());
    out.replaceChildren(
      h('p', {}, `Your wallet will be asked to sign this (EIP-712, eth_signTypedData_v4) to ${decision} the request:`),
      h('pre', { class: 'signed mono' }, JSON.stringify({ domain: typed.domain, primaryType: typed.primaryType, message: typed.message }, null, 2)),
      h('div', { class: 'row' }, sign, cancel),
    );
  };

  const button = (decision: Decision) =>
    withWallet
      ? (() => {
          const b = h('button', { type: 'button', ...(decision === 'deny' ? { class: 'danger' } : {}) }, decision === 'approve' ? 'Approve' : 'Deny');
          b.addEventListener('click', () => review(decision));
          return b;
        })()
      : actionButton(decision === 'approve' ? 'Approve' : 'Deny', out, () => send(decision), decision === 'deny' ? 'danger' : '');
  buttons.append(button('approve'), button('deny'));
  if (withWallet && !injectedWallet()) {
    for (const b of Array.from(buttons.querySelectorAll('button'))) b.disabled = true;
    out.replaceChildren(
      message('error', 'This account decides with its wallet, and no wallet was found in this browser: open the console where your wallet is.'),
    );
  }

  return h(
    'li',
    { 'data-approval': a.approval_id },
    h('div', { class: 'row' }, status, h('strong', {}, `mint ${a.target}`)),
    h(
      'dl',
      {},
      h('dt', {}, 'Agent'),
      h('dd', { class: 'mono' }, a.agent_address),
      h('dt', {}, 'Asks for'),
      h('dd', {}, `${a.target}: ${paramsText(a.params)}`),
      h('dt', {}, 'Grant scope'),
      h('dd', {}, scopeText(a.scope)),
      h('dt', {}, 'Reason'),
      h('dd', {}, a.reason ?? '(none given)'),
      h('dt', {}, 'Asked'),
      h('dd', {}, when(a.requested_at)),
      h('dt', {}, 'Expires'),
      left,
    ),
    buttons,
    out,
  );
}

export async function approvalsPage(host: ApprovalsHost): Promise<HTMLElement[]> {
  const [list, sessions] = await Promise.all([
    call<{ approvals: Approval[] }>('GET', '/v1/approvals?role=owner'),
    call<SessionList>('GET', '/v1/account/sessions'),
  ]);
  const method = sessions.sessions.find((s) => s.current)?.method ?? '';
  const withWallet = WALLET_METHODS.has(method);
  const ticks: (() => void)[] = [];
  const refresh = h('button', { type: 'button', class: 'secondary' }, 'Refresh');
  refresh.addEventListener('click', () => void host.render());
  const items = list.approvals.map((a) => approvalItem(a, withWallet, host, (f) => ticks.push(f)));
  const ul = h('ul', { class: 'list', id: 'approvals' }, ...items);
  if (ticks.length) {
    const timer = setInterval(() => {
      if (!ul.isConnected) return clearInterval(timer);
      for (const f of ticks) f();
    }, 1000);
  }
  return [
    h('h1', {}, 'Approvals'),
    h(
      'p',
      { class: 'muted' },
      withWallet
        ? 'Mints your agents asked for that wait for your decision. You decide with your wallet: it signs the request you see.'
        : 'Mints your agents asked for that wait for your decision. Without a wallet, a decision needs a sign-in at most 5 minutes old.',
    ),
    h(
      'section',
      { class: 'card' },
      items.length
        ? ul
        : h(
            'p',
            { class: 'muted', id: 'approvals-empty' },
            'No request is waiting for your decision. When a mint of one of your agents needs your approval, it shows here.',
          ),
      refresh,
    ),
  ];
}
