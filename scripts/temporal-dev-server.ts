/**
 * Runs `temporal server start-dev` (the Temporal CLI's single-process dev server) as a child process, and
 * registers the broker's custom search attributes, on it or on an existing cluster.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { randomInt } from 'node:crypto';
import { createConnection, createServer } from 'node:net';
import { dirname, resolve } from 'node:path';
import { Connection } from '@temporalio/client';
import { SEARCH_ATTRIBUTE_NAMES } from '../lib/search-attributes';
import { ensureSearchAttributes, missingSearchAttributes, SEARCH_ATTRIBUTES } from '../adapters/temporal-namespace';

export { ensureSearchAttributes, SEARCH_ATTRIBUTES };

const HOST = '127.0.0.1';
const READY_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 5_000;
const STDERR_TAIL_LINES = 40;
/**
 * Dynamic config of the dev server (docs/performance.md, "The latency path to the engine"):
 * - one partition per task queue: a single-process server gains nothing from four (the default), and a
 *   poller and a task meet without forwarding between partitions;
 * - the history service reads new transfer tasks (the "dispatch this workflow task to matching" step of
 *   every start, signal and update) at most `transferProcessorMaxPollRPS` times a second per shard; the
 *   default 20 on the dev server's single shard made every workflow task wait for the next read, up to
 *   50 ms. Reads are batched, so a higher cap costs a read per burst, not per task.
 */
export const DEV_DYNAMIC_CONFIG: Readonly<Record<string, number>> = Object.freeze({
  'matching.numTaskqueueReadPartitions': 1,
  'matching.numTaskqueueWritePartitions': 1,
  'history.transferProcessorMaxPollRPS': 1000,
});
/** The dev server's SQLite file settings, see TemporalDevServerOptions.sqlitePragmas. */
export const DEV_SQLITE_PRAGMAS: Readonly<Record<string, string>> = Object.freeze({ journal_mode: 'wal', synchronous: 'normal' });

export interface TemporalDevServerOptions {
  /** Path of the `temporal` binary, see findOrInstallTemporalCli in ./temporal-cli. */
  cliPath: string;
  /** SQLite file persisting the server's state (its directory is created); omitted = in-memory. */
  dbFile?: string;
  /**
   * SQLite pragmas for a `dbFile`. Default: write-ahead log with `synchronous=normal` (DEV_SQLITE_PRAGMAS): a
   * process crash loses nothing, an OS crash may lose the last commits, and a workflow step no longer waits on
   * several fsyncs of a rollback journal. `{}` keeps SQLite's own defaults.
   */
  sqlitePragmas?: Readonly<Record<string, string>>;
  /** Frontend gRPC port; omitted or 0 = a free port. */
  port?: number;
  /** Web UI port; omitted or 0 = a free port; false = no UI (`--headless`). */
  uiPort?: number | false;
  /** The Web UI's remote codec endpoint (`--ui-codec-endpoint`): the UI decodes payloads through it. */
  uiCodecEndpoint?: string;
  /** Namespace created at start (the `default` namespace always exists). Default 'default'. */
  namespace?: string;
  /** Receives the server's output lines, prefixed with `[temporal]`. Default: discarded. */
  log?: (line: string) => void;
  /** How long to wait for the server to be ready. Default 60 s. */
  readyTimeoutMs?: number;
}

