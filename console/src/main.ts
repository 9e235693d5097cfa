import type { AccountSession, AccountSessionsBody, AgentRevokedBody } from '../../lib/wire';
import { ApiError, asksForRecentSignIn, call, forgetSession, keepSession, session, type Session } from './api';
import { ProofError, verifyProofInBrowser, type AuditProof, type Jwk } from './proof';
import { createPasskey, getPasskey, passkeysAvailable } from './passkey';
import { approvalsPage } from './approvals';
import { actionButton, errorText, field, h, message, when } from './dom';
import { checkSiweForThisSite, connectWallet, injectedWallet, personalSign, walletChainId } from './wallet';

/**
 * The console: one page that routes on its path (/console/account, /grants, /approvals, /audit, /device; the
 * sign-in page at /console/). Every node is built with the DOM API (no HTML strings, nothing
 * inline), so what the broker returns is always text.
 */

const main = document.getElementById('main') as HTMLElement;
const nav = document.getElementById('nav') as HTMLElement;
const NEXT_KEY = 'agentkeys.console.next';
const PKCE_KEY = 'agentkeys.console.pkce';

/** Set by a move to another page: once it is shown, focus goes to its heading (a screen reader reads where it is). */
let moved = false;

function go(path: string): void {
  history.pushState(null, '', path);
  moved = true;
  void render();
}

function signedIn(s: Session & { identity?: unknown }): void {
  keepSession(s);
  const next = sessionStorage.getItem(NEXT_KEY);
  sessionStorage.removeItem(NEXT_KEY);
  go(next && next.startsWith('/console/') ? next : '/console/account');
}

// ---- sign in -------------------------------------------------------------------------------

/** The email sign-in's refusals as what to do next (docs/email-login.md, every answer). */
function emailRefusal(e: unknown): Error {
  if (!(e instanceof ApiError)) return e instanceof Error ? e : new Error(String(e));
  const left = e.body.attempts_left;
  if (e.kind === 'invalid_code')
    return new Error(
      typeof left === 'number'
        ? `That code is not correct: ${left} attempt${left === 1 ? '' : 's'} left. Check the latest mail, or send a new code.`
        : 'That code is not correct. Check the latest mail, or send a new code.',
    );
  if (e.kind === 'expired') return new Error('This code has expired or was already used: send a new code.');
  if (e.kind === 'too_many_attempts') return new Error('Too many wrong codes: this code no longer works. Send a new code.');
  if (e.kind === 'rate_limited' && typeof e.body.retry_after === 'number')
    return new Error(`${e.message} (about ${Math.ceil(e.body.retry_after)} s). A code sent earlier still works.`);
  return e;
}

/**
 * A form whose Enter in a field runs `button` (its submit button: the browser clicks it). Nothing
 * is submitted to a URL — the button's action sends with fetch, and the policy's form-action is
 * 'none'.
 */
function enterRuns(button: HTMLButtonElement, ...children: HTMLElement[]): HTMLFormElement {
  button.type = 'submit';
  const form = h('form', { novalidate: '' }, ...children);
  form.addEventListener('submit', (ev) => ev.preventDefault());
  return form;
}

function emailCard(): HTMLElement {
  const out = h('div');
  const email = h('input', { type: 'email', name: 'email', autocomplete: 'email', required: '', placeholder: 'you@example.com' });
  const code = h('input', {
    type: 'text',
    name: 'code',
    inputmode: 'numeric',
    autocomplete: 'one-time-code',
    pattern: '[0-9]{6}',
    maxlength: '6',
    class: 'code',
  });
  let requestId = '';
  /** The address requestId was opened for: asking again for it is a resend on that request (docs/email-login.md, "Resend"). */
  let requestedFor = '';
  const ask = (address: string, resend: string | undefined) =>
    call<{ request_id: string }>('POST', '/v1/session/email_code', { email: address, ...(resend ? { request_id: resend } : {}) }, { auth: false });
  const send = actionButton(
    'Send code',
    out,
    async () => {
      const address = email.value.trim();
      if (!address) throw new Error('Enter your email address first.');
      // Sending again for the same address mails a new code on the open request (its old code stops
      // working) instead of opening another one, which the per-network cooldown would refuse; a
      // request that has closed since (410) is opened anew.
      const resend = requestId && requestedFor === address ? requestId : undefined;
      const r = await ask(address, resend)
        .catch((e: unknown) => {
          if (resend && e instanceof ApiError && e.status === 410) return ask(address, undefined);
          throw e;
        })
        .catch((e: unknown) => {
          throw emailRefusal(e);
        });
      requestId = r.request_id;
      requestedFor = address;
      codeStep.hidden = false;
      out.replaceChildren(message('ok', `A 6-digit code was sent to ${address}.`));
      code.value = '';
      code.focus();
    },
    '',
    'Sending the code…',
  );
  const verify = actionButton(
    'Sign in',
    out,
    async () => {
      const digits = code.value.replace(/\s/g, '');
      if (!/^[0-9]{6}$/.test(digits)) throw new Error('Enter the 6 digits from the mail.');
      const s = await call<Session>('POST', '/v1/session/email_login', { request_id: requestId, code: digits }, { auth: false }).catch((e: unknown) => {
        throw emailRefusal(e);
      });
      signedIn(s);
    },
    '',
    'Signing in…',
  );
  const codeStep = h('div', { hidden: '' }, enterRuns(verify, field('Code from the mail', code), verify));
  return h('section', { class: 'card', id: 'email' }, h('h2', {}, 'Email'), enterRuns(send, field('Email address', email), send), codeStep, out);
}

