/**
 * How the production processes (`npm run api`, `npm run worker`) fail at start-up: one line naming
 * the variable or dependency and the fix, no stack trace unless LOG_LEVEL=debug. A start-up step
 * that talks to a dependency runs under `startupStep`, which turns what the driver threw (a pg
 * error, a gRPC transport error, EADDRINUSE) into that line.
 */
import { AgentKeysError } from './errors';

/** A start-up failure whose message is already the one line an operator needs. */
export class StartupError extends AgentKeysError {
  override readonly code: string = 'ERR_STARTUP';
  override name = 'StartupError';
}

/** Connection-string parameters whose values say nothing secret; every other one is masked. */
const PLAIN_URL_PARAMS = new Set(['sslmode', 'application_name', 'connect_timeout', 'host', 'port', 'dbname', 'user', 'target_session_attrs']);

/**
 * A URL with its password replaced by `***` (what a start-up line may show of DATABASE_URL), and
 * every query parameter's value too but for a few plain ones: pg takes the password as
 * `?password=` as well (and `sslpassword`, `options`, …).
 */
export function maskUrlPassword(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    for (const key of new Set(u.searchParams.keys())) if (!PLAIN_URL_PARAMS.has(key.toLowerCase())) u.searchParams.set(key, '***');
    return u.toString();
  } catch {
    return '(unparsable URL)';
  }
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0]?.trim() ?? '';
}

function errCode(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** What a Postgres connection or statement failure at start-up means, and its fix. */
export function databaseStartupLine(e: unknown, databaseUrl: string): string {
  const shown = maskUrlPassword(databaseUrl);
  let host = '';
  let database = '';
  let user = '';
  try {
    const u = new URL(databaseUrl);
    host = u.hostname;
    database = decodeURIComponent(u.pathname.replace(/^\//, ''));
    user = decodeURIComponent(u.username);
  } catch {
    // config validation already refused an unparsable URL
  }
  const code = errCode(e);
  const where = `Postgres at DATABASE_URL=${shown}`;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `${where}: host ${host} does not resolve; fix the host in DATABASE_URL`;
  if (code === 'ECONNREFUSED') return `${where} refused the connection; start Postgres or fix the host/port in DATABASE_URL`;
  if (code === 'ETIMEDOUT' || code === 'EHOSTUNREACH' || /timeout|terminated/i.test(firstLine(e)))
    return `${where} is not answering (${firstLine(e)}); check that Postgres is up and reachable, or fix DATABASE_URL`;
  if (code === '28P01' || code === '28000') return `${where} refused user ${user || '(none)'}: ${firstLine(e)}; fix the user/password in DATABASE_URL`;
  if (code === '3D000') return `${where}: database "${database}" does not exist; create it (createdb ${database}) or fix DATABASE_URL`;
  return `${where}: ${firstLine(e)}${code ? ` (${code})` : ''}`;
}

/** What a Temporal connection failure at start-up means, and its fix. */
export function temporalStartupLine(e: unknown, address: string, namespace: string): string {
  const msg = firstLine(e);
  const grpc = (e as { code?: unknown } | undefined)?.code;
  if (grpc === 16 || /unauthenticated|api key/i.test(msg))
    return `Temporal at TEMPORAL_ADDRESS=${address} refused the credentials (${msg}); check TEMPORAL_API_KEY / TEMPORAL_TLS`;
  if (grpc === 7)
    return `Temporal at TEMPORAL_ADDRESS=${address} denied access to namespace ${namespace} (${msg}); check TEMPORAL_API_KEY and TEMPORAL_NAMESPACE`;
  return `Temporal at TEMPORAL_ADDRESS=${address} is not answering (${msg}); start it (e.g. \`temporal server start-dev\`) or fix TEMPORAL_ADDRESS`;
}

/**
 * A listener that could not bind: which variable holds the port (found by the error's port among
 * `ports`, e.g. { PORT: 8091, BROKER_OPS_PORT: 9464 }), and the fix.
 */
export function listenStartupLine(e: unknown, host: string, ports: Record<string, number | undefined>): string | undefined {
  const code = errCode(e);
  const port = (e as { port?: unknown } | undefined)?.port;
  const [variable, value] = Object.entries(ports).find(([, p]) => p !== undefined && p === port) ?? Object.entries(ports)[0] ?? ['PORT', undefined];
  if (code === 'EADDRINUSE') return `${variable}=${value} is already in use on ${host}; stop what listens there or set ${variable} to a free port`;
  if (code === 'EACCES') return `${variable}=${value} on ${host} needs privileges this process does not have; set ${variable} to a port above 1023`;
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') return `cannot listen on ${host}: not an address of this machine; fix HOST (or BROKER_OPS_HOST)`;
  return undefined;
}

/**
 * Runs one start-up step against a dependency; any error it throws (other than an AgentKeysError,
 * which already speaks for itself) becomes a StartupError with `describe`'s line; an error `describe`
 * has no line for (undefined) is rethrown as it is.
 */
export async function startupStep<T>(fn: () => Promise<T>, describe: (e: unknown) => string | undefined): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    const line = e instanceof AgentKeysError ? undefined : describe(e);
    if (line === undefined) throw e;
    throw new StartupError(line, { cause: e });
  }
}

/**
 * The start-up failure as the operator reads it: `<process>: <one line>`. With LOG_LEVEL=debug the
 * stack (and its causes) follows; otherwise an unexpected error is one line too, with that hint.
 */
export function startupFailureText(processName: string, e: unknown, logLevel: string | undefined): string {
  const known = e instanceof AgentKeysError;
  const line = known ? (e as Error).message.replace(/\s*\n\s*/g, '; ') : firstLine(e);
  const head = `${processName} could not start: ${line}`;
  if (logLevel === 'debug' || logLevel === 'trace') {
    const stack: string[] = [];
    for (let cur: unknown = e; cur instanceof Error && stack.length < 5; cur = cur.cause) stack.push(cur.stack ?? cur.message);
    return `${head}\n${stack.join('\nCaused by: ')}`;
  }
  return known ? head : `${head} (LOG_LEVEL=debug prints the stack trace)`;
}
