/**
 * What the adversarial tests assert after every refusal: the answer (status, error kind, a clear
 * message, no stack trace), that no table changed (row contents, not only counts, so an UPDATE a
 * refusal should not have made shows too), and that no workflow was started.
 */
import assert from 'node:assert/strict';
import type { Client } from '@temporalio/client';
import type { Queryable } from '../db/pool';

/** Every table of the schema (db/migrations). */
export const ALL_TABLES = ['users', 'wallets', 'grants', 'used_signatures', 'sessions', 'audit_log', 'tee_logins', 'tee_wallet_requests'] as const;

export type DbSnapshot = Record<string, { rows: number; digest: string }>;

/** Row count and a digest of every row's text form, per table. */
export async function dbSnapshot(db: Queryable): Promise<DbSnapshot> {
  const parts = ALL_TABLES.map((t) => `SELECT '${t}' AS t, count(*)::int AS rows, md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) AS digest FROM ${t} x`);
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
