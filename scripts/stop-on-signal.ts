/**
 * What `npm start` and `npm run cluster` do on Ctrl-C (or SIGTERM, or a failed start): stop what
 * they started, last started first, each stop's failure logged and the rest still stopped, then exit.
 */
export interface StopList {
  /** Registers how to stop something just started. */
  push: (stop: () => Promise<unknown>) => void;
  /** Stops everything (once) and exits with `code`. */
  stopAll: (code: number) => Promise<void>;
  /** True once stopping has begun (a supervisor must not restart what is being stopped). */
  readonly stopping: boolean;
}

export function stopOnSignal(log: (line: string) => void): StopList {
  const stops: (() => Promise<unknown>)[] = [];
  let stopping = false;
  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    log('stopping…');
    for (const stop of stops.reverse()) await stop().catch((e: unknown) => log(`stop failed: ${(e as Error).message}`));
    log('stopped');
    process.exit(code);
  };
  process.on('SIGINT', () => void stopAll(0));
  process.on('SIGTERM', () => void stopAll(0));
  return {
    push: (stop) => stops.push(stop),
    stopAll,
    get stopping() {
      return stopping;
    },
  };
}
