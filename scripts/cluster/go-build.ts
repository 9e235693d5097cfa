/**
 * Finds or builds the Go binaries `npm run cluster` runs: the Temporal server v1.29.1 and its SQL
 * schema tool, and the standalone Temporal Web UI (ui-server). Each lands in its own directory of
 * the user cache (`$XDG_CACHE_HOME/agentkeys-broker/…`, default `~/.cache`), because the server and
 * the UI are both called `server` and must not overwrite each other in GOPATH/bin.
 */
import { execFile } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access, mkdir } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { runGoInstall } from '../temporal-cli';

const execFileAsync = promisify(execFile);

export const TEMPORAL_SERVER_VERSION = 'v1.29.1';
/** The UI the CLI v1.5.1 embeds; its module serves the built assets itself (no network at run time). */
export const TEMPORAL_UI_VERSION = 'v2.42.1';

export interface GoTarget {
  /** What the user reads in progress lines. */
  label: string;
  /** `go install` argument, `module/cmd/x@version`. */
  pkg: string;
  /** The file `go install` produces (the last path element of the package). */
  exe: string;
  /** Cache sub-directory (GOBIN) for this target. */
  dir: string;
}

export const TEMPORAL_SERVER: GoTarget = {
  label: `Temporal server ${TEMPORAL_SERVER_VERSION}`,
  pkg: `go.temporal.io/server/cmd/server@${TEMPORAL_SERVER_VERSION}`,
  exe: 'server',
  dir: `temporal-server-${TEMPORAL_SERVER_VERSION}`,
};
export const TEMPORAL_SQL_TOOL: GoTarget = {
  label: `Temporal SQL schema tool ${TEMPORAL_SERVER_VERSION}`,
  pkg: `go.temporal.io/server/cmd/tools/sql@${TEMPORAL_SERVER_VERSION}`,
  exe: 'sql',
  dir: `temporal-server-${TEMPORAL_SERVER_VERSION}`,
};
export const TEMPORAL_UI: GoTarget = {
  label: `Temporal Web UI ${TEMPORAL_UI_VERSION}`,
  pkg: `github.com/temporalio/ui-server/v2/cmd/server@${TEMPORAL_UI_VERSION}`,
  exe: 'server',
  dir: `temporal-ui-${TEMPORAL_UI_VERSION}`,
};

export function binCacheDir(): string {
  const base = process.env.XDG_CACHE_HOME?.trim() || join(homedir(), '.cache');
  return join(base, 'agentkeys-broker');
}

async function isExecutable(file: string): Promise<boolean> {
  try {
    await access(file, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** `go` on PATH (or in /usr/local/go/bin), or undefined. */
export async function findGo(): Promise<string | undefined> {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/local/go/bin']) {
    if (dir && (await isExecutable(join(dir, 'go')))) return join(dir, 'go');
  }
  return undefined;
}

/**
 * The target's binary: `override` when given (it must be executable), else the cached build, else a
 * `go install` into the cache with progress lines (a heartbeat every 20 s: Go prints nothing while
 * it compiles, which takes minutes on the first build).
 */
export async function findOrBuild(target: GoTarget, log: (line: string) => void, override?: string): Promise<string> {
  if (override) {
    if (!(await isExecutable(override))) throw new Error(`${override} (set for the ${target.label}) is not an executable file`);
    return override;
  }
  const gobin = join(binCacheDir(), target.dir);
  const file = join(gobin, target.exe);
  if (await isExecutable(file)) return file;
  const go = await findGo();
  if (!go) {
    throw new Error(
      `The ${target.label} is not built yet and Go is not installed. Install Go (https://go.dev/dl/) and run again, ` +
        `or build it elsewhere with \`GOBIN=${gobin} go install ${target.pkg}\`.`,
    );
  }
  await mkdir(gobin, { recursive: true });
  log(`building the ${target.label} with Go (one time; a few minutes on the first build)…`);
  const { code, seconds, tail } = await runGoInstall(go, target.pkg, { log, label: target.label, env: { ...process.env, GOBIN: gobin } });
  if (code !== 0 || !(await isExecutable(file))) {
    throw new Error(`\`GOBIN=${gobin} go install ${target.pkg}\` failed (${String(code)}) after ${seconds} s:\n${tail.join('\n')}`);
  }
  log(`built the ${target.label} in ${seconds} s: ${file}`);
  return file;
}

/** Where the module cache keeps the server's SQL schemas (`…/schema/postgresql/v12/{temporal,visibility}/versioned`). */
export async function temporalSchemaDir(): Promise<string> {
  const go = await findGo();
  if (!go) throw new Error('Go is needed to locate the Temporal schema files (go env GOMODCACHE)');
  const { stdout } = await execFileAsync(go, ['env', 'GOMODCACHE'], { timeout: 30_000 });
  return join(stdout.trim(), `go.temporal.io/server@${TEMPORAL_SERVER_VERSION}`, 'schema', 'postgresql', 'v12');
}