function base64url(bytes: ArrayBuffer | Uint8Array): string {
  return btoa(String.fromCharCode(...new Uint8Array(bytes)))
    .replace(/\+/g, '-')
    .replace(/\//g, '_')
    .replace(/=+$/, '');
}

function googleCard(): HTMLElement {
  const out = h('div');
  const start = actionButton('Sign in with Google', out, async () => {
    // RFC 7636: a fresh verifier kept in this tab, its S256 challenge sent (docs/google-login.md).
    const verifier = base64url(crypto.getRandomValues(new Uint8Array(32)));
    const challenge = base64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
    sessionStorage.setItem(PKCE_KEY, verifier);
    const q = new URLSearchParams({ return_to: `${location.origin}/console/`, code_challenge: challenge, code_challenge_method: 'S256' });
    location.assign(`/v1/session/google_oauth_login?${q.toString()}`);
  });
  return h('section', { class: 'card', id: 'google' }, h('h2', {}, 'Google'), h('p', { class: 'muted' }, 'Sign in with your Google account.'), start, out);
}

/** Back from Google with ?exchange_code=: trade it, with this tab's verifier, for the session. */
async function finishGoogle(code: string): Promise<void> {
  history.replaceState(null, '', location.pathname);
  const verifier = sessionStorage.getItem(PKCE_KEY);
  sessionStorage.removeItem(PKCE_KEY);
  if (!verifier) throw new Error('this tab did not start a Google sign-in; start again');
  const s = await call<Session>('POST', '/v1/session/google_oauth_exchange', { exchange_code: code, code_verifier: verifier }, { auth: false });
  signedIn(s);
}

function walletCard(): HTMLElement {
  const out = h('div');
  const start = actionButton('Sign in with wallet', out, async () => {
    const address = await connectWallet();
    const chainId = await walletChainId();
    const challenge = await call<{ request_id: string; message: string }>(
      'POST',
      '/v1/session/wallet_challenge',
      { address, format: 'siwe', chain_id: chainId },
      { auth: false },
    );
    checkSiweForThisSite(challenge.message, address);
    const signature = await personalSign(challenge.message, address);
    const s = await call<Session>('POST', '/v1/session/wallet_login', { request_id: challenge.request_id, signature }, { auth: false });
    signedIn(s);
  });
  if (!injectedWallet()) start.disabled = true;
  return h(
    'section',
    { class: 'card', id: 'wallet' },
    h('h2', {}, 'Wallet'),
    h('p', { class: 'muted' }, injectedWallet() ? 'Sign in with Ethereum (EIP-4361) with the wallet in this browser.' : 'No wallet found in this browser.'),
    start,
    out,
  );
}

interface Issued {
  options: Record<string, unknown>;
}

function passkeyCard(): HTMLElement {
  const out = h('div');
  const signIn = actionButton('Sign in with a passkey', out, async () => {
    const o = await call<Issued>('POST', '/v1/session/passkey/options', { mode: 'login' }, { auth: false });
    const response = await getPasskey(o.options);
    signedIn(await call<Session>('POST', '/v1/session/passkey', { response }, { auth: false }));
  });
  const signUp = actionButton(
    'New account with a passkey',
    out,
    async () => {
      const o = await call<Issued>('POST', '/v1/session/passkey/options', { mode: 'signup' }, { auth: false });
      const response = await createPasskey(o.options);
      signedIn(await call<Session>('POST', '/v1/session/passkey', { response, name: 'First passkey' }, { auth: false }));
    },
    'secondary',
  );
  const available = passkeysAvailable();
  signIn.disabled = signUp.disabled = !available;
  return h(
    'section',
    { class: 'card', id: 'passkey' },
    h('h2', {}, 'Passkey'),
    h(
      'p',
      { class: 'muted' },
      available ? 'Sign in with a passkey on this device or your phone, or make a new account with one.' : 'This browser has no passkeys.',
    ),
    h('div', { class: 'row' }, signIn, signUp),
    out,
  );
}

function signInPage(note?: HTMLElement): HTMLElement[] {
  return [h('h1', {}, 'Sign in'), ...(note ? [note] : []), h('div', { class: 'grid' }, emailCard(), passkeyCard(), googleCard(), walletCard())];
}

// ---- account -------------------------------------------------------------------------------

interface Me {
  omni_account: string;
  wallets: { wallet_index: number; address: string | null; role: string }[];
  email?: string;
}
interface Identities {
  identities: { type: string; value: string; email: string | null; created_at: number; last_login_at: number }[];
}
interface Passkeys {
  passkeys: { id: string; name: string; created_at: number; last_used_at: number | null; backup_eligible: boolean; backed_up: boolean }[];
}

/** When a listed login was made and how long it lasts: a login whose bearer expired still lives while its refresh token renews it. */
function sessionTimes(s: AccountSession): string {
  const renews = s.refresh_expires_at === null ? '' : ` · renews until ${when(s.refresh_expires_at)}`;
  return s.bearer_live
    ? `signed in ${when(s.created_at)} · until ${when(s.expires_at)}${renews}`
    : `signed in ${when(s.created_at)} · expired ${when(s.expires_at)}${renews}`;
}

async function accountPage(): Promise<HTMLElement[]> {
  const [me, ids, sessions, passkeys] = await Promise.all([
    call<Me>('GET', '/v1/session/me'),
    call<Identities>('GET', '/v1/account/identities'),
    call<AccountSessionsBody>('GET', '/v1/account/sessions'),
    call<Passkeys>('GET', '/v1/passkeys'),
  ]);
  const out = h('div');
  const sessionList = h(
    'ul',
    { class: 'list', id: 'sessions' },
    ...sessions.sessions.map((s) =>
      h(
        'li',
        { 'data-session': s.session_id },
        h(
          'div',
          { class: 'row' },
          h('strong', {}, s.method),
          s.current ? h('span', { class: 'tag ok' }, 'this session') : null,
          s.bearer_live ? null : h('span', { class: 'tag', title: 'Its session expired, but its refresh token can still sign it in again' }, 'can renew'),
        ),
        h('div', { class: 'muted' }, sessionTimes(s)),
        h('div', { class: 'mono' }, s.session_id),
        s.current
          ? null
          : actionButton(
              'Revoke',
              out,
              async () => {
                const done = await unlessSignInTooOld(
                  out,
                  'Your sign-in is more than 5 minutes old. To revoke another session, sign in again, then revoke it: nothing was revoked.',
                  () => call('DELETE', `/v1/account/sessions/${s.session_id}`),
                );
                if (done) await render();
              },
              'danger',
            ),
      ),
    ),
  );
  return [
    h('h1', {}, 'Account'),
    h('section', { class: 'card' }, h('h2', {}, 'OmniAccount'), h('div', { class: 'mono', id: 'omni' }, me.omni_account)),
    h(
      'section',
      { class: 'card' },
      h('h2', {}, 'Identities'),
      h(
        'ul',
        { class: 'list', id: 'identities' },
        ...ids.identities.map((i) =>
          h(
            'li',
            {},
            h('div', { class: 'row' }, h('span', { class: 'tag' }, i.type), h('span', { class: 'mono' }, i.value)),
            i.email ? h('div', {}, i.email) : null,
            h('div', { class: 'muted' }, `since ${when(i.created_at)} · last sign-in ${when(i.last_login_at)}`),
          ),
        ),
      ),
    ),
    h(
      'section',
      { class: 'card' },
      h('h2', {}, 'Wallets'),
      me.wallets.length === 0
        ? h('p', { class: 'muted' }, 'No wallet on this account.')
        : h(
            'ul',
            { class: 'list', id: 'wallets' },
            ...me.wallets.map((w) =>
              h('li', {}, h('div', { class: 'row' }, h('span', { class: 'tag' }, w.role), h('span', { class: 'mono' }, w.address ?? '(pending)'))),
            ),
          ),
    ),
    passkeysCard(passkeys),
    h('section', { class: 'card' }, h('h2', {}, 'Sessions'), sessionList, out),
  ];
}

/**
 * The broker's "sign in again" refusal (a step that wants a sign-in at most 5 minutes old: adding or
 * removing a passkey, revoking another session, approving a device): what happened and a button
 * that signs in again and comes back to `next`.
 */
function recentSignInNeeded(text: string, next: string): HTMLElement[] {
  const again = h('button', { type: 'button' }, 'Sign in again');
  again.addEventListener('click', () => signInAgain(next));
  return [message('error', text), again];
}

/**
 * Runs an account-page step the broker refuses for a sign-in more than 5 minutes old. That refusal
 * is not a failure of the session: `out` shows `text` (what was not done) with *Sign in again*,
 * back to the account page, and the answer is false. Any other refusal is thrown, for the button
 * to show.
 */
async function unlessSignInTooOld(out: HTMLElement, text: string, step: () => Promise<unknown>): Promise<boolean> {
  try {
    await step();
    return true;
  } catch (e) {
    if (!asksForRecentSignIn(e)) throw e;
    out.replaceChildren(...recentSignInNeeded(text, '/console/account'));
    return false;
  }
}

function passkeysCard(list: Passkeys): HTMLElement {
  const out = h('div');
  const name = h('input', { type: 'text', name: 'passkey_name', maxlength: '64', placeholder: 'e.g. Laptop', autocomplete: 'off' });
  const add = actionButton('Add a passkey', out, async () => {
    let o: Issued;
    try {
      o = await call<Issued>('POST', '/v1/passkeys/registration/options');
    } catch (e) {
      if (!asksForRecentSignIn(e)) throw e;
      out.replaceChildren(
        ...recentSignInNeeded('Your sign-in is more than 5 minutes old. To add a passkey, sign in again, then add it: nothing was added.', '/console/account'),
      );
      return;
    }
    const response = await createPasskey(o.options);
    await call('POST', '/v1/passkeys/registration', { response, ...(name.value.trim() ? { name: name.value.trim() } : {}) });
    await render();
  });
  add.disabled = !passkeysAvailable();
  return h(
    'section',
    { class: 'card' },
    h('h2', {}, 'Passkeys'),
    list.passkeys.length === 0
      ? h('p', { class: 'muted' }, 'No passkey on this account.')
      : h(
          'ul',
          { class: 'list', id: 'passkeys' },
          ...list.passkeys.map((p) =>
            h(
              'li',
              { 'data-passkey': p.id },
              h(
                'div',
                { class: 'row' },
                h('strong', {}, p.name),
                p.backup_eligible ? h('span', { class: 'tag' }, p.backed_up ? 'synced' : 'can sync') : h('span', { class: 'tag' }, 'this device only'),
              ),
              h('div', { class: 'muted' }, `added ${when(p.created_at)} · ${p.last_used_at ? `last used ${when(p.last_used_at)}` : 'not used yet'}`),
              actionButton(
                'Remove',
                out,
                async () => {
                  // The last passkey of an account made with a passkey alone is refused (409): its message says what to do, in `out`.
                  const done = await unlessSignInTooOld(
                    out,
                    'Your sign-in is more than 5 minutes old. To remove a passkey, sign in again, then remove it: nothing was removed.',
                    () => call('DELETE', `/v1/passkeys/${p.id}`),
                  );
                  if (done) await render();
                },
                'danger',
              ),
            ),
          ),
        ),
    field('Name of the new passkey', name),
    add,
    out,
  );
}

// ---- grants --------------------------------------------------------------------------------

interface Grant {
  grant_id: string;
  main_address: string;
  agent_address: string;
  scope: { services?: string[]; roles?: string[] };
  expires_at: number;
  status: string;
  acceptance_message?: string;
}

function grantItem(g: Grant, side: 'main' | 'agent', out: HTMLElement): HTMLElement {
  const scope = [...(g.scope.services ?? []).map((s) => `service ${s}`), ...(g.scope.roles ?? []).map((r) => `role ${r}`)].join(', ') || 'any service';
  const live = g.status === 'pending' || g.status === 'active';
  const tagClass = g.status === 'active' ? 'tag ok' : g.status === 'pending' ? 'tag' : 'tag bad';
  const actions: HTMLElement[] = [];
  if (side === 'main' && live) {
    actions.push(
      actionButton(
        'Revoke',
        out,
        async () => {
          await call('DELETE', `/v1/grants/${g.grant_id}`);
          await render();
        },
        'danger',
      ),
    );
  }
  if (side === 'agent' && g.status === 'pending' && g.acceptance_message) {
    const text = g.acceptance_message;
    actions.push(
      actionButton('Accept with wallet', out, async () => {
        const address = await connectWallet();
        if (address.toLowerCase() !== g.agent_address) throw new Error(`the wallet's account is ${address}, not the agent ${g.agent_address} this grant names`);
        const signature = await personalSign(text, address);
        await call('POST', `/v1/grants/${g.grant_id}/accept`, { signature }, { auth: false });
        await render();
      }),
      actionButton(
        'Decline',
        out,
        async () => {
          await call('POST', `/v1/grants/${g.grant_id}/decline`);
          await render();
        },
        'secondary',
      ),
    );
  }
  return h(
    'li',
    { 'data-grant': g.grant_id },
    h('div', { class: 'row' }, h('span', { class: tagClass }, g.status), h('span', { class: 'mono' }, side === 'main' ? g.agent_address : g.main_address)),
    h('div', { class: 'muted' }, `${scope} · until ${when(g.expires_at)}`),
    h('div', { class: 'mono muted' }, g.grant_id),
    h('div', { class: 'row' }, ...actions),
  );
}

/**
 * What the last agent revocation did. The page is rendered again after it, which replaces every
 * node, so the answer is kept here and shown once by that render.
 */
let agentNote: HTMLElement | undefined;

/** The kill switch's answer (docs/kill-switch.md) as the account holder needs it: what ended, and until when. */
function agentRevokedText(r: AgentRevokedBody): string {
  const n = r.revoked_grants.length;
  const grants = n === 0 ? 'no grant to it was still live' : `${n} grant${n === 1 ? '' : 's'} revoked`;
  let held: string;
  // No epoch ended: the agent accepted no grant since it was last revoked (or ever), so it can hold no credential of this account.
  if (r.ended_epochs.length === 0) held = 'It holds no credential of this account to end.';
  else if (r.kill_switch.mode === 'iam') held = `The credentials it already holds are denied until ${when(r.kill_switch.until)}.`;
  else if (r.kill_switch.mode === 'file')
    held = `A deny for the credentials it already holds, until ${when(r.kill_switch.until)}, is written to the broker's policy file for its operator to apply.`;
  else held = "This broker's kill switch is off: the credentials it already holds stay valid until they expire.";
  return `Agent ${r.agent_address}: ${grants}. ${held}`;
}

/**
 * An agent wallet of this account's grants, listed once however many grants name it, with the
 * kill switch. It ends more than a grant's Revoke (every grant naming the agent, and the
 * credentials it already holds), so it asks first, in the page, as the approvals page does before
 * a signature.
 */
function agentItem(agent: string, grants: Grant[]): HTMLElement {
  const out = h('div');
  const live = grants.filter((g) => g.status === 'pending' || g.status === 'active').length;
  const confirm = actionButton(
    'Confirm: revoke every grant and end its credentials',
    out,
    async () => {
      const r = await call<AgentRevokedBody>('POST', `/v1/agents/${agent}/revoke`);
      agentNote = message('ok', agentRevokedText(r));
      await render();
    },
    'danger',
  );
  const cancel = h('button', { type: 'button', class: 'secondary' }, 'Cancel');
  cancel.addEventListener('click', () => out.replaceChildren());
  const ask = h('button', { type: 'button', class: 'danger' }, 'Revoke agent');
  ask.addEventListener('click', () => {
    out.replaceChildren(
      h(
        'p',
        {},
        `This revokes every grant this account made to ${agent} and ends the credentials it already holds. ` +
          'It cannot be undone: to trust this wallet again, offer it a new grant.',
      ),
      h('div', { class: 'row' }, confirm, cancel),
    );
    confirm.focus();
  });
  return h(
    'li',
    { 'data-agent': agent },
    h('div', { class: 'mono' }, agent),
    h('div', { class: 'muted' }, `${grants.length} grant${grants.length === 1 ? '' : 's'} · ${live ? `${live} live` : 'none live'}`),
    h('div', { class: 'row' }, ask),
    out,
  );
}

async function grantsPage(): Promise<HTMLElement[]> {
  const out = h('div');
  const [me, mine, theirs] = await Promise.all([
    call<Me>('GET', '/v1/session/me'),
    call<{ grants: Grant[] }>('GET', '/v1/grants?role=main'),
    call<{ grants: Grant[] }>('GET', '/v1/grants?role=agent').catch((e: unknown) => {
      if (e instanceof ApiError && e.status === 403) return undefined;
      throw e;
    }),
  ]);
  const agent = h('input', { type: 'text', name: 'agent_address', placeholder: '0x…', autocomplete: 'off', spellcheck: 'false' });
  const services = h('input', { type: 'text', name: 'services', placeholder: 'e.g. s3, bedrock (empty: any)' });
  const days = h('input', { type: 'number', name: 'days', min: '1', max: '365', value: '30' });
  const note = agentNote;
  agentNote = undefined;
  const byAgent = new Map<string, Grant[]>();
  for (const g of mine.grants) byAgent.set(g.agent_address, [...(byAgent.get(g.agent_address) ?? []), g]);
  const offer = actionButton('Offer grant', out, async () => {
    const d = Number(days.value);
    if (!days.value.trim() || !Number.isFinite(d) || d < 1 || d > 365) throw new Error('Days: enter how many days the grant lasts, from 1 to 365.');
    const list = services.value
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    await call('POST', '/v1/grants', {
      agent_address: agent.value.trim(),
      ...(list.length ? { scope: { services: list } } : {}),
      expires_in: Math.round(d * 86400),
    });
    await render();
  });
  return [
    h('h1', {}, 'Grants'),
    h(
      'section',
      { class: 'card', id: 'offer' },
      h('h2', {}, 'Offer an agent wallet a grant'),
      // A grant is offered from the account's main wallet (the agent's credentials name it): an
      // account without one is told so before it fills the form in, not by the broker's refusal after.
      ...(me.wallets.some((w) => w.role === 'main' && w.address)
        ? [
            h('p', { class: 'muted' }, 'It binds once the agent wallet signs its acceptance.'),
            enterRuns(offer, field('Agent address', agent), field('Services', services), field('Days', days), offer),
          ]
        : [
            h(
              'p',
              { class: 'muted', id: 'offer-needs-wallet' },
              'Grants are offered from a main EVM wallet, and this account has none: sign in with a wallet (or through the TEE with an EVM identity) to grant agents.',
            ),
          ]),
      out,
    ),
    h(
      'section',
      { class: 'card' },
      h('h2', {}, 'Grants of this account'),
      mine.grants.length
        ? h('ul', { class: 'list', id: 'grants-main' }, ...mine.grants.map((g) => grantItem(g, 'main', out)))
        : h('p', { class: 'muted' }, 'None yet.'),
    ),
    ...(byAgent.size
      ? [
          h(
            'section',
            { class: 'card' },
            h('h2', {}, 'Agents'),
            h('p', { class: 'muted' }, 'Revoke agent ends an agent wallet at once: every grant naming it, and the credentials it already holds.'),
            note ?? null,
            h('ul', { class: 'list', id: 'agents' }, ...[...byAgent].map(([a, gs]) => agentItem(a, gs))),
          ),
        ]
      : []),
    theirs
      ? h(
          'section',
          { class: 'card' },
          h('h2', {}, 'Grants offered to this wallet'),
          theirs.grants.length
            ? h('ul', { class: 'list', id: 'grants-agent' }, ...theirs.grants.map((g) => grantItem(g, 'agent', out)))
            : h('p', { class: 'muted' }, 'None.'),
        )
      : h('p', { class: 'muted' }, 'Sign in with an agent wallet to see and accept the grants offered to it.'),
  ];
}

// ---- audit ---------------------------------------------------------------------------------

interface AuditEntry {
  seq: string;
  at: string;
  event: string;
  outcome: string;
  details: Record<string, unknown>;
  hash: string;
  /** With of=grants: the agent account whose log holds the row. */
  omni_account?: string;
}

async function checkRow(entry: AuditEntry, keys: Jwk[], badge: HTMLElement): Promise<void> {
  badge.className = 'tag';
  badge.textContent = 'checking…';
  try {
    const proof = await call<AuditProof>('GET', `/v1/audit/proof?seq=${entry.seq}`);
    const proven = await verifyProofInBrowser(proof, keys, entry);
    badge.className = 'tag ok';
    badge.textContent = `verified · head of ${new Date(proven.headAt).toLocaleString()}`;
    badge.title = `Merkle root ${proven.root}, audit key ${proven.kid}`;
  } catch (e) {
    if (e instanceof ApiError && e.status === 409) {
      badge.className = 'tag';
      badge.textContent = 'not under a signed head yet';
    } else {
      badge.className = 'tag bad';
      badge.textContent = e instanceof ProofError ? `proof refused: ${e.message}` : `no proof: ${errorText(e)}`;
    }
  }
}

/** The agent of a mint row under a grant: its wallet when the row names it (a refusal may not), else its account. */
const agentOf = (e: AuditEntry): string => (typeof e.details.child_wallet === 'string' ? e.details.child_wallet : (e.omni_account ?? '?'));

async function auditPage(): Promise<HTMLElement[]> {
  const [page, underGrants, keys] = await Promise.all([
    call<{ entries: AuditEntry[] }>('GET', '/v1/audit?limit=50'),
    call<{ entries: AuditEntry[] }>('GET', '/v1/audit?of=grants&limit=50'),
    call<{ keys: Jwk[] }>('GET', '/v1/audit/keys', undefined, { auth: false }),
  ]);
  const checks: (() => Promise<void>)[] = [];
  const item = (e: AuditEntry) => {
    const badge = h('span', { class: 'tag', 'data-proof': e.seq }, 'waiting');
    checks.push(() => checkRow(e, keys.keys, badge));
    const summary = Object.entries(e.details)
      .filter(([, v]) => typeof v === 'string' || typeof v === 'number')
      .slice(0, 4)
      .map(([k, v]) => `${k}: ${String(v)}`)
      .join(' · ');
    return h(
      'li',
      { 'data-seq': e.seq },
      h('div', { class: 'row' }, h('strong', {}, e.event), h('span', { class: e.outcome === 'ok' ? 'tag ok' : 'tag bad' }, e.outcome), badge),
      h('div', { class: 'muted' }, `#${e.seq} · ${new Date(e.at).toLocaleString()}`),
      e.omni_account !== undefined ? h('div', { class: 'mono' }, `agent ${agentOf(e)} · grant ${String(e.details.grant_id)}`) : null,
      summary ? h('div', { class: 'mono muted' }, summary) : null,
    );
  };
  const items = page.entries.map(item);
  const agentItems = underGrants.entries.map(item);
  // Four at a time: the proof route is rate limited per account.
  void (async () => {
    const queue = [...checks];
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        for (let next = queue.shift(); next; next = queue.shift()) await next();
      }),
    );
  })();
  return [
    h('h1', {}, 'Audit'),
    h(
      'p',
      { class: 'muted' },
      'Each row of this account is checked here, in the browser: its inclusion proof against the head signed with the published audit key ',
      h('span', { class: 'mono' }, keys.keys.map((k) => k.kid ?? '?').join(', ')),
      '.',
    ),
    h('section', { class: 'card' }, page.entries.length ? h('ul', { class: 'list', id: 'audit' }, ...items) : h('p', { class: 'muted' }, 'No rows yet.')),
    h(
      'section',
      { class: 'card' },
      h('h2', {}, 'Mints under your grants'),
      h('p', { class: 'muted' }, "Credentials your agents minted in your wallet's name: rows of their logs, proven the same way."),
      underGrants.entries.length
        ? h('ul', { class: 'list', id: 'audit-grants' }, ...agentItems)
        : h('p', { class: 'muted' }, 'None yet: no agent has minted under your grants.'),
    ),
  ];
}

