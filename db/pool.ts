import pg from 'pg';

export type Db = pg.Pool;
export type Queryable = pg.Pool | pg.PoolClient;

export interface PoolOptions {
  /**
   * Client-side deadline (ms) for one statement (pg `query_timeout`) and for getting a connection
   * (`connectionTimeoutMillis`): a server that accepts and never answers fails the call instead of
   * holding it. Unset: 10 s to connect, no statement deadline (the worker, migrations).
   */
  queryTimeoutMs?: number;
}

export function createPool(url: string, max: number, opts: PoolOptions = {}): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: opts.queryTimeoutMs ?? 10_000,
    ...(opts.queryTimeoutMs !== undefined ? { query_timeout: opts.queryTimeoutMs } : {}),
  });
  // An idle client erroring (server restart) must not crash the process; the next query reconnects.
  pool.on('error', () => undefined);
  return pool;
}

/** What pg throws when the server did not answer in time or the connection broke (pg and pg-pool messages; pg sets no code). */
const UNREACHABLE_MESSAGES = new Set([
  'Query read timeout',
  'timeout exceeded when trying to connect',
  'Connection terminated due to connection timeout',
  'Connection terminated unexpectedly',
]);

/** True when `e` says the database is unreachable or not answering, not that a statement was wrong. */
export function isDbUnreachable(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  const code = (e as { code?: unknown }).code;
  return UNREACHABLE_MESSAGES.has(e.message) || code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'ETIMEDOUT';
}

/** One round trip: the database answers (readiness checks). */
export async function pingDb(q: Queryable): Promise<void> {
  await q.query('SELECT 1');
}

/**
 * Runs fn in a transaction on one client; commits on success, rolls back on any error. With
 * `begun`, fn's first statement carries the BEGIN itself; with `commits`, fn's last message ends
 * with the COMMIT (each saving a round trip on a hot path).
 */
export async function withTransaction<T>(
  pool: pg.Pool,
  fn: (client: pg.PoolClient) => Promise<T>,
  opts: { begun?: boolean; commits?: boolean } = {},
): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    if (!opts.begun) await client.query('BEGIN');
    const result = await fn(client);
    if (!opts.commits) await client.query('COMMIT');
    return result;
  } catch (e) {
    // A statement that timed out is still the connection's active one: the client goes, not back to the pool.
    broken = isDbUnreachable(e);
    if (!broken) await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  } finally {
    client.release(broken);
  }
}
