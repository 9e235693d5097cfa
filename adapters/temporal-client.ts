import { Client, Connection } from '@temporalio/client';
import type { Config } from '../lib/config';
import type { BrokerSecrets } from './secrets';
import { brokerDataConverter, temporalConnectionOptions } from './temporal-options';
import { temporalRetryConnectionOptions } from './temporal-retry';

/** A Temporal client with the broker's payload codec, for the API (and tests, and tools). */
export async function connectTemporalClient(config: Config, secrets: BrokerSecrets, address: string): Promise<Client> {
  const connection = await Connection.connect({ ...temporalConnectionOptions(config, address), ...temporalRetryConnectionOptions() });
  return new Client({ connection, namespace: config.TEMPORAL_NAMESPACE, dataConverter: brokerDataConverter(secrets) });
}
