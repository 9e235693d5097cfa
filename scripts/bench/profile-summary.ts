/**
 * `npx tsx scripts/bench/profile-summary.ts <dir or .cpuprofile> [--top 25] [--skip 0]`: what dominates a V8 CPU
 * profile (`npm run bench -- --cpu-prof <dir>`), as self time per function and per place (a package
 * under node_modules, a file of the project, or a V8/Node builtin), in percent of the sampled time.
 * Idle samples (the event loop waiting) are reported apart and left out of the percentages.
 * `--skip <s>` leaves out the first seconds of each profile (the process's start-up).
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

export interface CpuProfile {
  nodes: ProfileNode[];
  samples?: number[];
  timeDeltas?: number[];
}

/** Self time in µs per node id, from the samples and their time deltas, leaving out the first `skipUs`. */
function selfTimes(profile: CpuProfile, skipUs: number): Map<number, number> {
  const self = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  let at = 0;
  for (let i = 0; i < samples.length; i++) {
    at += deltas[i] ?? 0;
    if (at < skipUs) continue;
    // A sample's time is the delta to the next sample.
    const next = deltas[i + 1] ?? 0;
    self.set(samples[i] ?? -1, (self.get(samples[i] ?? -1) ?? 0) + Math.max(0, next));
  }
  return self;
}

/** Where a frame's code lives: a package, a project file, or a builtin. */
export function placeOf(url: string, root: string): string {
  if (!url) return '(builtin)';
  const path = url.replace(/^file:\/\//, '');
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path);
  if (pkg?.[1]) return pkg[1];
  if (path.startsWith('node:')) return path;
  return path.startsWith(root) ? relative(root, path) : path;
}

function add(map: Map<string, number>, key: string, v: number): void {
  map.set(key, (map.get(key) ?? 0) + v);
}

function top(map: Map<string, number>, total: number, n: number): string[] {
  return [...map.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, v]) => `${((100 * v) / total).toFixed(1).padStart(5)} %  ${(v / 1000).toFixed(0).padStart(7)} ms  ${k}`);
}

async function profileFiles(target: string): Promise<string[]> {
  if ((await stat(target)).isFile()) return [target];
  return (await readdir(target)).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(target, f));
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const opt = (name: string, fallback: number) => {
    const i = args.indexOf(name);
    return i >= 0 ? Number(args[i + 1]) : fallback;
  };
  const target = args.find((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'));
  const n = opt('--top', 25);
  const skip = opt('--skip', 0);
  if (!target || !(n > 0) || !(skip >= 0)) throw new Error('usage: npx tsx scripts/bench/profile-summary.ts <dir|file.cpuprofile> [--top 25] [--skip 0]');
  for (const file of await profileFiles(target)) {
    const { busy, idle, byPlace, byFunction } = summarise(JSON.parse(await readFile(file, 'utf8')) as CpuProfile, process.cwd(), skip * 1e6);
    console.log(`\n${file}\nbusy ${(busy / 1000).toFixed(0)} ms, idle ${(idle / 1000).toFixed(0)} ms`);
    if (!busy) continue;
    console.log('\nby place (self time)');
    for (const l of top(byPlace, busy, n)) console.log(l);
    console.log('\nby function (self time)');
    for (const l of top(byFunction, busy, n)) console.log(l);
  }
}

export interface ProfileSummary {
  /** Sampled time spent running (µs), and waiting in the event loop (µs). */
  busy: number;
  idle: number;
  /** Self time (µs) per place (package, project file, builtin) and per function. */
  byPlace: Map<string, number>;
  byFunction: Map<string, number>;
}

/** Self time of a profile's samples after the first `skipUs`, by place and by function. */
export function summarise(profile: CpuProfile, root: string, skipUs = 0): ProfileSummary {
  const self = selfTimes(profile, skipUs);
  const byFunction = new Map<string, number>();
  const byPlace = new Map<string, number>();
  let idle = 0;
  let busy = 0;
  for (const node of profile.nodes) {
    const t = self.get(node.id) ?? 0;
    if (!t) continue;
    const name = node.callFrame.functionName || '(anonymous)';
    if (name === '(idle)') {
      idle += t;
      continue;
    }
    busy += t;
    const place = placeOf(node.callFrame.url, root);
    add(byFunction, `${name}  ${place}${node.callFrame.url ? `:${node.callFrame.lineNumber + 1}` : ''}`, t);
    add(byPlace, name.startsWith('(') && !node.callFrame.url ? name : place, t);
  }
  return { busy, idle, byPlace, byFunction };
}

if (process.argv[1] && /profile-summary\.ts$/.test(process.argv[1])) {
  main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
