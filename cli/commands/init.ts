/** `agentkeys init`: log in by wallet, email code, Google or the Heima TEE, and keep the bearer. */
import { Command, Option } from 'commander';
import { isLoopbackUrl } from '../../lib/client-address';
import { deriveOmniAccount } from '../../lib/omni';
import { buildSiweMessage, buildStatelessWalletMessage, parseSiweMessage, SIWE_NONCE_RE, SIWE_STATEMENT, type SiweFields } from '../../lib/wallet-message';
import type { EmailCodeBody, MeBody, SessionBody, WalletChallengeBody } from '../../lib/wire';
import { BrokerAnswerError, CliError, EXIT, UsageError } from '../errors';
import { CliContext } from '../context';
import { askChoice, askText, canPrompt, StdinLines } from '../prompt';
import { assertLoginWritable, openLoginStore, type ProfileSession } from '../session-store';
import { checkTeeUrl, teeLogin, type TeeLoginResult } from '../tee-client';
import { loadCliWallet, withWalletKeyOptions, type WalletAccount, type WalletKeyOptions } from '../wallet-key';
import { displayIdentity } from '../identity';
import { shown, shownJson } from '../terminal-text';
import { brokerHostOf, sameBrokerUrl, type BrokerClient } from '../broker-client';

const EMAIL_RE = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const NON_TTY_HINT =
  'name a method: agentkeys init wallet --private-key-file F | init email <address> --code-stdin | init google --code-stdin | init device | init tee --email <address> --code-stdin';

interface InitOptions {
  showToken?: boolean;
  /** With --json: the result as one line (the device login prints JSON lines as it goes). */
  jsonLine?: boolean;
}

/**
 * The context of a login, refused by name when the store its session would go to holds another
 * program's (ForeignProfileError): before any prompt and any request to the broker or the TEE, which
 * would leave a session there and may send a code, all for a save that is refused.
 */
async function openForLogin(cmd: Command): Promise<CliContext> {
  const ctx = await CliContext.open(cmd);
  await assertLoginWritable(ctx.profile, await openLoginStore(ctx.env));
  // A broker URL in plain http across a network is refused before any key, code or prompt.
  ctx.broker().checkTransport();
  return ctx;
}

/** Saves the session and prints who is logged in (the token only with --show-token). */
async function finish(ctx: CliContext, session: ProfileSession, o: InitOptions): Promise<void> {
  o = { ...o, showToken: o.showToken || ctx.showToken };
  if (session.identity?.type === 'google' && !session.email) {
    // A Google account is known by its email, not its numeric sub: the broker tells the verified one.
    const me = await ctx.broker(session.token).call<MeBody & { email?: unknown }>('GET', '/v1/session/me', { auth: true });
    if (typeof me.body.email === 'string') session = { ...session, email: me.body.email };
  }
  const kept = await ctx.saveLogin(session);
  const store = kept.store;
  session = kept.session;
  const result = {
    profile: ctx.profile,
    broker_url: session.broker_url,
    method: session.method,
    omni_account: session.omni_account,
    user_id: session.user_id ?? null,
    identity: session.identity ?? null,
    ...(session.email ? { email: session.email } : {}),
    expires_at: session.expires_at,
    renews_until: session.refresh_expires_at ?? null,
    store: store.kind,
    ...(o.showToken ? { token: session.token } : {}),
  };
  if (o.jsonLine && ctx.json) {
    process.stdout.write(`${shownJson({ event: 'logged_in', ...result })}\n`);
    return;
  }
  ctx.print(result, [
    `Logged in as ${displayIdentity(session)} (profile ${ctx.profile}, ${session.method})`,
    `  omni_account ${session.omni_account}`,
    `  broker       ${session.broker_url}`,
    `  expires      ${new Date(session.expires_at * 1000).toISOString()}${session.refresh_expires_at ? ` (renews itself until ${new Date(session.refresh_expires_at * 1000).toISOString()} while in use)` : ''}`,
    `  stored in    ${store.describe(ctx.profile)}`,
    ...(o.showToken ? [`  token        ${session.token}`] : []),
  ]);
}

