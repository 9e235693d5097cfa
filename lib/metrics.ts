import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { LOGIN_METHOD_IDS } from './login-methods';

/**
 * The broker's Prometheus metrics (docs/operations.md lists them). One registry per process: what
 * a scrape of that process's ops listener shows. Labels carry route patterns, flow names, steps,
 * outcomes and error codes only — never an address, an email, an account or a token.
 *
 * The HTTP request histogram lives in a registry of its own per Fastify app (api/plugins/metrics.ts);
 * the ops listener (adapters/ops-listener.ts) serves it merged with this one.
 */
export const processRegistry = new Registry();
collectDefaultMetrics({ register: processRegistry });

/** The HTTP request histogram's name (api/plugins/metrics.ts registers it per app). */
export const HTTP_REQUEST_DURATION = 'broker_http_request_duration_seconds';

/** Buckets for calls that go through Temporal or to AWS: a few ms up to the 30 s answers allow. */
export const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export const loginRequests = new Counter({
  name: 'broker_login_requests_total',
  // flow: the login method's registry id (lib/login-methods.ts); each route of a method is labelled
  // when it is registered (api/login-methods.ts), step by its loginStep or its path's last segment.
  help: `Answers of the login routes by flow (${LOGIN_METHOD_IDS.join(', ')}), step and outcome (ok or the error kind)`,
  labelNames: ['flow', 'step', 'outcome'] as const,
  registers: [processRegistry],
});

export const mintRequests = new Counter({
  name: 'broker_mint_requests_total',
  help: 'Answers of the mint routes by kind (one per mint target, its route without /v1/mint-: oidc_jwt, aws_creds, gcp_token) and outcome (ok or the error kind)',
  labelNames: ['kind', 'outcome'] as const,
  registers: [processRegistry],
});

export const rateLimitRefusals = new Counter({
  name: 'broker_rate_limit_refusals_total',
  help: 'Requests refused with 429 by an API-process rate limit, by limit name',
  labelNames: ['limit'] as const,
  registers: [processRegistry],
});

export const auditWriteFailures = new Counter({
  name: 'broker_audit_write_failures_total',
  help: 'Audit-log appends that failed (lock or statement timeout, database error), by event',
  labelNames: ['event'] as const,
  registers: [processRegistry],
});

export const stsRequestDuration = new Histogram({
  name: 'broker_sts_request_duration_seconds',
  help: 'STS calls by operation and outcome (ok or error)',
  labelNames: ['operation', 'outcome'] as const,
  buckets: LATENCY_BUCKETS,
  registers: [processRegistry],
});

export const stsErrors = new Counter({
  name: 'broker_sts_errors_total',
  help: 'STS calls that failed, by operation and error code (the SDK exception name)',
  labelNames: ['operation', 'code'] as const,
  registers: [processRegistry],
});

export const sesSendDuration = new Histogram({
  name: 'broker_ses_send_duration_seconds',
  help: 'SES SendEmail calls by outcome (ok or error)',
  labelNames: ['outcome'] as const,
  buckets: LATENCY_BUCKETS,
  registers: [processRegistry],
});

export const sesErrors = new Counter({
  name: 'broker_ses_errors_total',
  help: 'SES SendEmail calls that failed, by error code (the SDK exception name)',
  labelNames: ['code'] as const,
  registers: [processRegistry],
});

/** The kill switch's deny policy as last applied (activities/kill-switch.ts; docs/kill-switch.md, "Limits"). */
export const killSwitchEntries = new Gauge({
  name: 'broker_kill_switch_entries',
  help: 'Kill switch deny entries in force at the last application',
  registers: [processRegistry],
});

export const killSwitchCollapsedWallets = new Gauge({
  name: 'broker_kill_switch_collapsed_wallets',
  help: 'User wallets whose revocations did not fit one by one and are denied by issue time (their other agents mint again)',
  registers: [processRegistry],
});

export const killSwitchRoleWide = new Gauge({
  name: 'broker_kill_switch_role_wide',
  help: '1 while the deny policy covers every agent session issued before a cutoff (too many revoking accounts to list), else 0',
  registers: [processRegistry],
});

/** An error's class name as a label (AWS SDK exception names), never its message. */
export function errorCodeLabel(e: unknown): string {
  const name = e instanceof Error ? e.name : '';
  return /^[A-Za-z][A-Za-z0-9_]{0,63}$/.test(name) ? name : 'Error';
}

/** Times `call` into a histogram (outcome ok / error) and counts its failure by error code. */
export async function timed<T>(
  observe: (outcome: 'ok' | 'error', seconds: number) => void,
  onError: (code: string) => void,
  call: () => Promise<T>,
): Promise<T> {
  const t0 = process.hrtime.bigint();
  const seconds = () => Number(process.hrtime.bigint() - t0) / 1e9;
  try {
    const out = await call();
    observe('ok', seconds());
    return out;
  } catch (e) {
    observe('error', seconds());
    onError(errorCodeLabel(e));
    throw e;
  }
}
