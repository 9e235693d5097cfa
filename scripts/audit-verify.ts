/**
 * `npm run audit:verify`: walks the whole audit log (DATABASE_URL) in seq order, recomputing each
 * row's hash and its link to the previous row. Exit 0 and a summary when the chain is intact;
 * exit 1 naming the first broken row otherwise (exit 2 when the check itself could not run).
 */
import { verifyAuditChain } from '../db/audit-query';
import { createPool } from '../db/pool';
import { loadConfig } from '../lib/config';

async function main(): Promise<number> {
  const config = loadConfig(process.env);
  if (!config.DATABASE_URL) {
    console.error('audit:verify needs DATABASE_URL (the database whose audit_log to check)');
    return 2;
  }
  const db = createPool(config.DATABASE_URL, 1);
  try {
    const verdict = await verifyAuditChain(db);
    if (verdict.ok) {
      console.log(`audit chain intact: ${verdict.rows} rows, head seq ${verdict.headSeq ?? '(none)'} hash ${verdict.headHash}`);
      return 0;
    }
    console.error(`audit chain BROKEN at seq ${verdict.brokenSeq}: ${verdict.reason} (${verdict.rows} rows before it verified)`);
    return 1;
  } finally {
    await db.end();
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`audit:verify could not run: ${(e as Error).message}`);
    process.exit(2);
  },
);
