import { DefaultLogger, NativeConnection, Worker, bundleWorkflowCode, type WorkflowBundleOption, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { createActivities, type ActivityDeps } from '../activities';
import { FAILURE_CONVERTER_PATH, brokerDataConverter } from '../adapters/temporal-options';

export interface BrokerWorkerOptions {
  deps: ActivityDeps;
  connection: NativeConnection;
  /** A prebuilt workflow bundle (tests build it once); otherwise the worker bundles workflows/. */
  workflowBundle?: WorkflowBundleOption;
  identity?: string;
}

export const WORKFLOWS_PATH = require.resolve('../workflows');

/**
 * The workflow modules load once per worker thread, shared by every run, instead of once per run:
 * the SDK's reusable V8 context otherwise evaluates each of the ~30 modules behind workflows/ again
 * for every workflow it starts (docs/performance.md). Safe because no module there keeps state at
 * module scope — constants, definitions and activity proxies only, which the SDK freezes once
 * loaded; a module-scope `let` would be shared by every run, and test/workflow-bundle.test.ts
 * refuses one.
 */
export const PRELOADED_WORKFLOW_MODULES = [WORKFLOWS_PATH];

/**
 * The broker's workflow bundle, built the way the worker builds it (tests, the cluster and the
 * replay suite share one), with the data converter's failure converter: failures raised inside a
 * workflow are encoded there.
 */
export function bundleBrokerWorkflows(): Promise<WorkflowBundleWithSourceMap> {
  return bundleWorkflowCode({
    workflowsPath: WORKFLOWS_PATH,
    preloadModules: PRELOADED_WORKFLOW_MODULES,
    failureConverterPath: FAILURE_CONVERTER_PATH,
    logger: new DefaultLogger('WARN'),
  });
}

export async function createBrokerWorker(opts: BrokerWorkerOptions): Promise<Worker> {
  const { config, secrets } = opts.deps;
  return Worker.create({
    connection: opts.connection,
    namespace: config.TEMPORAL_NAMESPACE,
    taskQueue: config.BROKER_TASK_QUEUE,
    workflowBundle: opts.workflowBundle ?? (await bundleBrokerWorkflows()),
    activities: createActivities(opts.deps),
    dataConverter: brokerDataConverter(secrets),
    ...(opts.identity ? { identity: opts.identity } : {}),
    // Finish in-flight activities on shutdown rather than abandoning them to a timeout.
    shutdownGraceTime: '10 seconds',
  });
}
