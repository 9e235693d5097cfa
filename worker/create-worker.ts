import { NativeConnection, Worker, type WorkflowBundleOption } from '@temporalio/worker';
import { createActivities, type ActivityDeps } from '../activities';
import { brokerDataConverter } from '../adapters/temporal-options';

export interface BrokerWorkerOptions {
  deps: ActivityDeps;
  connection: NativeConnection;
  /** A prebuilt workflow bundle (tests build it once); otherwise the worker bundles workflows/. */
  workflowBundle?: WorkflowBundleOption;
  identity?: string;
}

export const WORKFLOWS_PATH = require.resolve('../workflows');

export async function createBrokerWorker(opts: BrokerWorkerOptions): Promise<Worker> {
  const { config, secrets } = opts.deps;
  return Worker.create({
    connection: opts.connection,
    namespace: config.TEMPORAL_NAMESPACE,
    taskQueue: config.BROKER_TASK_QUEUE,
    ...(opts.workflowBundle ? { workflowBundle: opts.workflowBundle } : { workflowsPath: WORKFLOWS_PATH }),
    activities: createActivities(opts.deps),
    dataConverter: brokerDataConverter(secrets),
    ...(opts.identity ? { identity: opts.identity } : {}),
    // Finish in-flight activities on shutdown rather than abandoning them to a timeout.
    shutdownGraceTime: '10 seconds',
  });
}
