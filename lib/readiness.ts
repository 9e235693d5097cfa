/** One part /readyz reports on. `ok: false` makes the broker not ready. */
export type ReadinessCheck = () => Promise<{ ok: boolean; detail?: string }>;
