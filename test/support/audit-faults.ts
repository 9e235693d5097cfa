/**
 * Audit storage failing on purpose: INSERTs of audit rows with one event raise, for the duration of
 * `fn` (a superuser's trigger on audit_log), so a test sees what a flow does when its audit row
 * cannot be written.
 */
import type { Db } from '../../db/pool';

export async function withFailingAuditEvent<T>(db: Db, event: string, fn: () => Promise<T>): Promise<T> {
  await db.query(`CREATE OR REPLACE FUNCTION test_refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'audit storage is unavailable'; END; $$`);
  await db.query(`CREATE TRIGGER test_refuse_audit BEFORE INSERT ON audit_log FOR EACH ROW WHEN (NEW.event = '${event}') EXECUTE FUNCTION test_refuse_audit()`);
  try {
    return await fn();
  } finally {
    await db.query('DROP TRIGGER test_refuse_audit ON audit_log');
  }
}