export interface TemporalDevServer {
  /** Frontend gRPC address, `host:port`. */
  address: string;
  /** Web UI, unless headless. */
  uiUrl?: string;
  namespace: string;
  /** Pid of the `temporal` process. */
  pid: number;
  /** SIGTERM, then SIGKILL after 5 s; resolves once the process has exited. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts `temporal server start-dev` on 127.0.0.1 and resolves once its frontend answers and the namespace lists
 * the four broker search attributes as Keyword (registering them if a persisted DB file predates them: the CLI
 * only applies `--search-attribute` when it creates a namespace).
 * Rejects after `readyTimeoutMs` or when the process exits early, with the tail of its stderr.
 * The child is killed when this process exits, or on SIGINT/SIGTERM/SIGHUP (then re-raised if nothing else
 * handles them); it can outlive a parent killed with SIGKILL.
 */
export async function startTemporalDevServer(opts: TemporalDevServerOptions): Promise<TemporalDevServer> {
  const namespace = opts.namespace ?? 'default';
  const log = opts.log ?? (() => undefined);
  const port = opts.port || (await findFreePort());
  const uiPort = opts.uiPort === false ? undefined : opts.uiPort || (await findFreePort());
  const dbFile = opts.dbFile === undefined ? undefined : resolve(opts.dbFile);
  if (dbFile) await mkdir(dirname(dbFile), { recursive: true });

  const args = ['server', 'start-dev', '--ip', HOST, '--port', String(port), '--log-level', 'warn'];
  args.push(...(uiPort === undefined ? ['--headless'] : ['--ui-port', String(uiPort)]));
  if (uiPort !== undefined && opts.uiCodecEndpoint) args.push('--ui-codec-endpoint', opts.uiCodecEndpoint);
  if (dbFile) {
    args.push('--db-filename', dbFile);
    for (const [name, value] of Object.entries(opts.sqlitePragmas ?? DEV_SQLITE_PRAGMAS)) args.push('--sqlite-pragma', `${name}=${value}`);
  }
  if (namespace !== 'default') args.push('--namespace', namespace);
  for (const name of SEARCH_ATTRIBUTE_NAMES) args.push('--search-attribute', `${name}=${SEARCH_ATTRIBUTES[name]}`);
  for (const [key, value] of Object.entries(DEV_DYNAMIC_CONFIG)) args.push('--dynamic-config-value', `${key}=${value}`);

  const child = spawn(opts.cliPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const address = `${HOST}:${port}`;
  const stderrTail: string[] = [];
  const exited = new Promise<string>((done) => {
    child.once('error', (err) => done(`could not be started: ${err.message}`));
    child.once('exit', (code, signal) => done(signal ? `was killed by ${signal}` : `exited with code ${code}`));
  });
  let exitReason: string | undefined;
  void exited.then((reason) => {
    exitReason = reason;
    untrack(child);
  });
  track(child);
  // Once stop() is asked for, the server's shutdown chatter (dial errors, cancelled polls) is not forwarded.
  let stopping = false;
  forwardLines(child.stdout, (line) => {
    if (!stopping) log(`[temporal] ${line}`);
  });
  forwardLines(child.stderr, (line) => {
    stderrTail.push(line);
    if (stderrTail.length > STDERR_TAIL_LINES) stderrTail.shift();
    if (!stopping) log(`[temporal] ${line}`);
  });

  const stop = once(async () => {
    stopping = true;
    if (exitReason !== undefined) return;
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
    try {
      await exited;
    } finally {
      clearTimeout(killer);
    }
  });

  const failure = (what: string): Error => {
    const tail = stderrTail.length ? `\nLast lines of its stderr:\n${stderrTail.join('\n')}` : '\n(no stderr output)';
    return new Error(`Temporal dev server (${opts.cliPath} ${args.join(' ')}) ${what}${tail}`);
  };

  try {
    await waitUntilReady(address, namespace, opts.readyTimeoutMs ?? READY_TIMEOUT_MS, () => exitReason, failure, log);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    address,
    uiUrl: uiPort === undefined ? undefined : `http://${HOST}:${uiPort}`,
    namespace,
    pid: child.pid ?? -1,
    stop,
  };
}

async function waitUntilReady(
  address: string,
  namespace: string,
  timeoutMs: number,
  exitReason: () => string | undefined,
  failure: (what: string) => Error,
  log: (line: string) => void,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const [host = HOST, portText = ''] = address.split(':');
  const port = Number(portText);
  let lastError = 'the port never accepted a connection';
  let registered = false;
  const check = (): void => {
    const reason = exitReason();
    if (reason !== undefined) throw failure(`${reason} before it was ready (last check: ${lastError})`);
    if (Date.now() > deadline) throw failure(`was not ready within ${timeoutMs / 1000} s (last check: ${lastError})`);
  };

  while (!(await canConnect(host, port))) {
    check();
    await sleep(50);
  }
  let connection: Connection | undefined;
  try {
    for (;;) {
      check();
      try {
        connection ??= await Connection.connect({ address, connectTimeout: '2s' });
        const conn = connection;
        const missing = await conn.withDeadline(Date.now() + 3_000, () => missingSearchAttributes(conn, namespace));
        if (missing.length === 0) return;
        lastError = `search attributes not registered in namespace ${namespace}: ${missing.join(', ')}`;
        if (!registered) {
          // A DB file created before these attributes existed: the CLI does not add them to existing namespaces.
          log(`[temporal-dev-server] registering ${missing.join(', ')} in existing namespace ${namespace}`);
          await conn.withDeadline(Date.now() + 10_000, () => ensureSearchAttributes(conn, namespace));
          registered = true;
          continue;
        }
      } catch (err) {
        lastError = err instanceof Error ? err.message : String(err);
      }
      await sleep(100);
    }
  } finally {
    await connection?.close().catch(() => undefined);
  }
}

/**
 * A currently free TCP port on `host`, chosen below the kernel's ephemeral range. A port the kernel hands out
 * for port 0 (what the Temporal dev server does for its internal services) or as the local end of an outgoing
 * connection comes from that range, so a port picked there can be taken again between this check and the
 * caller's listen; below it only another caller of this function competes, on a random pick among thousands.
 */
export async function findFreePort(host = HOST): Promise<number> {
  const [low, high] = [20_000, ephemeralRangeStart() - 1];
  for (let attempt = 0; high > low && attempt < 64; attempt++) {
    const port = low + randomInt(high - low + 1);
    if (await canBind(host, port)) return port;
  }
  return bindPort(host, 0);
}

function ephemeralRangeStart(): number {
  try {
    const start = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(start) && start > 1024 ? start : 32_768;
  } catch {
    return 32_768;
  }
}

function canBind(host: string, port: number): Promise<boolean> {
  return bindPort(host, port).then(
    () => true,
    () => false,
  );
}

/** Binds `port` on `host` (0 = any), closes it and resolves with the port that was bound. */
function bindPort(host: string, port: number): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.unref();
    server.once('error', fail);
    server.listen(port, host, () => {
      const addr = server.address();
      const bound = typeof addr === 'object' && addr ? addr.port : 0;
      server.close(() => (bound ? done(bound) : fail(new Error(`Could not read the port bound on ${host}`))));
    });
  });
}

