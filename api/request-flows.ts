import { BrokerError } from '../lib/errors';

type DriveFlow = <T>(call: () => Promise<T>, notFound?: BrokerError) => Promise<T>;

/**
 * Drives the flow of a request a client names by its request id, at the first of `workflowIds`
 * that exists: the flow's id, then ids it had under earlier releases while their runs can still
 * be open (docs/versioning.md, "Retired workflow types"). Only an unknown flow is looked for again;
 * every answer of a flow that exists is its own. `notFound` answers when none exists.
 */
export async function driveRequestFlow<T>(
  drive: DriveFlow,
  workflowIds: readonly string[],
  call: (workflowId: string) => Promise<T>,
  notFound: BrokerError,
): Promise<T> {
  for (const workflowId of workflowIds.slice(0, -1)) {
    const unknown = new BrokerError(notFound.errorCode, notFound.message);
    try {
      return await drive(() => call(workflowId), unknown);
    } catch (e) {
      if (e !== unknown) throw e;
    }
  }
  const last = workflowIds.at(-1);
  if (last === undefined) throw notFound;
  return drive(() => call(last), notFound);
}
