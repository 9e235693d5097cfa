import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { BrokerError } from '../../lib/errors';
import { dependencyChecks, dependencyProbe, withFlowDeadline, type FlowDeadline } from '../dependencies';
import { translateFlowFailures } from '../flow-errors';

/**
 * `app.driveFlow`: every route's Temporal call (Update, Update-with-Start, start and result) runs
 * under the flow deadline (api/dependencies.ts) and has its failures mapped to the wire errors.
 */
export default fp(
  async function flowDeadlinePlugin(app: FastifyInstance) {
    const { db, temporal, config } = app.deps;
    const timeoutMs = config.BROKER_DEPENDENCY_TIMEOUT_MS;
    const deadline: FlowDeadline = {
      temporal,
      probe: dependencyProbe(dependencyChecks({ db, temporal }, timeoutMs), timeoutMs),
      deadlineMs: config.BROKER_FLOW_DEADLINE_MS,
      onGiveUp: (why) => app.log.warn({ why }, 'flow call given up: 503 unavailable'),
    };
    app.decorate('driveFlow', <T>(call: () => Promise<T>, notFound?: BrokerError) => translateFlowFailures(() => withFlowDeadline(deadline, call), notFound));
  },
  { name: 'flow-deadline' },
);