// ---- device --------------------------------------------------------------------------------

/** RFC 8628 §6.1 user codes: 8 letters of BCDFGHJKLMNPQRSTVWXZ, shown XXXX-XXXX; input ignores case, dashes and spaces. */
export function normalizeUserCode(input: string): string {
  const letters = input.toUpperCase().replace(/[\s-]/g, '');
  return letters.length === 8 ? `${letters.slice(0, 4)}-${letters.slice(4)}` : letters;
}

interface DeviceRequest {
  user_code: string;
  status: string;
  requested_at: number;
  expires_at: number;
  client_id?: string;
  scope?: string;
  requester_network?: string;
  approver_network: string;
  same_network: boolean;
}

/** A value the device sent about itself, marked as such: anyone can make a code naming any client or scope. */
const claimed = (value: string | undefined, none: string): HTMLElement =>
  value === undefined ? h('dd', { class: 'muted' }, none) : h('dd', {}, value, ' ', h('span', { class: 'tag bad' }, 'claimed by the device, unverified'));

/**
 * Where the code was asked for from, against where this person is (RFC 8628 §5.4, remote phishing):
 * a code from another network is shown with a warning, above everything else.
 */
function networkWarning(r: DeviceRequest): HTMLElement | null {
  if (r.same_network) return null;
  const text =
    r.requester_network === undefined
      ? 'The network this code was requested from is not known: approve only a device you are holding.'
      : `This code was requested from another network than yours (${r.requester_network}; yours is ${r.approver_network}): approve only a device you are holding.`;
  return h(
    'div',
    { class: 'msg warn', id: 'device-network-warning', role: 'alert' },
    h('strong', {}, text),
    h('br'),
    'If someone sent you this link or code, or asked you to enter it, deny it: approving gives them a session of your account.',
  );
}

