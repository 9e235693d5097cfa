/**
 * The API's one dependency module: what the API is built from (ApiDeps: config, keys, the
 * database, Temporal), what a request carries after auth (AuthContext), and how the API depends on
 * the database and Temporal at run time — the checks /readyz reports and the deadline a flow call
 * waits under (answer 503 within about 2 s when either stops answering, instead of holding the
 * caller while it hangs). activities/deps.ts is the activities' counterpart.
 */
import type { Client } from '@temporalio/client';
import type { OidcKeyStore } from '../adapters/oidc-keys';
import type { BrokerSecrets } from '../adapters/secrets';
import type { TeeTokenVerifier } from '../adapters/tee-jwt';
import { pingDb, type Db } from '../db/pool';
import type { Config } from '../lib/config';
import { unavailable, type BrokerError } from '../lib/errors';
import type { ReadinessCheck } from '../lib/readiness';
import { resendUnprocessedUpdate, temporalRetryScope } from '../adapters/temporal-retry';

export type { ReadinessCheck } from '../lib/readiness';
export type { TeeTokenClaims, TeeTokenVerifier } from '../adapters/tee-jwt';

export interface CapturedMail {
  to: string;
  subject: string;
  text: string;
  received_at: string;
}

/** Everything the API needs; built by api/main.ts, the stack runner or a test. */
export interface ApiDeps {
  config: Config;
  secrets: BrokerSecrets;
  db: Db;
  temporal: Client;
  /** Dev profile only: the SES stand-in's captured mail, served at GET /_dev/mail. */
  devMailbox?: { mailTo(address: string): CapturedMail[] };
  /** Extra parts for /readyz beyond database, Temporal and keys. */
  readiness?: Record<string, ReadinessCheck>;
  /** Verifies Heima TEE RS256 JWTs (docs/contracts.md §2); absent when no TEE key is configured. */
  teeVerifier?: TeeTokenVerifier;
  /** Milliseconds since the epoch; tests may shift it. */
  now?: () => number;
  /**
   * `temporal` is built on the NativeConnection of a worker polling BROKER_TASK_QUEUE in this
   * process: workflow starts ask for eager execution (the first task comes back in the start
   * answer instead of through the matching service). Default false: a normal start.
   */
  eagerWorkflowStart?: boolean;
  /** The OIDC issuer keyset served at /.well-known/jwks.json; default: OidcKeyStore.fromConfig(config). */
  oidcKeys?: OidcKeyStore;
}

export interface AuthContext {
  /** Which kind of bearer: a broker session or a TEE access JWT. */
  kind: 'session' | 'tee';
  omniAccount: string;
  /** Session id (broker sessions only): what logout revokes. */
  jti?: string;
  /** Keyed digest of a TEE access token (TEE bearers only): what logout records as revoked. */
  teeTokenDigest?: string;
  /** Unix seconds. */
  expiresAt: number;
  /** Login method of a broker session. */
  method?: string;
  /** The EVM address of a wallet-login session. */
  wallet?: string;
}

declare module 'fastify' {
  interface FastifyInstance {
    deps: ApiDeps;
    /** preHandler that requires a valid bearer and sets request.auth. */
    requireAuth: (request: FastifyRequest) => Promise<void>;
    /** Every part /readyz reports on, by name. */
    readinessChecks: Map<string, ReadinessCheck>;
    /** Adds a /readyz part (a name already present is kept: deps given by the caller win). */
    addReadinessCheck: (name: string, check: ReadinessCheck) => void;
    /** Awaits a Temporal call under the flow deadline and maps its failures to wire errors (api/plugins/flow-deadline.ts). */
    driveFlow: <T>(call: () => Promise<T>, notFound?: BrokerError) => Promise<T>;
  }
  interface FastifyRequest {
    auth?: AuthContext;
  }
}

/** How long a flow call waits before it checks the database and Temporal (and again each time after). */
export const FLOW_PROBE_EVERY_MS = 700;

export type CheckResult = { ok: boolean; detail?: string };

/** Runs one check; a check that has not answered within timeoutMs is down ("no answer within …"). */
export async function runCheck(check: ReadinessCheck, timeoutMs: number): Promise<CheckResult> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      check(),
      new Promise<CheckResult>((resolve) => {
        timer = setTimeout(() => resolve({ ok: false, detail: `no answer within ${timeoutMs} ms` }), timeoutMs);
      }),
    ]);
  } catch (e) {
    return { ok: false, detail: (e as Error).message };
  } finally {
    clearTimeout(timer);
  }
}