function fromSessionBody(ctx: CliContext, method: ProfileSession['method'], b: SessionBody & { email?: unknown }): ProfileSession {
  return {
    broker_url: ctx.brokerUrl,
    method,
    token: b.token,
    expires_at: b.expires_at,
    omni_account: b.omni_account,
    user_id: b.user_id,
    identity: b.identity,
    ...(typeof b.email === 'string' ? { email: b.email } : {}),
  };
}

/** The chain a SIWE login asks for (the broker's default; a login proves the key, on no chain in particular). */
const SIWE_CHAIN_ID = 1;

/** What the SIWE message the CLI signs must say: who is signing in, where, and on which chain. */
interface SiweWanted {
  /** The broker's host as its public URL names it (brokerHostOf). */
  host: string;
  /** The broker URL this CLI talks to: the message's URI, unless the broker is reached under another name (--broker-host). */
  brokerUrl: string;
  viaOtherName: boolean;
  /** EIP-55, as the broker writes it. */
  address: string;
  chainId: number;
}

/** The URI a SIWE message of this broker may name: its URL, or (--broker-host) an http(s) URL of that host. */
function siweUriFits(uri: string, want: SiweWanted): boolean {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    return false;
  }
  if ((u.protocol !== 'https:' && u.protocol !== 'http:') || u.username || u.password || u.search || u.hash) return false;
  return want.viaOtherName ? u.host === want.host : sameBrokerUrl(uri, want.brokerUrl);
}

/**
 * The Sign-In with Ethereum message to sign: the broker's, and only when it is a sign-in at this
 * broker (domain its host, URI its URL), for this key's address, with AgentKeys' statement, on the
 * chain asked for, and nothing else. Its fields are checked, then the message is rebuilt from them
 * and must be the broker's byte for byte (no resources, request id or other lines slipped in).
 * Anything else is refused unsigned: a hostile broker, or a plain-http path to one, would otherwise
 * get a signature that logs this wallet in at another site.
 */
function siweMessageToSign(text: unknown, want: SiweWanted): string {
  const refuse = (why: string) =>
    new CliError(
      `the broker's sign-in message is not a Sign-In with Ethereum at ${want.host} for ${want.address} (${why}); nothing signed.` +
        (why.startsWith('it names the site')
          ? " If this CLI reaches the broker under another name than its public URL's (a tunnel, an internal address), pass that host as --broker-host"
          : ''),
    );
  if (typeof text !== 'string') throw refuse('no text');
  let m: SiweFields;
  try {
    m = parseSiweMessage(text);
  } catch (e) {
    throw refuse(`not an EIP-4361 message: ${(e as Error).message}`);
  }
  if (m.domain !== want.host) throw refuse(`it names the site ${m.domain}`);
  if (m.address !== want.address) throw refuse(`it is for the address ${m.address}`);
  if (m.statement !== SIWE_STATEMENT) throw refuse(`its statement is not "${SIWE_STATEMENT}"`);
  if (!siweUriFits(m.uri, want)) throw refuse(`it names the URI ${m.uri}`);
  if (m.version !== '1') throw refuse(`version ${m.version}`);
  if (m.chainId !== want.chainId) throw refuse(`chain id ${m.chainId}, not ${want.chainId}`);
  if (!SIWE_NONCE_RE.test(m.nonce)) throw refuse('its nonce is malformed');
  if (m.expirationTime === undefined || Date.parse(m.expirationTime) <= Date.parse(m.issuedAt)) throw refuse('it has no expiry after its issue time');
  const rebuilt = buildSiweMessage({
    domain: want.host,
    address: want.address,
    statement: SIWE_STATEMENT,
    uri: m.uri,
    version: '1',
    chainId: want.chainId,
    nonce: m.nonce,
    issuedAt: m.issuedAt,
    expirationTime: m.expirationTime,
  });
  if (rebuilt !== text) throw refuse('it carries more than a sign-in (a not-before, a request id or resources)');
  return rebuilt;
}

