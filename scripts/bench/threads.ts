/**
 * `npm run bench -- --threads`: where a call's CPU goes inside the stack process, thread by thread,
 * and what Postgres spent on it (Linux /proc: utime + stime of each thread, and of every `postgres`
 * process). Read before and after each measured row, like the per-process columns; the delta per
 * answered call is printed under the table (docs/performance.md, "The workflow modules preloaded").
 *
 * Threads are told apart by what /proc says of them: the process's own id is the main thread (HTTP,
 * the Temporal client and worker, the activities); `tokio-*` and `workflow-*` threads are the
 * SDK's core (Rust); the other threads are all named after the executable, so the busiest of them
 * is reported apart — under load that is the workflow sandbox's thread — and the rest (V8's GC and
 * compiler helpers, libuv's pool) together.
 */
import { readdir, readFile } from 'node:fs/promises';

const CLOCK_TICKS_PER_SECOND = 100;

/** CPU time of each thread of a process, ms, by thread id, with its name. */
export type ThreadTimes = Map<number, { name: string; ms: number }>;

export interface ThreadSample {
  threads: ThreadTimes;
  /** CPU time of every `postgres` process on this machine, ms, by pid (backends come and go). */
  postgres: Map<number, number>;
}

export interface ThreadBreakdown {
  main: number;
  busiestOther: number;
  sdkCore: number;
  rest: number;
  postgres: number;
}

/** utime + stime of a /proc stat line, ms, and the name in its parentheses. */
export function parseStat(stat: string): { name: string; ms: number } | undefined {
  const open = stat.indexOf('(');
  const close = stat.lastIndexOf(')');
  if (open < 0 || close < open) return undefined;
  const fields = stat.slice(close + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  if (!Number.isFinite(ticks)) return undefined;
  return { name: stat.slice(open + 1, close), ms: (ticks * 1000) / CLOCK_TICKS_PER_SECOND };
}

async function statOf(path: string): Promise<{ name: string; ms: number } | undefined> {
  const text = await readFile(path, 'utf8').catch(() => undefined);
  return text ? parseStat(text) : undefined;
}

export async function sampleThreads(pid: number): Promise<ThreadSample> {
  const threads: ThreadTimes = new Map();
  for (const tid of await readdir(`/proc/${pid}/task`).catch(() => [] as string[])) {
    const s = await statOf(`/proc/${pid}/task/${tid}/stat`);
    if (s) threads.set(Number(tid), s);
  }
  const postgres = new Map<number, number>();
  for (const name of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const s = await statOf(`/proc/${name}/stat`);
    if (s?.name === 'postgres') postgres.set(Number(name), s.ms);
  }
  return { threads, postgres };
}

/**
 * The CPU spent between two samples, per answered call, by kind of thread. A thread or backend
 * that appeared in between counts from zero; one that ended in between is not seen (its time is
 * lost, as a short-lived thread's is).
 */
export function breakdown(pid: number, before: ThreadSample, after: ThreadSample, calls: number): ThreadBreakdown {
  const out: ThreadBreakdown = { main: 0, busiestOther: 0, sdkCore: 0, rest: 0, postgres: 0 };
  const others: number[] = [];
  for (const [tid, t] of after.threads) {
    const spent = Math.max(0, t.ms - (before.threads.get(tid)?.ms ?? 0));
    if (tid === pid) out.main += spent;
    else if (/^(tokio|workflow)/.test(t.name)) out.sdkCore += spent;
    else others.push(spent);
  }
  others.sort((a, b) => b - a);
  out.busiestOther = others[0] ?? 0;
  out.rest = others.slice(1).reduce((a, b) => a + b, 0);
  for (const [p, ms] of after.postgres) out.postgres += Math.max(0, ms - (before.postgres.get(p) ?? 0));
  const per = calls > 0 ? calls : 1;
  return {
    main: out.main / per,
    busiestOther: out.busiestOther / per,
    sdkCore: out.sdkCore / per,
    rest: out.rest / per,
    postgres: out.postgres / per,
  };
}

export function describeBreakdown(b: ThreadBreakdown): string {
  const f = (v: number) => v.toFixed(2);
  return `stack main ${f(b.main)}, busiest other thread ${f(b.busiestOther)} (the workflow sandbox under load), SDK core ${f(b.sdkCore)}, other threads ${f(b.rest)}; Postgres ${f(b.postgres)}`;
}
