import { DefaultLogger, Runtime, type RuntimeOptions } from '@temporalio/worker';
import type { Config } from '../lib/config';

/** host:port as a bind address or URL authority (IPv6 in brackets). */
function hostPort(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/**
 * The Temporal SDK's own metrics (temporal_* : polls, task latencies, slots, sticky cache) on
 * Core's Prometheus exporter at BROKER_OPS_HOST:BROKER_TEMPORAL_METRICS_PORT; nothing when the
 * port is unset. Runtime options are process-wide: install them before the first connection.
 */
export function temporalRuntimeOptions(config: Pick<Config, 'BROKER_OPS_HOST' | 'BROKER_TEMPORAL_METRICS_PORT'>): Pick<RuntimeOptions, 'telemetryOptions'> {
  const port = config.BROKER_TEMPORAL_METRICS_PORT;
  if (port === undefined) return {};
  return { telemetryOptions: { metrics: { prometheus: { bindAddress: hostPort(config.BROKER_OPS_HOST, port) } } } };
}

/** Where the Temporal SDK metrics are served, or undefined when they are off. */
export function temporalMetricsUrl(config: Pick<Config, 'BROKER_OPS_HOST' | 'BROKER_TEMPORAL_METRICS_PORT'>): string | undefined {
  const port = config.BROKER_TEMPORAL_METRICS_PORT;
  return port === undefined ? undefined : `http://${hostPort(config.BROKER_OPS_HOST, port)}/metrics`;
}

/** The worker process's Runtime: the SDK's default logging, plus its metrics when configured. */
export function installWorkerRuntime(config: Config): void {
  Runtime.install({ logger: new DefaultLogger('INFO'), ...temporalRuntimeOptions(config) });
}
