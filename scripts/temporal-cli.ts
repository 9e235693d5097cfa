/**
 * Locates the Temporal CLI (`temporal`), building it with Go or downloading it through the Temporal SDK
 * when it is not installed yet.
 *
 * Run directly (`npx tsx scripts/temporal-cli.ts`, `npm run temporal:install`) it prints the binary's path.
 */
import { spawn, execFile } from 'node:child_process';
import { constants as fsConstants, readFileSync } from 'node:fs';
import { access, mkdir, open, readFile, readdir, stat, unlink } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** The pinned CLI release. Later tags carry a `replace` directive in go.mod that `go install` refuses. */
export const TEMPORAL_CLI_VERSION = 'v1.5.1';
export const TEMPORAL_CLI_GO_PACKAGE = 'github.com/temporalio/cli/cmd/temporal';
const GO_INSTALL_TARGET = `${TEMPORAL_CLI_GO_PACKAGE}@${TEMPORAL_CLI_VERSION}`;

const EXE = process.platform === 'win32' ? 'temporal.exe' : 'temporal';
const LOCK_FILE = join(tmpdir(), 'agentkeys-temporal-cli-install.lock');
/** A lock older than this is considered abandoned even if its pid is alive (pid reuse). */
const LOCK_STALE_MS = 30 * 60_000;
const LOCK_WAIT_MS = 30 * 60_000;
const GO_INSTALL_TIMEOUT_MS = 30 * 60_000;

export interface FindTemporalCliOptions {
  /** Receives progress lines (defaults to stderr). */
  log?: (line: string) => void;
}

const defaultLog = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

/**
 * Returns the absolute path of an executable `temporal` binary (the Temporal CLI, which embeds the dev server).
 *
 * Search order:
 *  1. `TEMPORAL_CLI_PATH` (when set it must name an existing executable file, otherwise this throws);
 *  2. `temporal` on `PATH`;
 *  3. `$(go env GOBIN)/temporal`, `$(go env GOPATH)/bin/temporal` (every GOPATH entry), `~/go/bin/temporal`;
 *  4. a binary previously fetched by the SDK fallback (step 6) in the cache directory;
 *  5. with `go` on `PATH`: `go install github.com/temporalio/cli/cmd/temporal@v1.5.1` (one time, a few minutes);
 *  6. without Go: the Temporal SDK's own download (`@temporalio/testing`, `cached-download`) into
 *     `$XDG_CACHE_HOME/agentkeys-broker/temporal-cli` (default `~/.cache/...`). The SDK names the downloaded file
 *     deterministically (`temporal-sdk-typescript-<@temporalio/testing version>`), so the result is still a plain
 *     binary path: no sentinel is needed and callers always run the binary themselves.
 * If none of these works it throws an Error explaining how to install the CLI.
 *
 * Steps 5 and 6 hold an exclusive lock file in the OS temp directory, so concurrent callers wait for one
 * installation instead of each running their own.
 */
export async function findOrInstallTemporalCli(opts: FindTemporalCliOptions = {}): Promise<string> {
  const log = opts.log ?? defaultLog;

  const fromEnv = process.env.TEMPORAL_CLI_PATH?.trim();
  if (fromEnv) {
    const candidate = resolve(fromEnv);
    const problem = await executableProblem(candidate);
    if (problem) throw new Error(`TEMPORAL_CLI_PATH=${fromEnv} is not usable: ${problem}`);
    return candidate;
  }

  const found = await findInstalledTemporalCli();
  if (found) return found;

  return withInstallLock(log, async () => {
    // Another process may have finished an installation while we waited for the lock.
    const installed = await findInstalledTemporalCli();
    if (installed) return installed;

    const go = await findOnPath(process.platform === 'win32' ? 'go.exe' : 'go');
    if (go) return goInstall(go, log);

    const sdk = await sdkDownload(log);
    if (sdk.path) return sdk.path;
    throw new Error(installHelp(sdk.error));
  });
}

/** Steps 2–4 of {@link findOrInstallTemporalCli}: an already installed CLI, or undefined. Never installs. */
export async function findInstalledTemporalCli(): Promise<string | undefined> {
  const onPath = await findOnPath(EXE);
  if (onPath) return onPath;
  for (const candidate of await goBinCandidates()) {
    if (!(await executableProblem(candidate))) return candidate;
  }
  const cached = sdkCachedBinary();
  if (cached && !(await executableProblem(cached))) return cached;
  return undefined;
}

