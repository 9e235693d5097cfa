import { isIP } from 'node:net';
import { z } from 'zod';
import { isLoopbackUrl } from './client-address';
import { parseGoogleReturnTargets, type GoogleReturnTargets } from './google-return-url';
import { AgentKeysError } from './errors';

/**
 * Broker configuration, read from the environment once at boot and validated with zod.
 * Every variable is documented in docs/configuration.md; keep the two in step.
 */

const bool = z.enum(['1', '0', 'true', 'false', 'yes', 'no', 'on', 'off']).transform((v) => ['1', 'true', 'yes', 'on'].includes(v));

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));
const optionalUrl = optionalString.pipe(z.url().optional());
/** A port that may be unset (or set empty): undefined then. */
const optionalPort = (min: number) => z.preprocess((v) => (typeof v === 'string' && v.trim() === '' ? undefined : v), int(min, 65535).optional());

/** proxy-addr's names for address ranges (loopback, link-local, unique-local). */
const PROXY_RANGE_NAMES = ['loopback', 'linklocal', 'uniquelocal'];

function isAddressOrCidr(entry: string): boolean {
  if (PROXY_RANGE_NAMES.includes(entry)) return true;
  const [address = '', prefix, ...rest] = entry.split('/');
  const family = isIP(address);
  if (family === 0 || rest.length > 0) return false;
  return prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128));
}

/**
 * Which peers may tell the broker the client's address (X-Forwarded-For), as Fastify's
 * `trustProxy`: off (the default: the TCP peer is the client), a hop count, or the load
 * balancers' addresses / CIDRs. "Trust everyone" is refused: any client could then pick its
 * address and walk around every per-address limit and the callback allow-list.
 */
export type TrustProxy = false | number | string[];

const trustProxy = z
  .string()
  .optional()
  .transform((v, ctx): TrustProxy => {
    const text = (v ?? '').trim();
    if (text === '' || /^(false|off|no|0)$/i.test(text)) return false;
    if (/^(true|on|yes)$/i.test(text)) {
      ctx.addIssue({ code: 'custom', message: 'trusting every peer lets any client choose its address; list the load balancers (CIDRs) or give a hop count' });
      return z.NEVER;
    }
    if (/^\d+$/.test(text)) {
      const hops = Number(text);
      if (hops > 10) ctx.addIssue({ code: 'custom', message: 'a hop count of at most 10' });
      return hops;
    }
    const entries = text
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    const bad = entries.filter((e) => !isAddressOrCidr(e));
    if (bad.length > 0) {
      ctx.addIssue({
        code: 'custom',
        message: `not an address or CIDR: ${bad.join(', ')} (comma-separated CIDRs, loopback/linklocal/uniquelocal, or a hop count)`,
      });
      return z.NEVER;
    }
    return entries;
  });

/** A URL pg can connect with: postgres:// or postgresql://, with a host (or ?host= for a socket directory). */
function isPostgresUrl(text: string): boolean {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return false;
  }
  return (url.protocol === 'postgres:' || url.protocol === 'postgresql:') && (url.hostname !== '' || url.searchParams.has('host'));
}