function devicePage(prefill: string): HTMLElement[] {
  const out = h('div');
  const details = h('div');
  const code = h('input', {
    type: 'text',
    name: 'user_code',
    class: 'code',
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: 'XXXX-XXXX',
    value: normalizeUserCode(prefill),
  });
  const decide = (userCode: string, action: 'approve' | 'deny') =>
    actionButton(
      action === 'approve' ? 'Approve' : 'Deny',
      out,
      async () => {
        let r: { status: string };
        try {
          r = await call<{ status: string }>('POST', '/v1/device/verify', { user_code: userCode, action });
        } catch (e) {
          if (!asksForRecentSignIn(e)) throw e;
          out.replaceChildren(
            ...recentSignInNeeded(
              'Your sign-in is more than 5 minutes old. To approve a device, sign in again, then approve it: nothing was approved.',
              `/console/device?user_code=${encodeURIComponent(userCode)}`,
            ),
          );
          return;
        }
        details.replaceChildren(
          message('ok', r.status === 'approved' ? 'Approved: the device is signed in to this account.' : 'Denied: the device gets nothing.'),
        );
      },
      action === 'approve' ? '' : 'danger',
    );
  const look = actionButton('Continue', out, async () => {
    const userCode = normalizeUserCode(code.value);
    let r: DeviceRequest;
    try {
      r = await call<DeviceRequest>('GET', `/v1/device/verify?user_code=${encodeURIComponent(userCode)}`);
    } catch (e) {
      if (e instanceof ApiError && (e.status === 404 || e.status === 410)) throw new Error('No device is waiting for this code (wrong, used or expired).');
      throw e;
    }
    details.replaceChildren(
      ...[networkWarning(r)].filter((n): n is HTMLElement => n !== null),
      h(
        'dl',
        { id: 'device-request' },
        h('dt', {}, 'Code'),
        h('dd', { class: 'usercode' }, r.user_code),
        h('dt', {}, 'Client'),
        claimed(r.client_id, '(not named)'),
        h('dt', {}, 'Scope'),
        claimed(r.scope, '(none)'),
        h('dt', {}, 'Requested from'),
        h(
          'dd',
          { class: 'mono', id: 'device-requester-network' },
          r.requester_network ?? '(not recorded)',
          ...(r.same_network ? [' ', h('span', { class: 'tag ok' }, 'your network')] : []),
        ),
        h('dt', {}, 'Asked'),
        h('dd', {}, when(r.requested_at)),
        h('dt', {}, 'Expires'),
        h('dd', {}, when(r.expires_at)),
      ),
      h(
        'p',
        { class: 'muted' },
        'The client and scope are what the device said about itself: the broker has not checked them, and a code anyone made can name any client.',
      ),
      h('p', {}, 'Approve only a code your own device shows you.'),
      h('div', { class: 'row' }, decide(r.user_code, 'approve'), decide(r.user_code, 'deny')),
    );
  });
  return [
    h('h1', {}, 'Sign in a device'),
    h('section', { class: 'card', id: 'device' }, enterRuns(look, field('Code shown on the device', code), look), details, out),
  ];
}