async function initWallet(ctx: CliContext, o: WalletKeyOptions & InitOptions & { siwe?: boolean; brokerHost?: string }): Promise<void> {
  if (o.brokerHost !== undefined && !o.siwe) throw new UsageError('--broker-host goes with --siwe (the stateless message names no host)');
  const broker = ctx.broker();
  const host = o.siwe ? brokerHostOf(o.brokerHost, broker.baseUrl) : '';
  const account = await loadCliWallet(ctx, o);
  const spin = await ctx.spinner(`Signing in as ${account.address}`);
  try {
    let body: SessionBody;
    if (o.siwe) {
      const ch = await broker.call<WalletChallengeBody>('POST', '/v1/session/wallet_challenge', {
        body: { address: account.address, format: 'siwe', chain_id: SIWE_CHAIN_ID },
      });
      const message = siweMessageToSign(ch.body.message, {
        host,
        brokerUrl: broker.baseUrl,
        viaOtherName: o.brokerHost !== undefined,
        address: account.address,
        chainId: SIWE_CHAIN_ID,
      });
      const signature = await account.signMessage({ message });
      body = (await broker.call<SessionBody>('POST', '/v1/session/wallet_login', { body: { request_id: ch.body.request_id, signature } })).body;
    } else {
      body = await statelessWalletLogin(broker, account);
    }
    spin.stop();
    await finish(ctx, fromSessionBody(ctx, 'wallet', body), o);
  } catch (e) {
    spin.fail();
    throw e;
  }
}

/**
 * The stateless login signs the broker's message with the current second; each signature is
 * accepted once, so a login that lands on a second already used (two logins in one second) signs
 * again with a later one instead of failing.
 */
async function statelessWalletLogin(broker: BrokerClient, account: WalletAccount): Promise<SessionBody> {
  const address = account.address.toLowerCase();
  let timestamp = Math.floor(Date.now() / 1000);
  for (let attempt = 1; ; attempt++) {
    const signature = await account.signMessage({ message: buildStatelessWalletMessage(address, timestamp) });
    try {
      return (await broker.call<SessionBody>('POST', '/v1/session/wallet_login', { body: { address, signature, timestamp } })).body;
    } catch (e) {
      if (!(e instanceof BrokerAnswerError && e.kind === 'conflict') || attempt >= 5) throw e;
      timestamp = Math.max(timestamp + 1, Math.floor(Date.now() / 1000));
    }
  }
}

/** Where a code comes from: the prompt, or the next stdin line with --code-stdin. */
function codeSource(codeStdin: boolean | undefined, label: string): (retry: string | undefined) => Promise<string> {
  if (codeStdin) {
    const lines = new StdinLines();
    return async () => {
      const l = await lines.next();
      if (!l) throw new CliError('no code on stdin');
      return l;
    };
  }
  if (!canPrompt()) throw new UsageError(`no terminal to ask for the code on: pass --code-stdin and write the code to stdin`);
  return (retry) => askText(retry ? `${retry} ${label}` : label, 'pass --code-stdin', (v) => (/^\s*\S+\s*$/.test(v) ? undefined : 'type the code'));
}

/**
 * Asks for a code until the broker takes it: a wrong code (with attempts left) or one that is no
 * code is asked for again; the last wrong code, a locked login or an expired one end with what to
 * do. `send` answers the broker's body, or undefined to ask the broker again with the same code later.
 */
