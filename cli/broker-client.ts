/** HTTP calls to the broker: JSON in and out, one-line errors that say what to do. */
import { isLoopbackUrl } from '../lib/client-address';
import type { ErrorBody } from '../lib/wire';
import { BrokerAnswerError, brokerRefusal, BrokerUnreachableError, CliError, EXIT, initCommandFor, NotLoggedInError, UsageError } from './errors';

/** The longest one request to the broker may take, answer included. */
const REQUEST_TIMEOUT_MS = 30_000;
/** The most of one answer the CLI reads: the broker's largest (a page of 200 grants or audit rows) is a few hundred KiB. */
export const ANSWER_MAX_BYTES = 4 * 1024 * 1024;

/**
 * An answer's text, or undefined past `maxBytes` (declared or as it arrives; the rest is not
 * read): a hostile or broken server could otherwise fill the CLI's memory until its timeout.
 */
export async function boundedText(res: Response, maxBytes = ANSWER_MAX_BYTES): Promise<string | undefined> {
  if (Number(res.headers.get('content-length')) > maxBytes) {
    await res.body?.cancel();
    return undefined;
  }
  if (!res.body) return '';
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel();
      return undefined;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Set to 1 to let the CLI talk plain http to a broker or TEE worker that is not on this machine. */
export const ALLOW_INSECURE_HTTP_ENV = 'AGENTKEYS_ALLOW_INSECURE_HTTP';

/**
 * Refuses a URL the CLI would send bearers, refresh tokens, codes or signatures to over plain http
 * across a network: https, or http on this machine's loopback (the dev stack), or http anywhere
 * with AGENTKEYS_ALLOW_INSECURE_HTTP=1. Anyone on the path of a plain-http request reads the bearer
 * and can answer in the broker's place. `who` and `setting` name the server and where its URL is set.
 */
export function checkTransport(url: string, who: string, setting: string, env: NodeJS.ProcessEnv = process.env): void {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new UsageError(`the URL of ${who} (${setting}) is not a URL: "${url}"`);
  }
  if (u.protocol === 'https:') return;
  if (u.protocol !== 'http:') throw new UsageError(`the URL of ${who} (${setting}) is not an http(s) URL: "${url}"`);
  if (isLoopbackUrl(u) || env[ALLOW_INSECURE_HTTP_ENV] === '1') return;
  throw new UsageError(
    `refusing plain http to ${who} at ${url} (${setting}): tokens, codes and signatures would cross the network unencrypted, readable and answerable by anyone on the path. ` +
      `Use https, or set ${ALLOW_INSECURE_HTTP_ENV}=1 to allow it on a network you trust`,
  );
}

/** A fetch that followed no redirect: undici's "unexpected redirect" (fetch with redirect: 'error'). */
export function wasRedirect(e: unknown): boolean {
  const cause = (e as { cause?: { message?: unknown } }).cause;
  return typeof cause?.message === 'string' && /\bredirect\b/i.test(cause.message);
}

/** A broker URL as one spelling (a trailing slash, case and default port do not make another broker). */
function spelledBrokerUrl(u: string): string {
  try {
    return new URL(u).href.replace(/\/+$/, '');
  } catch {
    return u;
  }
}

/** Whether two broker URLs name the same broker. */
export function sameBrokerUrl(a: string, b: string): boolean {
  return spelledBrokerUrl(a) === spelledBrokerUrl(b);
}

export interface BrokerResponse<T> {
  status: number;
  body: T;
}

/** Where the bearer came from: what to tell the person when the broker refuses it. */
export type TokenSource = 'stored' | 'AGENTKEYS_TOKEN';

export class BrokerClient {
  constructor(
    readonly baseUrl: string,
    private readonly token?: string,
    private readonly tokenSource: TokenSource = 'stored',
    /** The profile whose stored session the token is: named in what to run when the broker refuses it. */
    private readonly profile?: string,
  ) {}

  /** Refuses this broker's URL when requests to it would go in plain http across a network (checkTransport). */
  checkTransport(): void {
    checkTransport(this.baseUrl, 'the broker', "--broker-url, AGENTKEYS_BROKER_URL or the profile's URL");
  }

  withToken(token: string): BrokerClient {
    return new BrokerClient(this.baseUrl, token, 'stored', this.profile);
  }