// ---- router --------------------------------------------------------------------------------

/** Counts renders: a page whose data arrives after the person moved on is dropped, not shown over the newer one. */
let renders = 0;
/** How long a page's data may take before the page says it is loading. */
const LOADING_AFTER_MS = 300;

/** Shows `nodes` as the page: the tab's title names it, and after a move focus goes to its heading. */
function show(nodes: HTMLElement[]): void {
  main.removeAttribute('aria-busy');
  main.replaceChildren(...nodes);
  const heading = main.querySelector('h1');
  document.title = heading?.textContent ? `${heading.textContent} · AgentKeys console` : 'AgentKeys console';
  if (moved && heading) {
    heading.tabIndex = -1;
    heading.focus();
  }
  moved = false;
}

async function render(): Promise<void> {
  const mine = ++renders;
  const current = () => mine === renders;
  const path = location.pathname.replace(/\/+$/, '') || '/console';
  const params = new URLSearchParams(location.search);
  const s = session();
  nav.hidden = !s;
  for (const a of Array.from(nav.querySelectorAll('a'))) {
    if (a.getAttribute('href') === path) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  // A slow broker: the page says it is loading instead of leaving the last one (or a blank) in place.
  const loading = setTimeout(() => {
    if (!current()) return;
    main.setAttribute('aria-busy', 'true');
    main.replaceChildren(h('p', { class: 'muted', role: 'status', id: 'loading' }, 'Loading…'));
  }, LOADING_AFTER_MS);
  try {
    const exchange = params.get('exchange_code');
    if (exchange && path === '/console') return await finishGoogle(exchange);
    if (!s) {
      if (path !== '/console') sessionStorage.setItem(NEXT_KEY, location.pathname + location.search);
      const note = path === '/console/device' ? h('p', {}, 'Sign in to approve the device.') : undefined;
      show(signInPage(note));
      return;
    }
    let nodes: HTMLElement[];
    if (path === '/console/account' || path === '/console') nodes = await accountPage();
    else if (path === '/console/grants') nodes = await grantsPage();
    else if (path === '/console/approvals') nodes = await approvalsPage({ render, signInAgain });
    else if (path === '/console/audit') nodes = await auditPage();
    else if (path === '/console/device') nodes = devicePage(params.get('user_code') ?? '');
    else nodes = [h('h1', {}, 'Not found')];
    if (!current()) return;
    if (path === '/console') history.replaceState(null, '', '/console/account');
    show(nodes);
  } catch (e) {
    if (!current()) return;
    if (e instanceof ApiError && e.status === 401) {
      forgetSession();
      show(signInPage(message('error', 'Your session has ended; sign in again.')));
      nav.hidden = true;
      return;
    }
    const again = h('button', { type: 'button' }, 'Try again');
    again.addEventListener('click', () => void render());
    show([h('h1', {}, 'Something went wrong'), message('error', errorText(e)), again]);
  } finally {
    clearTimeout(loading);
  }
}

document.addEventListener('click', (ev) => {
  const a = (ev.target as Element | null)?.closest?.('a');
  if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey) return;
  const href = a.getAttribute('href') ?? '';
  if (!href.startsWith('/console')) return;
  ev.preventDefault();
  go(href);
});
window.addEventListener('popstate', () => void render());
/** Ends this session (at the broker too) and shows the sign-in page; once signed in, `next`. */
function signOut(next?: string): void {
  void call('POST', '/v1/session/logout')
    .catch(() => undefined)
    .finally(() => {
      forgetSession();
      if (next) sessionStorage.setItem(NEXT_KEY, next);
      go('/console/');
    });
}
const signInAgain = (next: string): void => signOut(next);
document.getElementById('signout')?.addEventListener('click', () => signOut());
void render();