async function untilCodeTaken<T>(
  nextCode: (retry: string | undefined) => Promise<string>,
  send: (code: string) => Promise<{ status: number; body: unknown }>,
  say: { tooMany: string; expired: string },
  again?: () => Promise<void>,
): Promise<T> {
  let retry: string | undefined;
  for (;;) {
    const code = (await nextCode(retry)).trim();
    try {
      for (;;) {
        let r;
        try {
          r = await send(code);
        } catch (e) {
          // Polled often enough that the broker asks for a pause (a sign-in's poll budget): one more wait, as for a 202.
          if (!again || !(e instanceof BrokerAnswerError) || e.kind !== 'rate_limited') throw e;
          await again();
          continue;
        }
        if (r.status === 200) return r.body as T;
        if (!again) throw new CliError(`the broker answered ${r.status}`);
        await again();
      }
    } catch (e) {
      if (!(e instanceof BrokerAnswerError)) throw e;
      if (e.kind === 'invalid_code' && typeof e.body.attempts_left === 'number' && e.body.attempts_left > 0) {
        retry = `Wrong code (${e.body.attempts_left} attempts left).`;
        process.stderr.write(`${retry}\n`);
        continue;
      }
      if (e.kind === 'invalid_code' || e.kind === 'too_many_attempts') throw new CliError(say.tooMany, EXIT.failure, e.details);
      if (e.kind === 'expired') throw new CliError(say.expired, EXIT.failure, e.details);
      if (e.kind === 'bad_request') {
        retry = 'That is not a code.';
        process.stderr.write(`${retry}\n`);
        continue;
      }
      throw e;
    }
  }
}

async function initEmail(ctx: CliContext, address: string, o: InitOptions & { codeStdin?: boolean }): Promise<void> {
  if (!EMAIL_RE.test(address)) throw new UsageError(`"${address}" is not an email address`);
  const broker = ctx.broker();
  const nextCode = codeSource(o.codeStdin, `Code sent to ${address}:`);
  let req: EmailCodeBody;
  try {
    req = (await broker.call<EmailCodeBody>('POST', '/v1/session/email_code', { body: { email: address } })).body;
  } catch (e) {
    if (e instanceof BrokerAnswerError && e.kind === 'rate_limited') {
      throw new CliError(
        `a code was sent to ${address} moments ago; ask again in ${typeof e.body.retry_after === 'number' ? e.body.retry_after : 'a few'} s (or use the code already sent)`,
        EXIT.failure,
        e.details,
      );
    }
    throw e;
  }
  process.stderr.write(`A code was sent to ${address}; it is valid until ${new Date(req.expires_at * 1000).toLocaleTimeString()}.\n`);
  const body = await untilCodeTaken<SessionBody>(
    nextCode,
    (code) => broker.call<SessionBody>('POST', '/v1/session/email_login', { body: { request_id: req.request_id, code } }),
    {
      tooMany: `too many wrong codes: wait until the code expires, then run agentkeys init email ${address} again`,
      expired: `the code expired: run agentkeys init email ${address} again`,
    },
  );
  await finish(ctx, fromSessionBody(ctx, 'email', body), o);
}

interface GoogleStart {
  request_id: string;
  authorize_url: string;
  poll_secret: string;
  expires_at: number;
}

/**
 * The address from the broker that may be handed to the system's opener, in its normalised form
 * (`URL#href`: quotes, spaces and controls percent-encoded), or undefined: https, or http on a
 * loopback host (the dev stand-ins). Anything else (file:, smb:, a custom scheme, a local path)
 * would let a hostile broker open what it likes on this machine. `$` and a backtick, which URLs
 * leave as they are, are refused too: on Windows and WSL the opener hands the address to PowerShell
 * inside double quotes, where `$(…)` runs a command (sindresorhus/open#323); no sign-in address
 * has either.
 */