/** The `database` and `temporal` parts: one round trip each, the Temporal one under a gRPC deadline of timeoutMs. */
export function dependencyChecks(
  deps: { db: Db; temporal: Client },
  timeoutMs: number,
  temporalDetail?: string,
): Record<'database' | 'temporal', ReadinessCheck> {
  return {
    database: async () => {
      await pingDb(deps.db);
      return { ok: true };
    },
    temporal: async () => {
      await deps.temporal.withDeadline(Date.now() + timeoutMs, () => deps.temporal.workflowService.getSystemInfo({}));
      return { ok: true, detail: temporalDetail };
    },
  };
}

export interface FlowDeadline {
  temporal: Client;
  /** Checks the database and Temporal; answers what is down ("database: no answer within 800 ms"), or undefined. */
  probe: () => Promise<string | undefined>;
  /** The longest wait, even while both answer. */
  deadlineMs: number;
  probeEveryMs?: number;
  /** Told why the call was given up (the part and its detail: for the operators' log, not the caller). */
  onGiveUp?: (why: string) => void;
}

/**
 * A probe over the given checks: the first part that is down, named. Every waiting call of the
 * process shares one probe: a probe in flight, or one that finished less than `reuseMs` ago, is
 * answered to every caller, so a hundred slow calls cost one `SELECT 1` and one Temporal round trip
 * per interval instead of a hundred of each (which, on a busy but healthy system, could themselves
 * exhaust the pool and read as "down").
 */
export function dependencyProbe(
  checks: Record<string, ReadinessCheck>,
  timeoutMs: number,
  reuseMs = FLOW_PROBE_EVERY_MS / 2,
  now: () => number = Date.now,
): () => Promise<string | undefined> {
  let shared: { result: Promise<string | undefined>; settledAt?: number } | undefined;
  const run = async () => {
    const entries = Object.entries(checks);
    const results = await Promise.all(entries.map(([, check]) => runCheck(check, timeoutMs)));
    const i = results.findIndex((r) => !r.ok);
    return i < 0 ? undefined : `${entries[i]?.[0]}: ${results[i]?.detail ?? 'down'}`;
  };
  return () => {
    if (shared && (shared.settledAt === undefined || now() - shared.settledAt < reuseMs)) return shared.result;
    const current: { result: Promise<string | undefined>; settledAt?: number } = { result: run() };
    void current.result.finally(() => {
      current.settledAt = now();
    });
    shared = current;
    return current.result;
  };
}

/**
 * Runs a Temporal client call (an Update, a start and its result) under an abort signal. It is
 * aborted, and the caller gets 503 `unavailable`, when a probe run after each probeEveryMs of
 * waiting finds the database or Temporal not answering, or at deadlineMs. A slow flow on healthy
 * dependencies keeps its time; a hung dependency costs the caller about probeEveryMs + the probe's
 * timeout. What the flow does after the caller gave up stays the flow's: a mint still audits
 * before it mints, and its result, sealed to this request's key, is never handed out.
 */
export async function withFlowDeadline<T>(d: FlowDeadline, call: () => Promise<T>): Promise<T> {
  const ctrl = new AbortController();
  let reason: BrokerError | undefined;
  const aborted = new Promise<never>((_resolve, reject) => ctrl.signal.addEventListener('abort', () => reject(reason ?? new Error('aborted'))));
  aborted.catch(() => undefined);
  const retry = temporalRetryScope(Date.now() + d.deadlineMs, ctrl.signal);
  const giveUp = (e: BrokerError, why: string) => {
    if (reason) return;
    reason = e;
    d.onGiveUp?.(why);
    ctrl.abort(e);
  };
  const deadline = setTimeout(
    () => giveUp(unavailable('the broker did not finish this request in time; retry shortly'), `flow deadline of ${d.deadlineMs} ms`),
    d.deadlineMs,
  );
  const every = d.probeEveryMs ?? FLOW_PROBE_EVERY_MS;
  let probing = false;
  const probes = setInterval(() => {
    if (probing) return;
    probing = true;
    void d
      .probe()
      .then((down) => {
        if (down && !retry.covers(down)) giveUp(unavailable('a service the broker depends on is not answering; retry shortly'), down);
      })
      .finally(() => {
        probing = false;
      });
  }, every);
  try {
    return await Promise.race([d.temporal.withAbortSignal(ctrl.signal, () => retry.run(() => resendUnprocessedUpdate(call))), aborted]);
  } catch (e) {
    throw reason ?? e;
  } finally {
    clearTimeout(deadline);
    clearInterval(probes);
  }
}