export const envSchema = z.object({
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  PORT: int(0, 65535).default(8091),
  HOST: z.string().min(1).default('127.0.0.1'),
  BROKER_PUBLIC_URL: optionalUrl,
  BROKER_DATA_DIR: z.string().min(1).default('.data'),
  BROKER_DEV_FIXTURES: bool.optional(),
  BROKER_BODY_LIMIT_BYTES: int(1024, 1024 * 1024).default(16 * 1024),
  /** Load balancers whose X-Forwarded-For the broker believes: CIDRs, or a hop count; unset = none. */
  BROKER_TRUST_PROXY: trustProxy,
  /** Address of the ops listeners (Prometheus /metrics); loopback by default, never the public interface. */
  BROKER_OPS_HOST: z.string().min(1).default('127.0.0.1'),
  /** The API process's ops listener (GET /metrics); unset = no listener. */
  BROKER_OPS_PORT: optionalPort(0),
  /** Where the /docs UI (Swagger UI) is served: the public listener, the ops listener, or nowhere; default public, ops in production (api/plugins/docs.ts). */
  BROKER_DOCS_UI: z.enum(['public', 'ops', 'off']).optional(),
  /** The worker process's ops listener (GET /metrics: process, STS, SES, audit); unset = no listener. */
  BROKER_WORKER_OPS_PORT: optionalPort(0),
  /** The worker's Temporal SDK metrics (Core's Prometheus exporter, GET /metrics); unset = off. */
  BROKER_TEMPORAL_METRICS_PORT: optionalPort(1),

  /** postgres://user:password@host:5432/database (postgresql:// too); refused early when it is not one. */
  DATABASE_URL: optionalString.refine((v) => v === undefined || isPostgresUrl(v), {
    message: 'not a Postgres URL: expected postgres://user:password@host:5432/database',
  }),
  BROKER_DB_POOL_MAX: int(1, 200).default(10),
  /**
   * `auto`: the API and worker apply pending migrations at start-up, as DATABASE_URL's login (which
   * then owns every table). `external`: they run no DDL and refuse to start until `npm run db:migrate`
   * has applied every migration as a separate owner role (db/migrate.ts prepareSchema).
   */
  BROKER_MIGRATIONS: z.enum(['auto', 'external']).default('auto'),
  /** The schema owner's URL, for `npm run db:migrate` only; the API and worker refuse to start with it set. */
  BROKER_MIGRATION_DATABASE_URL: optionalString.refine((v) => v === undefined || isPostgresUrl(v), {
    message: 'not a Postgres URL: expected postgres://owner:password@host:5432/database',
  }),
  /** The login the API and worker connect as: `npm run db:migrate` grants it what the runtime needs (db/roles.ts). */
  BROKER_RUNTIME_ROLE: optionalString.refine((v) => v === undefined || /^[A-Za-z_][A-Za-z0-9_$-]{0,62}$/.test(v), {
    message: 'not a Postgres role name',
  }),
  /**
   * The API's client-side deadline for one database statement and for getting a connection: a
   * Postgres that accepts connections and never answers costs a caller this long, then 503.
   * Per statement, not per transaction (the API's transactions are a few short statements).
   */
  BROKER_DB_QUERY_TIMEOUT_MS: int(100, 600_000).default(1500),
  /** How long /readyz waits for one part before it reports the part down ("no answer within …"). */
  BROKER_READINESS_TIMEOUT_MS: int(50, 60_000).default(1500),
  /** How long a flow call's probe of the database and Temporal may take before the call answers 503. */
  BROKER_DEPENDENCY_TIMEOUT_MS: int(50, 60_000).default(800),
  /** The longest the API waits for a flow (a Temporal Update or workflow result) before answering 503. */
  BROKER_FLOW_DEADLINE_MS: int(1000, 600_000).default(30_000),

  TEMPORAL_ADDRESS: optionalString,
  TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
  TEMPORAL_API_KEY: optionalString,
  TEMPORAL_TLS: bool.optional(),
  BROKER_TASK_QUEUE: z.string().min(1).default('agentkeys-broker'),

  /**
   * The client id every OmniAccount is derived under (and the `aud` of TEE tokens). A stray space or
   * quote from an env file would silently fork every account, so they are refused, as AgentKeys'
   * own broker refuses them in `AGENTKEYS_CLIENT_ID` (docs/configuration.md).
   */
  BROKER_CLIENT_ID: z
    .string()
    .min(1)
    .max(64)
    .refine((v) => !/[\s"'\p{Cc}]/u.test(v), { message: 'contains whitespace, a quote or a control character: every OmniAccount is derived under it' })
    .default('agentkeys'),
  /** HMAC secret for ids, code derivation and audit hashing (>= 32 bytes, hex or base64). */
  BROKER_SECRET: optionalString,
  /** AES-256 payload codec key (32 bytes, hex or base64). */
  BROKER_PAYLOAD_KEY: optionalString,
  /** Comma-separated retired payload keys, still accepted for decoding. */
  BROKER_PAYLOAD_KEYS_RETIRED: optionalString,
  BROKER_SESSION_KEY_PATH: optionalString,
  /** ES256 private JWK that signs the audit chain's heads (its own key: never the session or OIDC key). */
  BROKER_AUDIT_KEY_PATH: optionalString,
  /**
   * A JWKS file of audit keys retired by a rotation, public halves only: published beside the
   * current key at GET /v1/audit/keys, so heads and proofs they signed keep verifying.
   */
  BROKER_AUDIT_KEYS_RETIRED_PATH: optionalString,
  /** How often the audit-anchor Schedule signs the chain's head. */
  BROKER_AUDIT_ANCHOR_SECONDS: int(1, 86400).default(60),
  /** How many hash chains the audit log is split into (by OmniAccount); fixed once rows are in them. */
  BROKER_AUDIT_SHARDS: int(1, 256).default(16),
  /** Lifetime of a broker login session (the bearer a login answers; default 12 h). */
  BROKER_LOGIN_SESSION_TTL_SECONDS: int(60, 30 * 86400).optional(),
  /** @deprecated the old name of BROKER_LOGIN_SESSION_TTL_SECONDS, still read (with a warning). */
  BROKER_SESSION_TTL_SECONDS: int(60, 30 * 86400).optional(),
  /** A refresh token expires this long after it was issued unless traded for a new one first. */
  BROKER_REFRESH_IDLE_SECONDS: int(60, 365 * 86400).default(7 * 86400),
  /** No refresh renews a login beyond this long after its first session was issued. */
  BROKER_REFRESH_MAX_SECONDS: int(60, 365 * 86400).default(30 * 86400),
  /**
   * Days a finished approval request (denied, expired, handed out, or its window over) stays in the
   * approvals table; the hourly purge then deletes it (db/approvals.ts purgeFinishedApprovals).
   * At least a day: far past the 5-minute hand-out window of an approved request.
   */
  BROKER_APPROVAL_RETENTION_DAYS: int(1, 3650).default(30),
  /** The shortest decision timeout a grant's approval policy may set (seconds; a person needs time to decide). */
  BROKER_APPROVAL_TIMEOUT_MIN_SECONDS: int(1, 3600).default(30),
  /** How often an agent polls an approval request at first (CIBA `interval`, seconds); slow_down adds 5. */
  BROKER_APPROVAL_POLL_INTERVAL_SECONDS: int(1, 60).default(2),
  BROKER_OPS_TOKEN: optionalString,
  /** Browser origins (the Temporal Web UI) allowed to call the codec endpoint, comma-separated. */
  BROKER_CODEC_CORS_ORIGINS: z.string().default('http://localhost:8233,http://127.0.0.1:8233'),

  BROKER_EMAIL_CODE_TTL_SECONDS: int(1, 3600).default(600),
  BROKER_EMAIL_MAX_ATTEMPTS: int(1, 20).default(5),
  BROKER_EMAIL_RESEND_COOLDOWN_SECONDS: int(0, 3600).default(60),
  BROKER_EMAIL_MAX_SENDS: int(1, 20).default(5),
  /** How long after an email login a repeat under the same Idempotency-Key and code gets a fresh session. */
  BROKER_EMAIL_RETRY_WINDOW_SECONDS: int(1, 3600).default(120),
  /** The wait before SES is tried again after throttling or a 5xx (doubling each time, 4 tries in all). */
  BROKER_EMAIL_SEND_BACKOFF_MS: int(10, 10_000).default(500),
  BROKER_EMAIL_FROM: z.string().min(3).default('AgentKeys <login@agentkeys.dev>'),
  BROKER_SES_ENDPOINT: optionalUrl,
  AWS_REGION: z.string().min(1).default('us-east-1'),

  BROKER_RATE_LIMIT_IP_PER_MINUTE: int(1, 1_000_000).default(60),
  /** Codes mailed to one mailbox per rolling hour, all requesters together: the ceiling (docs/email-login.md). */
  BROKER_RATE_LIMIT_EMAIL_PER_HOUR: int(1, 1_000_000).default(20),
  /** Codes mailed to one mailbox per requester network (IPv4 /24, IPv6 /48) per rolling hour: one requester's allowance. */
  BROKER_RATE_LIMIT_EMAIL_PER_NETWORK_PER_HOUR: int(1, 1_000_000).default(3),
  /** Wallet challenges per client address (IPv6: per /64) per minute: each one is a workflow that lives the wallet window. */
  BROKER_RATE_LIMIT_WALLET_CHALLENGE_PER_MINUTE: int(1, 1_000_000).default(10),
  /** Mints of every target together per account per minute; an agent's polls of its approval requests get 4× this. */
  BROKER_RATE_LIMIT_MINT_PER_MINUTE: int(1, 1_000_000).default(10),
  /** Mints of every target together per client address (IPv6 /64) per minute, whatever the account: accounts are free, the token services' quota is not. */
  BROKER_RATE_LIMIT_MINT_PER_IP_PER_MINUTE: int(1, 1_000_000).default(120),
  /** Approval requests opened (mints answered 202) per client address (IPv6 /64) per minute: each is a flow that waits up to an hour. */
  BROKER_RATE_LIMIT_APPROVAL_OPEN_PER_IP_PER_MINUTE: int(1, 1_000_000).default(20),
  /** Agent revocations (the kill switch) per account per minute: each is a transaction, audit rows and a signal to the kill switch workflow. */
  BROKER_RATE_LIMIT_REVOKE_PER_MINUTE: int(1, 1_000_000).default(30),
  /** Successful refreshes per refresh family (one login) in any 60 s, counted in Postgres: the CLI renews about twice a day; each refresh is a session, a token and an audit row. */
  BROKER_RATE_LIMIT_REFRESH_PER_MINUTE: int(1, 1_000_000).default(6),
  /** Accepted codec-endpoint calls (decode/encode with the ops token) per address per minute; each is an audit row. */
  BROKER_RATE_LIMIT_CODEC_PER_MINUTE: int(1, 1_000_000).default(600),
  /** Keys each rate limit keeps (least recently used dropped first), per API process. */
  BROKER_RATE_LIMIT_CACHE_SIZE: int(100, 10_000_000).default(50_000),

  BROKER_WALLET_WINDOW_SECONDS: int(1, 86400).default(2700),
  /** How far a signed mint intent's issued_at may be from the broker clock (either way); its replay guard lives as long. */
  BROKER_MINT_INTENT_WINDOW_SECONDS: int(10, 3600).default(300),
  BROKER_EVM_RPC_URL: optionalUrl,

  BROKER_TEE_JWT_PUBLIC_KEY: optionalString,
  BROKER_TEE_JWKS_URL: optionalUrl,
  BROKER_TEE_CALLBACK_ALLOW: z.string().default('127.0.0.0/8,::1/128'),
  /** An account's TEE bookkeeping workflow (tee-account/<account tag>) ends after this long without a callback. */
  BROKER_TEE_ACCOUNT_IDLE_SECONDS: int(1, 86400).default(300),
  /** Callbacks one run of that workflow handles before it continues as new (Temporal caps updates per run). */
  BROKER_TEE_ACCOUNT_MAX_UPDATES: int(1, 1500).default(500),
  /** Grant lifetime when POST /v1/grants gives no expires_in, and the longest one accepted. */
  BROKER_GRANT_DEFAULT_TTL_SECONDS: int(60, 10 * 365 * 86400).default(30 * 86400),
  BROKER_GRANT_MAX_TTL_SECONDS: int(60, 10 * 365 * 86400).default(365 * 86400),
  /** Live (pending or active) grants one account may hold; another POST /v1/grants is a 409. */
  BROKER_GRANTS_MAX_PER_ACCOUNT: int(1, 100_000).default(100),
  /** Wallet slots one account may hold (add_wallet); a new slot beyond it is a 409. At most 1000 (slot numbers are 0-999). */
  BROKER_WALLET_SLOTS_MAX: int(1, 1000).default(20),
  /** add_wallet callbacks per account per minute (this API process). */
  BROKER_ADD_WALLET_PER_MINUTE: int(1, 1_000_000).default(10),

  /** Google login (docs/google-login.md): on when a client id is set. The issuer is reached only through its discovery document. */
  BROKER_GOOGLE_ISSUER: z.url().default('https://accounts.google.com'),
  BROKER_GOOGLE_CLIENT_ID: optionalString,
  BROKER_GOOGLE_CLIENT_SECRET: optionalString,
  /** A file holding the client secret (wins over BROKER_GOOGLE_CLIENT_SECRET). */
  BROKER_GOOGLE_CLIENT_SECRET_PATH: optionalString,
  /** The redirect URI registered at the provider; default <public URL>/v1/session/google_oauth_callback. */
  BROKER_GOOGLE_REDIRECT_URI: optionalUrl,
  /** Exact URLs a browser login may return to (comma-separated, e.g. https://app.example.com/after-login; no query); the console's always is (lib/google-return-url.ts). */
  BROKER_GOOGLE_RETURN_URLS: z.string().default(''),
  /** The older, wider setting: origins on which a browser login may return to any path (warned about in production). */
  BROKER_GOOGLE_RETURN_ORIGINS: z.string().default(''),
  /** How long a Google login waits for the provider's callback, and then for its session to be collected. */
  BROKER_GOOGLE_LOGIN_TTL_SECONDS: int(1, 3600).default(600),
  /** Longest wait for one call to the provider (token, userinfo, discovery); a call past it is retried. */
  BROKER_GOOGLE_HTTP_TIMEOUT_SECONDS: int(1, 60).default(10),
  /** Tries of each provider call (token exchange, userinfo) on a 5xx or a timeout; a 4xx is final. */
  BROKER_GOOGLE_MAX_ATTEMPTS: int(1, 10).default(3),
  /** Device authorization (docs/device-flow.md): how long a code lives (RFC 8628 `expires_in`) and the first poll interval. */
  BROKER_DEVICE_CODE_TTL_SECONDS: int(1, 3600).default(600),
  BROKER_DEVICE_POLL_INTERVAL_SECONDS: int(1, 60).default(5),
  /** Passkeys (docs/passkeys.md): the WebAuthn relying party id, default the public URL's host name. */
  BROKER_PASSKEY_RP_ID: optionalString,
  BROKER_PASSKEY_RP_NAME: z.string().min(1).max(64).default('AgentKeys'),
  /** Origins whose WebAuthn responses are accepted (comma-separated); the public URL's origin (the console's) always is. */
  BROKER_PASSKEY_ORIGINS: z.string().default(''),
  /** How long a passkey challenge can be answered (registration, sign-up, login). */
  BROKER_PASSKEY_CHALLENGE_TTL_SECONDS: int(5, 3600).default(300),

  BROKER_OIDC_KEY_PATH: optionalString,
  BROKER_OIDC_JWT_TTL_SECONDS: int(60, 3600).default(300),
  /**
   * The `aud` of the tokens the AWS targets sign (mint-oidc-jwt, mint-aws-creds): the client id the
   * IAM OIDC provider registers. AgentKeys' own broker reads the same name with the same default
   * (litentry/agent-terrier 120a4ac63617109aa7f8050e263be3297a760397,
   * crates/agentkeys-broker-server/src/config.rs `sts_audience`); its other cloud stack registers
   * its own. Google Cloud mints name theirs per request.
   */
  BROKER_STS_AUDIENCE: z
    .string()
    .regex(/^[\x21-\x7e]{1,255}$/, 'BROKER_STS_AUDIENCE must be 1 to 255 printable ASCII characters without spaces (an IAM OIDC provider client id)')
    .default('sts.amazonaws.com'),
  BROKER_DATA_ROLE_ARN: optionalString,
  /** Longest STS role session a mint may ask for (AWS DurationSeconds; default 1 h). */
  BROKER_STS_SESSION_DURATION_SECONDS: int(900, 43200).optional(),
  /** @deprecated the old name of BROKER_STS_SESSION_DURATION_SECONDS, still read (with a warning). */
  BROKER_SESSION_DURATION_SECONDS: int(900, 43200).optional(),
  BROKER_STS_ENDPOINT: optionalUrl,
  BROKER_SKIP_STARTUP_CHECK: bool.optional(),
  /** How long a verifier (STS, jose) may cache the JWKS: a retired OIDC key stays published this long past the token TTL. */
  BROKER_OIDC_VERIFIER_CACHE_SECONDS: int(0, 30 * 86400).default(86400),
  /** How often the API and worker look at the OIDC keyset file for a rotation (0 = every use). */
  BROKER_OIDC_KEY_RECHECK_MS: int(0, 60_000).default(1000),
  /** Longest wait for the audit log (lock + insert) before a mint fails closed with audit_error. */
  BROKER_AUDIT_WRITE_TIMEOUT_MS: int(50, 10_000).default(2000),

  /**
   * The kill switch (docs/kill-switch.md): `iam` puts its deny policy on each data role with
   * PutRolePolicy, `file` writes it to BROKER_KILL_SWITCH_POLICY_FILE for the operator to apply,
   * `off` only records revocations.
   */
  BROKER_KILL_SWITCH: z.enum(['off', 'iam', 'file']).default('off'),
  /** Role names (comma-separated) that get the deny policy; default the name of BROKER_DATA_ROLE_ARN. */
  BROKER_KILL_SWITCH_ROLE_NAMES: z.string().default(''),
  BROKER_KILL_SWITCH_POLICY_FILE: optionalString,
  /** The longest session the data roles grant (their MaxSessionDuration): how long a revocation's entry is kept. */
  BROKER_KILL_SWITCH_MAX_SESSION_SECONDS: int(900, 43200).default(43200),
  BROKER_IAM_ENDPOINT: optionalUrl,
});

export type Env = z.infer<typeof envSchema>;

/** Variables renamed for what they govern: old name → new name (the old one is still read, with a warning). */
export const RENAMED_ENV = {
  BROKER_SESSION_TTL_SECONDS: 'BROKER_LOGIN_SESSION_TTL_SECONDS',
  BROKER_SESSION_DURATION_SECONDS: 'BROKER_STS_SESSION_DURATION_SECONDS',
} as const;

const warnedRenames = new Set<string>();

export interface Config extends Omit<Env, keyof typeof RENAMED_ENV | (typeof RENAMED_ENV)[keyof typeof RENAMED_ENV]> {
  /** Lifetime of a broker login session, seconds. */
  BROKER_LOGIN_SESSION_TTL_SECONDS: number;
  /** Longest STS role session a mint may ask for, seconds. */
  BROKER_STS_SESSION_DURATION_SECONDS: number;
  /** Resolved public URL (BROKER_PUBLIC_URL or http://HOST:PORT), without a trailing slash. */
  publicUrl: string;
  /** Google login's redirect URI (BROKER_GOOGLE_REDIRECT_URI or the public URL's callback path). */
  googleRedirectUri: string;
  /** Where a browser login may return to: BROKER_GOOGLE_RETURN_URLS and the console's URL (exact), BROKER_GOOGLE_RETURN_ORIGINS (any path). */
  googleReturnTargets: GoogleReturnTargets;
  /** The WebAuthn relying party id (BROKER_PASSKEY_RP_ID or the public URL's host name). */
  passkeyRpId: string;
  /** BROKER_PASSKEY_ORIGINS parsed, and the public URL's origin: the origins a passkey response may come from. */
  passkeyOrigins: string[];
  /** Whether the dev fixtures (SES capture, /_dev routes, generated keys) are allowed. */
  devFixtures: boolean;
  isProduction: boolean;
}

export class ConfigError extends AgentKeysError {
  override readonly code: string = 'ERR_CONFIG';
  override name = 'ConfigError';
}

/** A comma-separated list of origins (scheme://host[:port]), each checked, with `always` appended when missing. */
function originList(name: string, text: string, opts: { always?: string; hint?: string } = {}): string[] {
  const origins: string[] = [];
  for (const entry of text
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean)) {
    let origin: string | undefined;
    try {
      origin = new URL(entry).origin;
    } catch {
      origin = undefined;
    }
    if (!origin || origin === 'null' || origin !== entry.replace(/\/+$/, ''))
      throw new ConfigError(`invalid configuration: ${name}: "${entry}" is not an origin (scheme://host[:port])${opts.hint ? `; ${opts.hint}` : ''}`);
    if (!origins.includes(origin)) origins.push(origin);
  }
  if (opts.always !== undefined && !origins.includes(opts.always)) origins.push(opts.always);
  return origins;
}

/**
 * URLs whose answers the broker trusts or to which it sends a credential. In production each must be
 * https, or plain http to this machine's loopback (a sidecar or stand-in): on a plain-http path
 * anyone could answer in its place. (BROKER_GOOGLE_ISSUER has its own rule below.)
 */
const PRODUCTION_HTTPS_URLS = {
  BROKER_TEE_JWKS_URL: 'it serves the keys that verify TEE bearers, so whoever answers it could sign in as any account',
  BROKER_EVM_RPC_URL: 'its eth_call answers decide whether a contract-wallet signature is valid',
  BROKER_STS_ENDPOINT: "it receives the broker's signed web identity tokens and returns the credentials a mint hands out",
  BROKER_IAM_ENDPOINT: "the kill switch's deny policies are written through it",
  BROKER_SES_ENDPOINT: 'login codes are mailed through it',
} as const;

/** The production problems of PRODUCTION_HTTPS_URLS (the values are not echoed: an RPC URL may carry an API key). */
function plainHttpUrlProblems(e: Env): string[] {
  const problems: string[] = [];
  for (const [name, why] of Object.entries(PRODUCTION_HTTPS_URLS) as [keyof typeof PRODUCTION_HTTPS_URLS, string][]) {
    const value = e[name];
    if (value === undefined) continue;
    const url = new URL(value);
    if (url.protocol === 'https:' || (url.protocol === 'http:' && isLoopbackUrl(url))) continue;
    problems.push(`${name} must be an https:// URL in production (plain http only to 127.0.0.1, localhost or [::1]): ${why}; set it to the https URL`);
  }
  return problems;
}

/** Parses and validates the environment; throws a ConfigError naming every bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `${i.path.join('.') || '(env)'}: ${i.message}`);
    throw new ConfigError(`invalid configuration: ${lines.join('; ')}`);
  }
  const e = parsed.data;
  for (const [old, now] of Object.entries(RENAMED_ENV)) {
    if (env[old] === undefined || warnedRenames.has(old)) continue;
    warnedRenames.add(old);
    const ignored = env[now] !== undefined ? ` (ignored: ${now} is set)` : '';
    process.emitWarning(`${old} is deprecated: set ${now} instead${ignored}`, 'DeprecationWarning');
  }
  const loginSessionTtl = e.BROKER_LOGIN_SESSION_TTL_SECONDS ?? e.BROKER_SESSION_TTL_SECONDS ?? 12 * 3600;
  const stsSessionDuration = e.BROKER_STS_SESSION_DURATION_SECONDS ?? e.BROKER_SESSION_DURATION_SECONDS ?? 3600;
  const sessionLifetimes = {
    BROKER_LOGIN_SESSION_TTL_SECONDS: loginSessionTtl,
    BROKER_STS_SESSION_DURATION_SECONDS: stsSessionDuration,
  };
  const isProduction = e.NODE_ENV === 'production';
  const devFixtures = e.BROKER_DEV_FIXTURES ?? !isProduction;
  const publicUrl = (e.BROKER_PUBLIC_URL ?? `http://${e.HOST.includes(':') ? `[${e.HOST}]` : e.HOST}:${e.PORT}`).replace(/\/+$/, '');
  const googleRedirectUri = e.BROKER_GOOGLE_REDIRECT_URI ?? `${publicUrl}/v1/session/google_oauth_callback`;
  const publicOrigin = new URL(publicUrl).origin;
  // The broker's own console (/console) signs in with Google and with passkeys: its return URL and its origin are always allowed.
  const googleReturnOrigins = originList('BROKER_GOOGLE_RETURN_ORIGINS', e.BROKER_GOOGLE_RETURN_ORIGINS, {
    hint: 'list exact return URLs with a path in BROKER_GOOGLE_RETURN_URLS',
  });
  let googleReturnTargets: GoogleReturnTargets;
  try {
    googleReturnTargets = parseGoogleReturnTargets(e.BROKER_GOOGLE_RETURN_URLS, googleReturnOrigins, publicOrigin);
  } catch (err) {
    throw new ConfigError(`invalid configuration: ${(err as Error).message}`);
  }
  const passkeyOrigins = originList('BROKER_PASSKEY_ORIGINS', e.BROKER_PASSKEY_ORIGINS, { always: publicOrigin });
  // AgentKeys' own broker reads the same setting as AGENTKEYS_CLIENT_ID (its VE stack: agentterrier;
  // litentry/agent-terrier c348357, crates/agentkeys-broker-server/src/config.rs): a deployment moved
  // from it with only that name set would derive every account under another id.
  const upstreamClientId = env.AGENTKEYS_CLIENT_ID;
  if (upstreamClientId !== undefined && upstreamClientId !== '' && upstreamClientId !== e.BROKER_CLIENT_ID)
    throw new ConfigError(
      `invalid configuration: AGENTKEYS_CLIENT_ID is "${upstreamClientId}" but BROKER_CLIENT_ID is "${e.BROKER_CLIENT_ID}": this broker derives every account under BROKER_CLIENT_ID (AGENTKEYS_CLIENT_ID is AgentKeys' own broker's name for it); set BROKER_CLIENT_ID to the same value, or unset AGENTKEYS_CLIENT_ID`,
    );
  const passkeyRpId = e.BROKER_PASSKEY_RP_ID ?? new URL(publicUrl).hostname;
  if (!/^[a-z0-9.-]{1,253}$/i.test(passkeyRpId) || passkeyRpId !== passkeyRpId.toLowerCase())
    throw new ConfigError(`invalid configuration: BROKER_PASSKEY_RP_ID: "${passkeyRpId}" is not a lower-case host name`);
  if (isProduction) {
    const problems: string[] = [];
    if (devFixtures) problems.push('BROKER_DEV_FIXTURES must be off in production');
    if (!e.DATABASE_URL) problems.push('DATABASE_URL is required in production (the embedded database is for development)');
    if (!e.BROKER_SECRET) problems.push('BROKER_SECRET is required in production (generate one with `npm run keygen -- secret`)');
    if (!e.BROKER_PAYLOAD_KEY) problems.push('BROKER_PAYLOAD_KEY is required in production (generate one with `npm run keygen -- secret`)');
    if (!e.BROKER_SESSION_KEY_PATH)
      problems.push('BROKER_SESSION_KEY_PATH is required in production (generate one with `npm run keygen -- session --out FILE`)');
    if (!e.BROKER_AUDIT_KEY_PATH) problems.push('BROKER_AUDIT_KEY_PATH is required in production (generate one with `npm run keygen -- audit --out FILE`)');
    // Never the development keyset under BROKER_DATA_DIR: a production issuer's keys are the operator's file.
    if (!e.BROKER_OIDC_KEY_PATH)
      problems.push('BROKER_OIDC_KEY_PATH is required in production (create the keyset with `BROKER_OIDC_KEY_PATH=FILE npm run oidc:rotate`)');
    if (!e.TEMPORAL_ADDRESS) problems.push('TEMPORAL_ADDRESS is required in production');
    if (e.BROKER_GOOGLE_CLIENT_ID && !e.BROKER_GOOGLE_CLIENT_SECRET && !e.BROKER_GOOGLE_CLIENT_SECRET_PATH)
      problems.push('BROKER_GOOGLE_CLIENT_SECRET or BROKER_GOOGLE_CLIENT_SECRET_PATH is required with BROKER_GOOGLE_CLIENT_ID');
    if (e.BROKER_GOOGLE_CLIENT_ID && new URL(e.BROKER_GOOGLE_ISSUER).protocol !== 'https:') problems.push('BROKER_GOOGLE_ISSUER must be https in production');
    // It unlocks every flow's payloads (/codec) to whoever reaches the API's private port: not a
    // word an operator typed, and never echoed.
    if (e.BROKER_OPS_TOKEN !== undefined && e.BROKER_OPS_TOKEN.length < 32)
      problems.push(
        `BROKER_OPS_TOKEN is ${e.BROKER_OPS_TOKEN.length} characters; in production it must be at least 32 (generate one with \`npm run keygen -- secret\`)`,
      );
    problems.push(...plainHttpUrlProblems(e));
    if (!e.BROKER_PUBLIC_URL && ['0.0.0.0', '::', '[::]'].includes(e.HOST))
      problems.push(
        `BROKER_PUBLIC_URL is required when HOST is ${e.HOST}: the public URL names the broker in its tokens, its OIDC issuer and what wallets sign, and no client reaches an unspecified address`,
      );
    if (problems.length > 0) throw new ConfigError(`refusing to start in production: ${problems.join('; ')}`);
  }
  return { ...e, ...sessionLifetimes, publicUrl, devFixtures, isProduction, googleRedirectUri, googleReturnTargets, passkeyRpId, passkeyOrigins };
}