function installHelp(cause?: string): string {
  return [
    'The Temporal CLI (`temporal`) was not found and could not be installed automatically.',
    ...(cause ? [`The Temporal SDK download failed: ${cause}`] : []),
    'Install it one of these ways:',
    `  - install Go (https://go.dev/dl/), then run: go install ${GO_INSTALL_TARGET}`,
    '    (the binary lands in $(go env GOPATH)/bin/temporal, which is searched automatically);',
    '  - or download a release from https://github.com/temporalio/cli/releases and put `temporal` on PATH;',
    '  - or set TEMPORAL_CLI_PATH to the absolute path of an existing `temporal` binary;',
    '  - or set TEMPORAL_ADDRESS to use an already running Temporal server instead.',
  ].join('\n');
}

/** Undefined when `file` is an existing executable regular file, else why not. */
async function executableProblem(file: string): Promise<string | undefined> {
  try {
    const s = await stat(file);
    if (!s.isFile()) return 'not a regular file';
  } catch {
    return 'no such file';
  }
  try {
    await access(file, fsConstants.X_OK);
  } catch {
    return 'not executable';
  }
  return undefined;
}

async function findOnPath(name: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir || !isAbsolute(dir)) continue;
    const candidate = join(dir, name);
    if (!(await executableProblem(candidate))) return candidate;
  }
  return undefined;
}

async function goBinCandidates(): Promise<string[]> {
  const dirs: string[] = [];
  const go = await findOnPath(process.platform === 'win32' ? 'go.exe' : 'go');
  if (go) {
    try {
      const { stdout } = await execFileAsync(go, ['env', 'GOBIN', 'GOPATH'], { timeout: 30_000 });
      const [gobin = '', gopath = ''] = stdout.split(/\r?\n/);
      if (gobin.trim()) dirs.push(gobin.trim());
      for (const p of gopath.split(delimiter)) if (p.trim()) dirs.push(join(p.trim(), 'bin'));
    } catch {
      // A broken Go installation must not hide the other candidates.
    }
  }
  if (process.env.GOBIN) dirs.push(process.env.GOBIN);
  for (const p of (process.env.GOPATH ?? '').split(delimiter)) if (p) dirs.push(join(p, 'bin'));
  dirs.push(join(homedir(), 'go', 'bin'));
  return [...new Set(dirs.filter((d) => isAbsolute(d)).map((d) => join(d, EXE)))];
}

export interface GoInstallRun {
  /** 0 on success; otherwise the exit code, the signal, or why go could not be run. */
  code: number | string;
  seconds: number;
  /** The last 30 lines go printed, for the error message. */
  tail: string[];
}

/**
 * Runs `go install <pkg>`, echoing its output through `log` (indented) and, every 20 s while it
 * builds, a line saying it still is; killed after `timeoutMs`. Shared by the CLI build here and the
 * cluster's server and UI builds (scripts/cluster/go-build.ts).
 */
export async function runGoInstall(
  go: string,
  pkg: string,
  opts: { log: (line: string) => void; label: string; env?: NodeJS.ProcessEnv; timeoutMs?: number },
): Promise<GoInstallRun> {
  const started = Date.now();
  const tail: string[] = [];
  const code = await new Promise<number | string>((done) => {
    const child = spawn(go, ['install', pkg], { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ?? process.env });
    const timer = opts.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs) : undefined;
    const heartbeat = setInterval(() => opts.log(`  still building the ${opts.label} (${Math.round((Date.now() - started) / 1000)} s)…`), 20_000);
    const stopTimers = () => {
      clearTimeout(timer);
      clearInterval(heartbeat);
    };
    const onChunk = (chunk: Buffer): void => {
      for (const line of chunk.toString('utf8').split(/\r?\n/)) {
        if (!line.trim()) continue;
        tail.push(line);
        if (tail.length > 30) tail.shift();
        opts.log(`  ${line}`);
      }
    };
    child.stdout.on('data', onChunk);
    child.stderr.on('data', onChunk);
    child.on('error', (err) => {
      stopTimers();
      done(`could not run ${go}: ${err.message}`);
    });
    child.on('close', (exitCode, signal) => {
      stopTimers();
      done(exitCode ?? signal ?? 'unknown');
    });
  });
  return { code, seconds: Math.round((Date.now() - started) / 1000), tail };
}

async function goInstall(go: string, log: (line: string) => void): Promise<string> {
  log(`Building the Temporal CLI ${TEMPORAL_CLI_VERSION} with Go (one time, takes a few minutes)…`);
  const { code, seconds, tail } = await runGoInstall(go, GO_INSTALL_TARGET, { log, label: 'Temporal CLI', timeoutMs: GO_INSTALL_TIMEOUT_MS });
  if (code !== 0) {
    throw new Error(
      `\`go install ${GO_INSTALL_TARGET}\` failed (${typeof code === 'number' ? `exit code ${code}` : code}) after ${seconds} s:\n` + tail.join('\n'),
    );
  }
  for (const candidate of await goBinCandidates()) {
    if (!(await executableProblem(candidate))) {
      log(`Built the Temporal CLI in ${seconds} s: ${candidate}`);
      return candidate;
    }
  }
  throw new Error(`\`go install ${GO_INSTALL_TARGET}\` succeeded after ${seconds} s but no \`${EXE}\` was found in GOBIN, GOPATH/bin or ~/go/bin`);
}