function browserAddress(address: string): string | undefined {
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopbackUrl(url))) return undefined;
  return /[$`]/.test(url.href) ? undefined : url.href;
}

/**
 * Google in a browser, finished in the terminal: the CLI prints (and opens) the authorize URL; once
 * the person has signed in, the broker's page shows a confirmation code which they type here. The
 * poll secret alone does not collect the session (docs/google-login.md): a link someone else
 * opened hands its starter nothing without the code from that person's page.
 */
async function initGoogle(ctx: CliContext, o: InitOptions & { browser?: boolean; pollIntervalMs?: string; codeStdin?: boolean }): Promise<void> {
  const broker = ctx.broker();
  const nextCode = codeSource(o.codeStdin, 'Code the browser page shows after you sign in:');
  let start: GoogleStart;
  try {
    start = (await broker.call<GoogleStart>('POST', '/v1/session/google_oauth_login', { body: { format: 'cli' } })).body;
  } catch (e) {
    if (e instanceof BrokerAnswerError && e.status === 404)
      throw new CliError(`the broker at ${broker.baseUrl} offers no Google login: use another method (agentkeys init --help)`, EXIT.failure, e.details);
    throw e;
  }
  const address = browserAddress(start.authorize_url);
  if (address === undefined)
    throw new CliError(
      `the broker at ${broker.baseUrl} answered a sign-in address that is not https (nor http on this machine), or one with \`$\` or a backtick; nothing was opened`,
    );
  let opened = false;
  if (o.browser !== false) {
    try {
      const { default: open } = await import('open');
      const child = await open(address);
      child.on('error', () => undefined);
      opened = true;
    } catch {
      opened = false;
    }
  }
  process.stderr.write(
    `${opened ? 'Opened your browser at' : 'Open this address in a browser to sign in with Google'}:\n  ${shown(address)}\n` +
      `When you have signed in, the page shows a code: type it here (valid until ${new Date(start.expires_at * 1000).toLocaleTimeString()}).\n`,
  );
  const interval = Math.max(100, Number(o.pollIntervalMs ?? 1000));
  const again = 'run agentkeys init google again';
  const body = await untilCodeTaken<SessionBody>(
    nextCode,
    (code) =>
      broker.call<SessionBody | { status: string }>('POST', '/v1/session/google_oauth_poll', {
        body: { request_id: start.request_id, poll_secret: start.poll_secret, confirmation_code: code },
        expect: [202],
      }),
    { tooMany: `too many wrong codes: ${again}`, expired: `the Google sign-in expired, failed or was already used: ${again}` },
    async () => {
      // A code typed before the broker has seen the sign-in finish (202): ask again shortly, until the sign-in's window ends.
      if (Date.now() / 1000 > start.expires_at + 5) throw new CliError(`the Google sign-in expired: ${again}`);
      await new Promise((resolve) => setTimeout(resolve, interval));
    },
  );
  await finish(ctx, fromSessionBody(ctx, 'google', body), o);
}

interface DeviceCodeAnswer {
  device_code: string;
  user_code: string;
  verification_uri: string;
  verification_uri_complete: string;
  expires_in: number;
  interval: number;
}

/** A QR code of the text for the terminal (qrcode-terminal's half-block rendering). */
async function terminalQr(text: string): Promise<string> {
  const { default: qrcode } = await import('qrcode-terminal');
  return new Promise((resolve) => qrcode.generate(text, { small: true }, resolve));
}

/**
 * The device authorization grant (RFC 8628, docs/device-flow.md): for a machine with no browser.
 * Shows the user code and where to enter it (and a QR code of the link that carries it), then polls
 * the token endpoint every `interval` seconds, slowing down by 5 s whenever told to (§3.5).
 */
