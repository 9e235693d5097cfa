/** Latency summaries shared by the benchmarks: nearest-rank percentiles over one run's samples. */

export function percentile(sortedMs: number[], p: number): number {
  if (sortedMs.length === 0) return Number.NaN;
  const i = Math.min(sortedMs.length - 1, Math.max(0, Math.ceil((p / 100) * sortedMs.length) - 1));
  return sortedMs[i] as number;
}

/** One line: p50, p90, p95, p99, mean and max in ms, and the rate when the run's wall time is given. */
export function summary(name: string, values: number[], wallSeconds?: number): string {
  const s = [...values].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / s.length;
  const f = (v: number) => v.toFixed(1).padStart(7);
  const rate = wallSeconds ? `   (${(s.length / wallSeconds).toFixed(0)}/s)` : '';
  return (
    `${name.padEnd(34)} p50 ${f(percentile(s, 50))} ms   p90 ${f(percentile(s, 90))} ms   p95 ${f(percentile(s, 95))} ms` +
    `   p99 ${f(percentile(s, 99))} ms   mean ${f(mean)} ms   max ${f(s[s.length - 1] ?? Number.NaN)} ms${rate}`
  );
}

/** Runs a benchmark's main and exits with its outcome (the stack's handles would keep the process alive). */
export function runBench(main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(e);
      process.exit(1);
    },
  );
}