function sdkCacheDir(): string {
  const base = process.env.XDG_CACHE_HOME?.trim() || join(homedir(), '.cache');
  return join(base, 'agentkeys-broker', 'temporal-cli');
}

/** Path the SDK's `cached-download` uses for the CLI: `<dir>/temporal-sdk-typescript-<version>`, see core-bridge. */
function sdkCachedBinary(): string | undefined {
  try {
    const pkgFile = require.resolve('@temporalio/testing/package.json');
    const pkg = JSON.parse(readFileSync(pkgFile, 'utf8')) as { version?: unknown };
    if (typeof pkg.version !== 'string') return undefined;
    return join(sdkCacheDir(), `temporal-sdk-typescript-${pkg.version}${process.platform === 'win32' ? '.exe' : ''}`);
  } catch {
    return undefined; // @temporalio/testing is a dev dependency: absent in production installs.
  }
}

/**
 * Lets the SDK download the CLI: `TestWorkflowEnvironment.createLocal` fetches it into `downloadDir`, starts it,
 * and we tear the environment down at once, keeping only the binary.
 */
async function sdkDownload(log: (line: string) => void): Promise<{ path?: string; error?: string }> {
  const target = sdkCachedBinary();
  if (!target) return { error: '@temporalio/testing is not installed' };
  let testing: typeof import('@temporalio/testing');
  try {
    testing = await import('@temporalio/testing');
  } catch (err) {
    return { error: `@temporalio/testing could not be loaded: ${errorMessage(err)}` };
  }
  const downloadDir = sdkCacheDir();
  await mkdir(downloadDir, { recursive: true });
  log(`Go is not installed: downloading the Temporal CLI through the Temporal SDK into ${downloadDir}…`);
  const started = Date.now();
  let failure: string | undefined;
  try {
    const env = await testing.TestWorkflowEnvironment.createLocal({
      server: { executable: { type: 'cached-download', downloadDir, ttl: '3650d' }, ip: '127.0.0.1' },
    });
    await env.teardown();
  } catch (err) {
    failure = errorMessage(err); // the server may fail to start although the download succeeded
  }
  if (!(await executableProblem(target))) {
    log(`Downloaded the Temporal CLI in ${Math.round((Date.now() - started) / 1000)} s: ${target}`);
    return { path: target };
  }
  const present = await readdir(downloadDir).catch(() => [] as string[]);
  return {
    error: failure ?? `the SDK reported success but ${target} does not exist (directory holds: ${present.join(', ') || 'nothing'})`,
  };
}

async function withInstallLock<T>(log: (line: string) => void, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  let announced = false;
  for (;;) {
    try {
      const handle = await open(LOCK_FILE, 'wx');
      try {
        await handle.writeFile(`${process.pid}\n`);
      } finally {
        await handle.close();
      }
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const holder = await lockHolder();
    if (holder.stale) {
      await unlink(LOCK_FILE).catch(() => undefined);
      continue;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `Timed out after ${LOCK_WAIT_MS / 60_000} min waiting for ${LOCK_FILE} (held by pid ${holder.pid ?? '?'}); ` +
          'delete it if no installation is running',
      );
    }
    if (!announced) {
      log(`Waiting for another process (pid ${holder.pid ?? '?'}) that is installing the Temporal CLI…`);
      announced = true;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
  try {
    return await fn();
  } finally {
    await unlink(LOCK_FILE).catch(() => undefined);
  }
}

async function lockHolder(): Promise<{ pid?: number; stale: boolean }> {
  let content: string;
  let ageMs: number;
  try {
    content = await readFile(LOCK_FILE, 'utf8');
    ageMs = Date.now() - (await stat(LOCK_FILE)).mtimeMs;
  } catch {
    return { stale: false }; // vanished meanwhile: just retry
  }
  const pid = Number.parseInt(content.trim(), 10);
  if (!Number.isInteger(pid) || pid <= 0) return { stale: ageMs > 5_000 }; // being written, or garbage
  if (ageMs > LOCK_STALE_MS) return { pid, stale: true };
  try {
    process.kill(pid, 0);
    return { pid, stale: false };
  } catch (err) {
    return { pid, stale: (err as NodeJS.ErrnoException).code === 'ESRCH' };
  }
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

if (require.main === module) {
  findOrInstallTemporalCli()
    .then((path) => {
      process.stdout.write(`${path}\n`);
    })
    .catch((err: unknown) => {
      process.stderr.write(`${errorMessage(err)}\n`);
      process.exitCode = 1;
    });
}
