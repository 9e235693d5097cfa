/** The mint request of `mint aws` and the `credential_process` answer kept with the session. */
import { CliError, UsageError } from './errors';
import type { AwsCache, ProfileSession } from './session-store';

/** `credential_process` reuses cached credentials until this long before they expire. */
export const CREDENTIAL_CACHE_MARGIN_SECONDS = 300;

export interface MintOptions {
  duration?: string;
  grantId?: string;
  /** The agent's reason, shown to a holder who approves mints (docs/approvals.md). */
  reason?: string;
}

/** The mint request body for the flags given (undefined when none). */
export function mintBody(o: MintOptions): Record<string, unknown> | undefined {
  const body: Record<string, unknown> = {};
  if (o.duration !== undefined) {
    const d = Number(o.duration);
    if (!Number.isInteger(d) || d < 1) throw new UsageError('--duration takes whole seconds');
    body.duration_seconds = d;
  }
  if (o.grantId !== undefined) body.grant_id = o.grantId;
  if (o.reason !== undefined) body.reason = o.reason;
  return Object.keys(body).length > 0 ? body : undefined;
}

export function cacheKey(body: Record<string, unknown> | undefined): string {
  return JSON.stringify(body ?? {});
}

/**
 * The longest credential the broker issues: AWS STS's 12 h (BROKER_STS_SESSION_DURATION_SECONDS is
 * at most 43,200 s; OIDC and Google tokens are shorter, and are not cached).
 */
export const LONGEST_CREDENTIAL_SECONDS = 43_200;
/** How far this machine's clock may be behind STS's before a 12 h credential looks longer. */
const CLOCK_SKEW_SECONDS = 300;

/**
 * Whether credentials expiring then may be kept: not when they claim to last longer than any the
 * broker issues. A broker (or a plain-http path to one) could otherwise plant credentials that
 * `credential_process` answers from the cache for as long as the profile stays logged in.
 */
export function cacheableExpiry(expiration: number, nowSeconds: number): boolean {
  return expiration <= nowSeconds + LONGEST_CREDENTIAL_SECONDS + CLOCK_SKEW_SECONDS;
}

/** The cached credentials for this request while they have more than the margin left (and no more than any credential lasts). */
export function cachedCredentials(session: ProfileSession, body: Record<string, unknown> | undefined, nowSeconds: number): AwsCache | undefined {
  const c = session.aws_cache;
  return c && c.key === cacheKey(body) && c.expiration - CREDENTIAL_CACHE_MARGIN_SECONDS > nowSeconds && cacheableExpiry(c.expiration, nowSeconds)
    ? c
    : undefined;
}

/** The AWS CLI/SDK `credential_process` output (Version 1), one line. */
export function credentialProcessLine(c: { access_key_id: string; secret_access_key: string; session_token: string; expiration: number }): string {
  return `${JSON.stringify({
    Version: 1,
    AccessKeyId: c.access_key_id,
    SecretAccessKey: c.secret_access_key,
    SessionToken: c.session_token,
    Expiration: new Date(c.expiration * 1000).toISOString(),
  })}\n`;
}

/**
 * The shape STS gives credentials (an access key id of 16–128 word characters, a secret and a
 * session token in base64's alphabet, a whole-second expiry). Anything else from a broker is
 * refused before it is printed, cached or handed to an SDK: these values end up in shells
 * (`eval "$(agentkeys mint aws)"`) and files, so a broker — or whoever sits on a plain-http path
 * to one — must not be able to put a `$(…)`, a quote or a newline there.
 */
const ACCESS_KEY_ID_RE = /^\w{16,128}$/;
const BASE64_TEXT_RE = /^[A-Za-z0-9/+=]{1,8192}$/;

export function checkedAwsCredentials<T extends { access_key_id: unknown; secret_access_key: unknown; session_token: unknown; expiration: unknown }>(c: T): T {
  const ok =
    typeof c.access_key_id === 'string' &&
    ACCESS_KEY_ID_RE.test(c.access_key_id) &&
    typeof c.secret_access_key === 'string' &&
    BASE64_TEXT_RE.test(c.secret_access_key) &&
    typeof c.session_token === 'string' &&
    BASE64_TEXT_RE.test(c.session_token) &&
    Number.isSafeInteger(c.expiration);
  if (!ok)
    throw new CliError('the broker answered credentials that are not shaped as STS issues them; nothing was printed (is AGENTKEYS_BROKER_URL your broker?)');
  return c;
}

/** A value as one single-quoted shell word (a quote inside it closed, escaped and reopened). */
export function shellQuoted(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}