async function initDevice(ctx: CliContext, o: InitOptions & { qr?: boolean }): Promise<void> {
  const broker = ctx.broker();
  let start: DeviceCodeAnswer;
  try {
    start = (await broker.call<DeviceCodeAnswer>('POST', '/v1/device/code', { body: { client_id: 'agentkeys-cli' } })).body;
  } catch (e) {
    if (e instanceof BrokerAnswerError && e.status === 404)
      throw new CliError(`the broker at ${broker.baseUrl} offers no device login: use another method (agentkeys init --help)`, EXIT.failure, e.details);
    throw e;
  }
  // RFC 8628 §3.2: expires_in is required, interval defaults to 5 s. Anything else from the broker
  // (a string, a negative number) would poll forever or print what the broker put there.
  if (!(Number.isFinite(start.expires_in) && start.expires_in > 0))
    throw new CliError(`the broker at ${broker.baseUrl} answered a device code without a usable expires_in; nothing was shown`);
  const expiresAt = Date.now() + start.expires_in * 1000;
  if (ctx.json) {
    const { device_code: _secret, ...shown } = start;
    process.stdout.write(`${shownJson({ event: 'device_code', ...shown, expires_at: Math.floor(expiresAt / 1000) })}\n`);
  } else {
    const qr = o.qr === false ? '' : `\n${await terminalQr(start.verification_uri_complete)}`;
    process.stderr.write(
      `To sign in, open ${shown(start.verification_uri)}\nsigned in with any method, and enter the code\n\n    ${shown(start.user_code)}\n\n` +
        `or scan this link, which carries the code: ${shown(start.verification_uri_complete)}${qr}\n`,
    );
  }
  const spin = await ctx.spinner(`Waiting for approval of ${start.user_code} (Ctrl-C cancels)`);
  const controller = new AbortController();
  const onSigint = () => controller.abort();
  process.once('SIGINT', onSigint);
  let interval = Number.isFinite(start.interval) && start.interval >= 1 ? start.interval : 5;
  try {
    for (;;) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, interval * 1000);
        controller.signal.addEventListener('abort', () => {
          clearTimeout(t);
          resolve();
        });
      });
      if (controller.signal.aborted) throw new CliError('cancelled');
      const r = await broker.call<SessionBody | { error: string; error_description?: string; interval?: number }>('POST', '/v1/device/token', {
        body: { device_code: start.device_code, grant_type: 'urn:ietf:params:oauth:grant-type:device_code' },
        expect: [400],
      });
      if (r.status === 200) {
        spin.stop();
        await finish(ctx, fromSessionBody(ctx, 'device', r.body as SessionBody), { ...o, jsonLine: true });
        return;
      }
      const refusal = r.body as { error: string; error_description?: string; interval?: number };
      if (refusal.error === 'authorization_pending') continue;
      if (refusal.error === 'slow_down') {
        interval = Number.isFinite(refusal.interval) && (refusal.interval as number) > interval ? (refusal.interval as number) : interval + 5;
        if (ctx.json) process.stdout.write(`${shownJson({ event: 'slow_down', interval })}\n`);
        continue;
      }
      if (refusal.error === 'access_denied') throw new CliError('the request was denied in the console: run agentkeys init device again');
      if (refusal.error === 'expired_token' || Date.now() > expiresAt + interval * 1000)
        throw new CliError('the code expired before it was approved: run agentkeys init device again');
      throw new CliError(`the broker refused the device login (${refusal.error}${refusal.error_description ? `: ${refusal.error_description}` : ''})`);
    }
  } catch (e) {
    spin.fail();
    throw e;
  } finally {
    process.off('SIGINT', onSigint);
  }
}

async function initTee(ctx: CliContext, o: InitOptions & WalletKeyOptions & { email?: string; teeUrl?: string; codeStdin?: boolean }): Promise<void> {
  const teeUrl = o.teeUrl ?? ctx.env.AGENTKEYS_TEE_URL;
  if (!teeUrl) throw new UsageError('name the TEE worker: --tee-url or AGENTKEYS_TEE_URL');
  // Before any prompt: a code typed for a login that would then be refused is wasted.
  checkTeeUrl(teeUrl);
  if (!o.email === !(o.privateKeyFile || o.mnemonicFile || o.keystore))
    throw new UsageError('give either --email <address> or a wallet (--private-key-file F)');
  const spin = await ctx.spinner('Logging in through the Heima TEE');
  let result: TeeLoginResult;
  try {
    if (o.email) {
      if (!EMAIL_RE.test(o.email)) throw new UsageError(`"${o.email}" is not an email address`);
      spin.stop();
      const nextCode = codeSource(o.codeStdin, `Code the TEE sent to ${o.email}:`);
      result = await teeLogin(teeUrl, { kind: 'email', email: o.email, code: () => nextCode(undefined) });
    } else {
      const account = await loadCliWallet(ctx, o);
      const omni = deriveOmniAccount('agentkeys', { type: 'evm', value: account.address });
      result = await teeLogin(teeUrl, { kind: 'evm', address: account.address, omniAccount: omni, sign: (message) => account.signMessage({ message }) });
    }
    const me = (await ctx.broker(result.accessToken).call<MeBody>('GET', '/v1/session/me', { auth: true })).body;
    spin.stop();
    await finish(ctx, { ...fromSessionBody(ctx, 'tee', { ...me, token: result.accessToken, token_type: 'Bearer', expires_at: result.expiresAt }) }, o);
  } catch (e) {
    spin.fail();
    throw e;
  }
}