function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = createConnection({ host, port });
    socket.setTimeout(1_000);
    socket.once('connect', () => {
      socket.destroy();
      done(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      done(false);
    });
    socket.once('error', () => done(false));
  });
}

function forwardLines(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let partial = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    const lines = (partial + chunk).split(/\r?\n/);
    partial = lines.pop() ?? '';
    for (const line of lines) if (line.trim()) onLine(line);
  });
  stream.on('end', () => {
    if (partial.trim()) onLine(partial);
  });
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  return () => (running ??= fn());
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// --- children die with this process -------------------------------------------------------------------------------

const children = new Set<ChildProcess>();
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

function killChildren(): void {
  for (const child of children) child.kill('SIGTERM');
}

function onSignal(signal: NodeJS.Signals): void {
  killChildren();
  // Nobody else handles this signal: restore the default behaviour (terminate) that our listener suppressed.
  if (process.listenerCount(signal) === 1) {
    removeProcessHooks();
    process.kill(process.pid, signal);
  }
}

function installProcessHooks(): void {
  process.on('exit', killChildren);
  for (const signal of SIGNALS) process.on(signal, onSignal);
}

function removeProcessHooks(): void {
  process.off('exit', killChildren);
  for (const signal of SIGNALS) process.off(signal, onSignal);
}

function track(child: ChildProcess): void {
  if (children.size === 0) installProcessHooks();
  children.add(child);
}

function untrack(child: ChildProcess): void {
  if (children.delete(child) && children.size === 0) removeProcessHooks();
}
