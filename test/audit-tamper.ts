import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AUDIT_COLUMNS, type AuditRow } from '../db/audit-query';
import type { Queryable } from '../db/pool';
import { auditRowHash } from '../lib/audit-chain';

/** Tampering with the audit log as an insider with database access would, and the verify command run against it. */

const ROOT = join(__dirname, '..');
const run = promisify(execFile);

/** Runs fn with the append-only trigger off (as the database superuser can). */
export async function withAppendOnlyOff(db: Queryable, fn: () => Promise<void>): Promise<void> {
  await db.query('ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only');
  try {
    await fn();
  } finally {
    await db.query('ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only');
  }
}

/** Recomputes every prev_hash and hash of one shard's chain, as a forger hiding an edit would. */
export async function rechainShard(db: Queryable, shard: number): Promise<void> {
  const genesis = (await db.query<{ genesis_hash: string }>('SELECT genesis_hash FROM audit_settings')).rows[0]?.genesis_hash ?? '';
  const rows = (await db.query<AuditRow>(`SELECT ${AUDIT_COLUMNS} FROM audit_log WHERE shard = $1 ORDER BY audit_log.shard_seq`, [shard])).rows;
  let prev = genesis;
  await withAppendOnlyOff(db, async () => {
    for (const row of rows) {
      const hash = auditRowHash({ ...row, prev_hash: prev });
      await db.query('UPDATE audit_log SET prev_hash = $1, hash = $2 WHERE seq = $3', [prev, hash, row.seq]);
      prev = hash;
    }
  });
}

/** `npm run audit:verify` (the script itself) with the given environment and arguments; stdout and stderr together. */
export async function auditVerify(env: NodeJS.ProcessEnv, args: string[]): Promise<{ code: number; out: string }> {
  try {
    const r = await run(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts/audit-verify.ts'), ...args], { cwd: ROOT, env });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, out: err.stdout + err.stderr };
  }
}
