import { NativeConnection, type Worker, type WorkflowBundleOption } from '@temporalio/worker';
import { startOpsListener } from '../adapters/ops-listener';
import { processRegistry } from '../lib/metrics';
import { SesMailer } from '../adapters/ses-mailer';
import type { Db } from '../db/pool';
import type { Config } from '../lib/config';
import type { BrokerSecrets } from '../adapters/secrets';
import { temporalConnectionOptions } from '../adapters/temporal-options';
import { connectTemporalClient } from '../adapters/temporal-client';
import { createBrokerWorker } from './create-worker';
import { ensureAuditAnchorSchedule, ensureMaintenanceSchedule } from './schedules';

export interface RunningWorker {
  worker: Worker;
  /** The worker's connection: a Client built on it (same process) can start workflows eagerly. */
  connection: NativeConnection;
  /** The ops listener's /metrics (BROKER_OPS_HOST:BROKER_WORKER_OPS_PORT); undefined when that port is unset. */
  metricsUrl?: string;
  /** Resolves when the worker has stopped (after shutdown() or a shutdown signal). */
  done: Promise<void>;
  shutdown(): Promise<void>;
}

/** A prebuilt workflow bundle named by BROKER_WORKFLOW_BUNDLE (tests, or a build step), if any. */
export function workflowBundleFromEnv(env: NodeJS.ProcessEnv = process.env): WorkflowBundleOption | undefined {
  return env.BROKER_WORKFLOW_BUNDLE ? { codePath: env.BROKER_WORKFLOW_BUNDLE } : undefined;
}

/** Connects to Temporal and starts polling the broker's task queue with every workflow and activity. */
export async function startBrokerWorker(opts: {
  config: Config;
  secrets: BrokerSecrets;
  db: Db;
  address: string;
  workflowBundle?: WorkflowBundleOption;
}): Promise<RunningWorker> {
  const { config, secrets, db } = opts;
  const mailer = new SesMailer(config.BROKER_EMAIL_FROM, { region: config.AWS_REGION, endpoint: config.BROKER_SES_ENDPOINT });
  const connection = await NativeConnection.connect(temporalConnectionOptions(config, opts.address));
  const worker = await createBrokerWorker({ deps: { config, db, secrets, mailer, now: Date.now }, connection, workflowBundle: opts.workflowBundle });
  const client = await connectTemporalClient(config, secrets, opts.address);
  try {
    await ensureMaintenanceSchedule(client, config);
    await ensureAuditAnchorSchedule(client, config);
  } finally {
    await client.connection.close();
  }
  const opsPort = config.BROKER_WORKER_OPS_PORT;
  const ops = opsPort === undefined ? undefined : await startOpsListener({ host: config.BROKER_OPS_HOST, port: opsPort, registries: [processRegistry] });
  const done = worker.run().finally(async () => {
    await ops?.close();
    mailer.destroy();
    await connection.close();
  });
  return {
    worker,
    connection,
    metricsUrl: ops?.metricsUrl,
    done,
    async shutdown() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await done;
    },
  };
}
