/**
 * Loaded (scripts/bench/probed-stack.ts) into the stack that `npm run bench -- --soak` starts: answers the
 * bench's IPC question with this process's memory and its event-loop delay since the previous
 * answer (perf_hooks.monitorEventLoopDelay). API and worker share that process (scripts/stack.ts),
 * so one answer covers both. Does nothing without an IPC channel, i.e. outside the soak.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';

export interface ProbeAnswer {
  type: 'bench-probe';
  rss: number;
  heapUsed: number;
  /** Event-loop delay since the previous answer, in ms (beyond the probe's own timer interval). */
  loopDelay: { p50: number; p99: number; max: number; mean: number };
}

if (process.send) {
  // The histogram records the time between ticks of a `resolution` ms timer, so an idle loop reads
  // ~resolution: it is taken off, leaving the delay itself.
  const resolutionMs = 10;
  const delay = monitorEventLoopDelay({ resolution: resolutionMs });
  delay.enable();
  process.on('message', (m: unknown) => {
    if ((m as { type?: unknown } | null)?.type !== 'bench-probe') return;
    const mem = process.memoryUsage();
    const ms = (ns: number) => Math.max(0, ns / 1e6 - resolutionMs);
    const answer: ProbeAnswer = {
      type: 'bench-probe',
      rss: mem.rss,
      heapUsed: mem.heapUsed,
      loopDelay: { p50: ms(delay.percentile(50)), p99: ms(delay.percentile(99)), max: ms(delay.max), mean: ms(delay.mean) },
    };
    delay.reset();
    process.send?.(answer);
  });
  // The channel must not keep the stack alive once it is told to stop.
  process.channel?.unref();
}