  /** Sends one request; answers 2xx bodies, throws BrokerAnswerError for the rest (unless `expect` lists the status). */
  async call<T>(method: string, path: string, opts: { body?: unknown; auth?: boolean; expect?: number[] } = {}): Promise<BrokerResponse<T>> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    if (opts.auth) {
      if (!this.token) throw new NotLoggedInError(`not logged in: run ${initCommandFor(this.profile)}`);
      headers.authorization = `Bearer ${this.token}`;
    }
    this.checkTransport();
    const url = new URL(path, this.baseUrl.endsWith('/') ? this.baseUrl : `${this.baseUrl}/`);
    // A timer that holds the process open: Node 20's fetch can leave its promise unsettled when the
    // connection is reset while it opens (seen against a port that resets every connection), and
    // AbortSignal.timeout's timer does not keep the event loop alive, so the CLI would end with
    // exit 0 and nothing printed. This one ends the wait with the error below instead.
    const ctrl = new AbortController();
    const timer = setTimeout(
      () => ctrl.abort(new BrokerUnreachableError(`the broker at ${this.baseUrl} did not answer within ${REQUEST_TIMEOUT_MS / 1000} s`)),
      REQUEST_TIMEOUT_MS,
    );
    let res: Response;
    let text: string;
    try {
      try {
        // No redirect is followed: one would re-send the body (a refresh token, a code, a signature)
        // to wherever the answer points, another origin included.
        res = await fetch(url, {
          method,
          headers,
          body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
          signal: ctrl.signal,
          redirect: 'error',
        });
      } catch (e) {
        if (ctrl.signal.aborted) throw ctrl.signal.reason as CliError;
        if (wasRedirect(e))
          throw new CliError(
            `the broker at ${this.baseUrl} answered ${method} ${url.pathname} with a redirect, which this CLI does not follow (nothing was sent on): set --broker-url or AGENTKEYS_BROKER_URL to the broker's own address`,
          );
        // The system's code (ECONNREFUSED, ENOTFOUND, a TLS one), else what fetch says (a port it refuses: "bad port").
        const cause = (e as { cause?: { code?: string; message?: string } }).cause;
        const why = cause?.code ?? cause?.message ?? (e as Error).name;
        throw new BrokerUnreachableError(`cannot reach the broker at ${this.baseUrl} (${why}): is it running? Set --broker-url or AGENTKEYS_BROKER_URL.`);
      }
      const read = await boundedText(res).catch((e: unknown) => {
        throw ctrl.signal.aborted
          ? (ctrl.signal.reason as CliError)
          : new BrokerUnreachableError(`the broker at ${this.baseUrl} broke off its answer (${(e as Error).message})`);
      });
      if (read === undefined)
        throw new CliError(
          `the broker at ${this.baseUrl} answered ${method} ${url.pathname} with more than ${ANSWER_MAX_BYTES / 1024 / 1024} MiB, which no answer of a broker is; nothing past that was read: check --broker-url`,
        );
      text = read;
    } finally {
      clearTimeout(timer);
    }
    let body: unknown = undefined;
    if (text) {
      try {
        body = JSON.parse(text);
      } catch {
        body = text;
      }
    }
    if ((res.status >= 200 && res.status < 300) || opts.expect?.includes(res.status)) return { status: res.status, body: body as T };
    const err = (typeof body === 'object' && body !== null ? body : {}) as Partial<ErrorBody> & Record<string, unknown>;
    const kind = err.error ?? `http_${res.status}`;
    const message = err.message ?? (typeof body === 'string' && body ? body : res.statusText);
    if (res.status === 401 && opts.auth) {
      const refusal = { broker: brokerRefusal(res.status, kind, err) };
      // AGENTKEYS_TOKEN is used instead of the stored session, so `init` would not help.
      if (this.tokenSource === 'AGENTKEYS_TOKEN')
        throw new NotLoggedInError(
          `the broker refused AGENTKEYS_TOKEN (${message}): it is not a session of this broker, or it expired or was logged out; set a fresh one (agentkeys token prints a profile's), or unset AGENTKEYS_TOKEN to use the stored session`,
          EXIT.failure,
          refusal,
        );
      throw new NotLoggedInError(`the broker refused the stored session (${message}): run ${initCommandFor(this.profile)}`, EXIT.failure, refusal);
    }
    throw new BrokerAnswerError(`${inCliWords(message)} (${kind}, HTTP ${res.status})`, res.status, kind, err);
  }
}