export function initCommand(): Command {
  const init = new Command('init')
    .description('log in to the broker and keep the bearer (asks for a method when none is given)')
    .option('--show-token', 'print the bearer token too (any init method)')
    .action(async (o: InitOptions, cmd: Command) => {
      const ctx = await openForLogin(cmd);
      if (!canPrompt()) throw new UsageError(NON_TTY_HINT);
      const method = await askChoice(
        'How do you want to log in?',
        [
          { value: 'wallet', label: 'Wallet', hint: 'a private key file' },
          { value: 'email', label: 'Email', hint: 'a one-time code' },
          { value: 'google', label: 'Google' },
          { value: 'device', label: 'A code to approve in the console', hint: 'no browser here' },
        ],
        NON_TTY_HINT,
      );
      if (method === 'email')
        return initEmail(ctx, await askText('Email address', NON_TTY_HINT, (v) => (EMAIL_RE.test(v) ? undefined : 'an email address')), o);
      if (method === 'google') return initGoogle(ctx, o);
      if (method === 'device') return initDevice(ctx, o);
      return initWallet(ctx, { ...o, privateKeyFile: await askText('Private key file', NON_TTY_HINT) });
    });

  withWalletKeyOptions(init.command('wallet').description('sign in with a wallet signature (EIP-191; --siwe for Sign-In with Ethereum)'))
    .option('--siwe', 'use the challenge form (EIP-4361) instead of the stateless message')
    .option(
      '--broker-host <host>',
      "with --siwe: the host of the broker's public URL, when this CLI reaches it under another name (a tunnel, an internal address)",
    )
    .action(async (o: WalletKeyOptions & InitOptions & { siwe?: boolean; brokerHost?: string }, cmd: Command) => initWallet(await openForLogin(cmd), o));

  init
    .command('email')
    .description('sign in with a one-time code mailed to <address>')
    .argument('<address>', 'your email address')
    .option('--code-stdin', 'read the code (one per line, for retries) from stdin instead of prompting')
    .action(async (address: string, o: InitOptions & { codeStdin?: boolean }, cmd: Command) => initEmail(await openForLogin(cmd), address, o));

  init
    .command('google')
    .description('sign in with Google in your browser')
    .option('--no-browser', 'do not open a browser; print the address to open')
    .option('--code-stdin', 'read the code the browser page shows (one per line, for retries) from stdin instead of prompting')
    .addOption(new Option('--poll-interval-ms <ms>', 'how often to ask the broker').default('1000').hideHelp())
    .action(async (o: InitOptions & { browser?: boolean; pollIntervalMs?: string; codeStdin?: boolean }, cmd: Command) =>
      initGoogle(await openForLogin(cmd), o),
    );

  init
    .command('device')
    .description('sign in on a machine without a browser: approve a short code in the console from any device')
    .option('--no-qr', 'do not print a QR code of the link')
    .action(async (o: InitOptions & { qr?: boolean }, cmd: Command) => initDevice(await openForLogin(cmd), o));

  withWalletKeyOptions(init.command('tee').description('log in through the Heima TEE worker (client_id agentkeys) and keep its access token'))
    .option('--email <address>', 'log in with an email code the TEE sends')
    .option('--tee-url <url>', 'the TEE worker JSON-RPC URL (default AGENTKEYS_TEE_URL)')
    .option('--code-stdin', 'read the email code from stdin instead of prompting')
    .action(async (o: InitOptions & WalletKeyOptions & { email?: string; teeUrl?: string; codeStdin?: boolean }, cmd: Command) =>
      initTee(await openForLogin(cmd), o),
    );
  return init;
}
