/** Running the `agentkeys` CLI as a subprocess (bin/agentkeys.js, the built bundle) in the CLI tests. */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';

export const ROOT = join(__dirname, '..');
export const BIN = join(ROOT, 'bin', 'agentkeys.js');

/** Builds dist/cli from the current sources, so the tests run what the package ships. */
export function buildCli(): void {
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'build-cli.mjs')], { encoding: 'utf8' });
  assert.equal(r.status, 0, `build-cli: ${r.stderr}`);
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: Record<string, string>;
  /** Written to stdin up front (then closed), or fed by the caller through `feed`. */
  stdin?: string;
  feed?: (write: (s: string) => void, end: () => void, output: () => string) => Promise<void>;
}

export function runProcess(cmd: string, args: string[], env: NodeJS.ProcessEnv, opts: RunOptions): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    if (opts.feed) {
      opts
        .feed(
          (s) => child.stdin.write(s),
          () => child.stdin.end(),
          () => stdout + stderr,
        )
        .catch((e: unknown) => {
          child.kill();
          reject(e instanceof Error ? e : new Error(String(e)));
        });
    } else {
      child.stdin.end(opts.stdin ?? '');
    }
  });
}

export function parseJson(r: Run): Record<string, unknown> {
  assert.equal(r.code, 0, `exit ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

export async function waitFor<T>(what: string, fn: () => T | undefined, timeoutMs = 30_000, seen?: () => string): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}${seen ? `; saw: ${JSON.stringify(seen())}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
