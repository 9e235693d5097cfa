/**
 * The child processes of `npm run cluster`: each runs in its own process group (a Ctrl-C in the
 * terminal reaches only the orchestrator, which stops them in order), logs to
 * `<logs>/<name>.log`, and is stopped with SIGTERM, then SIGKILL after a grace period.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface Managed {
  name: string;
  pid: number;
  log: string;
  /** Resolves with how it ended: `exit code N` or `signal S`. */
  exited: Promise<string>;
  /** Undefined while running. */
  exitReason(): string | undefined;
  /** SIGTERM, SIGKILL after graceMs; resolves once it has exited. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Last resort when the orchestrator itself dies: no orphan keeps a port. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

export function startProcess(opts: { name: string; command: string; args: string[]; logDir: string; env?: NodeJS.ProcessEnv; cwd?: string }): Managed {
  installExitHook();
  const logFile = join(opts.logDir, `${opts.name}.log`);
  const out = createWriteStream(logFile, { flags: 'a' });
  out.write(`\n--- ${new Date().toISOString()} ${opts.command} ${opts.args.join(' ')}\n`);
  const child = spawn(opts.command, opts.args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  child.stdout?.pipe(out, { end: false });
  child.stderr?.pipe(out, { end: false });
  live.add(child);
  let reason: string | undefined;
  const exited = new Promise<string>((done) => {
    child.once('error', (err) => {
      reason ??= `could not start: ${err.message}`;
      done(reason);
    });
    child.once('exit', (code, signal) => {
      reason ??= signal ? `signal ${signal}` : `exit code ${code}`;
      live.delete(child);
      // The pipes may still carry the last lines; end the file once they are flushed.
      setTimeout(() => out.end(), 200);
      done(reason);
    });
  });
  let stopping: Promise<void> | undefined;
  return {
    name: opts.name,
    pid: child.pid ?? -1,
    log: logFile,
    exited,
    exitReason: () => reason,
    stop(graceMs = 10_000) {
      stopping ??= (async () => {
        if (reason !== undefined || !child.pid) return;
        const pid = child.pid;
        const signalGroup = (sig: NodeJS.Signals) => {
          try {
            process.kill(-pid, sig);
          } catch {
            // gone meanwhile
          }
        };
        signalGroup('SIGTERM');
        const timer = setTimeout(() => signalGroup('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      })();
      return stopping;
    },
  };
}

/** The last lines of a log file, for an error message. */
export async function logTail(file: string, lines = 15): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}
