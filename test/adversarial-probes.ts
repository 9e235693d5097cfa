/**
 * What the adversarial tests assert after every refusal: the answer (status, error kind, a clear
 * message, no stack trace), that no table changed (row contents, not only counts, so an UPDATE a
 * refusal should not have made shows too), and that no workflow was started.
 */
import assert from 'node:assert/strict';
import type { Client } from '@temporalio/client';
import type { Queryable } from '../db/pool';
import type { TestStack } from './harness';

/**
 * Every table of the schema (db/migrations), but schema_migrations (the migrator's own record).
 * test/schema-tables.test.ts holds this list to the migrated database's tables.
 */
export const ALL_TABLES = [
  'users',
  'wallets',
  'grants',
  'used_signatures',
  'sessions',
  'audit_log',
  'tee_logins',
  'tee_wallet_requests',
  'revoked_tee_tokens',
  'email_sends',
  'audit_heads',
  'audit_settings',
  'audit_head_shards',
  'refresh_tokens',
  'agent_epochs',
  'kill_switch_entries',
  'approvals',
  'passkeys',
  'refresh_family_revocations',
] as const;

export type TableName = (typeof ALL_TABLES)[number];

/**
 * How a row is compared, where not as its whole text form: the columns left out are written by a
 * flow on its own schedule, whatever the request under test does. approvals.notified_at is the
 * approval flow's record of its notice to the holder, set when the mail service answers (see
 * `unchanged` in test/approval-client.ts).
 */
export const ROW_FORMS: Partial<Record<TableName, string>> = {
  approvals: `(to_jsonb(x) - 'notified_at')::text`,
};

export type DbSnapshot = Record<string, { rows: number; digest: string }>;

/** Row count and a digest of every row's text form, per table. */
export async function dbSnapshot(db: Queryable): Promise<DbSnapshot> {
  const parts = ALL_TABLES.map((t) => {
    const row = ROW_FORMS[t] ?? 'x::text';
    return `SELECT '${t}' AS t, count(*)::int AS rows, md5(coalesce(string_agg(${row}, '|' ORDER BY ${row}), '')) AS digest FROM ${t} x`;
  });
  const r = await db.query<{ t: string; rows: number; digest: string }>(parts.join(' UNION ALL '));
  return Object.fromEntries(r.rows.map((row) => [row.t, { rows: row.rows, digest: row.digest }]));
}

/** The tables whose rows differ between two snapshots, with their counts. */
export function changedTables(before: DbSnapshot, after: DbSnapshot): Record<string, string> {
  const out: Record<string, string> = {};
  for (const t of ALL_TABLES) {
    if (before[t]?.digest !== after[t]?.digest) out[t] = `${before[t]?.rows ?? '?'} → ${after[t]?.rows ?? '?'} rows`;
  }
  return out;
}

export async function assertUnchanged(db: Queryable, before: DbSnapshot, what: string): Promise<void> {
  assert.deepEqual(changedTables(before, await dbSnapshot(db)), {}, `${what}: the database changed`);
}

export interface HttpAnswer {
  status: number;
  body: unknown;
  text: string;
}

/** A refusal as the contract renders it: the status, {"error": kind, "message"}, nothing leaked. */
export function assertRefused(res: HttpAnswer, status: number, error: string, message?: RegExp, what = ''): void {
  const label = `${what}${what ? ': ' : ''}${res.text.slice(0, 300)}`;
  assert.equal(res.status, status, label);
  const body = res.body as { error?: unknown; message?: unknown };
  assert.equal(body.error, error, label);
  assert.equal(typeof body.message, 'string', label);
  if (message) assert.match(body.message as string, message, label);
  assert.ok(!res.text.includes('    at '), `${label}: a stack trace in the answer`);
}

const STARTING_METHODS = ['start', 'execute', 'signalWithStart', 'executeUpdateWithStart', 'startUpdateWithStart'] as const;

export interface WorkflowStartSpy {
  /** Workflow starts requested through the client since the spy was installed. */
  count(): number;
  restore(): void;
}

/**
 * Counts the workflow starts the API asks of its (real) Temporal client: every way the
 * WorkflowClient starts a workflow, still calling through. The API and the tests share the client.
 */
export function spyWorkflowStarts(client: Client): WorkflowStartSpy {
  const wf = client.workflow as unknown as Record<string, (...args: unknown[]) => unknown>;
  let n = 0;
  for (const name of STARTING_METHODS) {
    const original = wf[name];
    assert.equal(typeof original, 'function', `WorkflowClient.${name}`);
    wf[name] = function (this: unknown, ...args: unknown[]) {
      n += 1;
      return (original as (...a: unknown[]) => unknown).apply(this, args);
    };
  }
  return {
    count: () => n,
    restore: () => {
      for (const name of STARTING_METHODS) delete wf[name];
    },
  };
}

/** One request that must be refused, and how. */
export interface RefusalCase {
  name: string;
  method?: string;
  path?: string;
  token?: string;
  body?: unknown;
  headers?: Record<string, string>;
  status: number;
  error: string;
  message?: RegExp;
}

export interface RefusalContext {
  stack: Pick<TestStack, 'db' | 'request'>;
  starts: WorkflowStartSpy;
  /** Used when a case names no method / path. */
  defaults?: { method?: string; path?: string };
  /** Extra checks on each refused answer (e.g. no credential in it). */
  eachAnswer?: (res: HttpAnswer, c: RefusalCase) => void;
  /** Other side effects that must not move (e.g. calls that reached STS), read before and after. */
  counters?: Record<string, () => number>;
}

/** Sends each case and asserts its refusal; afterwards no row changed, no workflow started, no counter moved. */
export async function expectAllRefused(ctx: RefusalContext, cases: RefusalCase[]): Promise<void> {
  const before = await dbSnapshot(ctx.stack.db);
  const started = ctx.starts.count();
  const counters = Object.entries(ctx.counters ?? {}).map(([name, read]) => ({ name, read, at: read() }));
  for (const c of cases) {
    const method = c.method ?? ctx.defaults?.method ?? 'POST';
    const path = c.path ?? ctx.defaults?.path ?? '/';
    const res = await ctx.stack.request(method, path, { token: c.token, body: c.body, headers: c.headers });
    assertRefused(res, c.status, c.error, c.message, `${method} ${path} ${c.name}`);
    ctx.eachAnswer?.(res, c);
  }
  await assertUnchanged(ctx.stack.db, before, 'after the refusals');
  assert.equal(ctx.starts.count(), started, 'a refused request started a workflow');
  for (const k of counters) assert.equal(k.read(), k.at, `a refused request moved ${k.name}`);
}
