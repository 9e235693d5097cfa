/**
 * Polls `fn` every 50 ms until it answers something other than undefined, and answers that; after
 * `timeoutMs` throws naming `what` (and, with `seen`, what was last seen).
 */
export async function waitFor<T>(what: string, fn: () => T | undefined, timeoutMs = 30_000, seen?: () => string): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}${seen ? `; saw: ${JSON.stringify(seen())}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
