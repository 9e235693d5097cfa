/** A row of `npm run bench` as the rounds summary reads it. */
export interface RoundRow {
  step: string;
  concurrency: number;
  /** The row's rate over its round's ceiling's (absent for the references themselves). */
  full_ceiling?: number;
  /** The row's p50 over its round's ceiling's. */
  p50_ceiling?: number;
}

/**
 * --rounds: per flow and concurrency, the median over the rounds of its rate and p50 against its own
 * round's ceiling (issue 22's targets: at c=1 the p50 ratio, at c=16 the rate ratio), with the range.
 */
export function roundsSummary(rows: readonly RoundRow[]): string[] {
  const groups = new Map<string, { step: string; c: number; rate: number[]; p50: number[] }>();
  for (const r of rows) {
    if (r.full_ceiling === undefined || r.p50_ceiling === undefined) continue;
    const key = `${r.concurrency}\u0000${r.step}`;
    const g = groups.get(key) ?? { step: r.step, c: r.concurrency, rate: [], p50: [] };
    g.rate.push(r.full_ceiling);
    g.p50.push(r.p50_ceiling);
    groups.set(key, g);
  }
  const median = (v: number[]) => {
    const s = [...v].sort((a, b) => a - b);
    const m = Math.floor(s.length / 2);
    return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
  };
  const range = (v: number[]) => `${Math.min(...v).toFixed(2)}–${Math.max(...v).toFixed(2)}`;
  return [...groups.values()].map(
    (g) =>
      `[bench] c=${g.c} ${g.step} over ${g.rate.length} rounds: rate ${median(g.rate).toFixed(2)} of the ceiling's (${range(g.rate)}), p50 ${median(g.p50).toFixed(2)}× (${range(g.p50)})`,
  );
}