/**
 * The broker's messages name its routes and body fields; a person at the CLI typed commands and
 * flags. Longest first, so a route is replaced before the field names inside it.
 */
const CLI_WORDS: [RegExp, string][] = [
  [/\bDELETE \/v1\/grants\/\{grant_id\}/g, 'agentkeys grant leave <grant-id>'],
  [/\bPOST \/v1\/grants\/\{grant_id\}\/accept/g, 'agentkeys grant accept <grant-id>'],
  [/(?:\bPOST )?(?:\/v1\/)?\bmint-aws-creds\b/g, 'agentkeys mint aws'],
  [/(?:\bPOST )?(?:\/v1\/)?\bmint-oidc-jwt\b/g, 'agentkeys mint oidc'],
  [/(?:\bPOST )?(?:\/v1\/)?\bmint-gcp-token\b/g, 'agentkeys mint gcp'],
  // A request to decide with no signature, from a wallet account: the key signs it, given as one of these flags.
  [
    /\bsend signature, the EIP-712 signature of the request's typed data\b/g,
    "pass the wallet's key (--private-key-file, --mnemonic-file or --keystore) to sign the request's EIP-712 typed data",
  ],
  [/\bleave an accepted one with DELETE\b/g, 'leave an accepted one with agentkeys grant leave <grant-id>'],
  // Ids in the path are the commands' arguments (grant revoke <grant-id>, approve <approval-id>), not flags.
  [/\bparams\.grant_id\b(?:: grant_id\b)?/g, '<grant-id>'],
  [/\bparams\.approval_id\b(?:: approval_id\b)?/g, '<approval-id>'],
  // A grant's approval policy: `grant add --approval <mode>` and one --approval-… flag per field of it.
  [/\baccess token as approval\.notify_email_proof\b/g, 'access token in a file given as --approval-notify-email-proof-file'],
  [/\b(?:body\.)?(?:approval\.)?notify_email_proof\b/g, '--approval-notify-email-proof-file'],
  [/\b(?:body\.)?(?:approval\.)?notify_email\b/g, '--approval-notify-email'],
  [/\bmax_duration_seconds or targets\b/g, '--approval-max-duration-seconds or --approval-targets'],
  [/\b(?:body\.)?(?:approval\.)?max_duration_seconds\b/g, '--approval-max-duration-seconds'],
  [/\b(?:body\.)?approval\.targets(?:\.\d+)?\b/g, '--approval-targets'],
  [/\b(?:body\.)?approval\.timeout_seconds\b/g, '--approval-timeout-seconds'],
  [/\b(?:body\.)?approval\.mode\b|\bbody\.approval\b(?!\.)/g, '--approval'],
  [/\bbody\.duration_seconds\b|\bduration_seconds\b/g, '--duration'],
  [/\bbody\.grant_id\b|\bgrant_id\b/g, '--grant-id'],
  [/\bbody\.audience\b(?:: audience\b)?/g, '--audience'],
  [/\bbody\.service_account\b(?:: service_account\b)?|\bservice_account\b/g, '--service-account'],
  [/\bbody\.expires_in\b|\bexpires_in\b/g, '--expires-in'],
  [/\bbody\.scope\.services\b|\bscope\.services\b/g, '--services'],
  [/\bbody\.agent_address\b|\bagent_address\b/g, '<agent-address>'],
  [/\bquerystring\.limit\b/g, '--limit'],
  [/\bbody\.email\b/g, '<address>'],
];

export function inCliWords(message: string): string {
  // "body.duration_seconds: duration_seconds must be…" says the flag twice once both are translated.
  return CLI_WORDS.reduce((m, [re, words]) => m.replace(re, words), message).replace(/^(\S+): \1 /, '$1 ');
}

/**
 * The broker's host as what a wallet signs names it (an approval's EIP-712 domain, a grant's
 * acceptance text): `--broker-host` when given (the broker reached under another name than its
 * public URL's), else the host of the URL this CLI talks to, spelled as the URL standard spells it.
 */
export function brokerHostOf(given: string | undefined, brokerUrl: string): string {
  if (given === undefined) return new URL(brokerUrl).host;
  try {
    const u = new URL(`https://${given}`);
    if (u.pathname === '/' && !u.search && !u.hash && !u.username && !u.password && `${given}`.length > 0) return u.host;
  } catch {
    /* below */
  }
  throw new UsageError(`--broker-host takes a host and an optional port (broker.example.com, broker.example.com:8443), not "${given}"`);
}
