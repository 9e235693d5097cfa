import type { DataConverter } from '@temporalio/common';
import { AesGcmPayloadCodec } from '../lib/codec';
import type { Config } from '../lib/config';
import type { BrokerSecrets } from './secrets';

/** The one data converter every broker client and worker uses: payloads are AES-GCM encrypted. */
export function brokerDataConverter(secrets: BrokerSecrets): DataConverter {
  return { payloadCodecs: [new AesGcmPayloadCodec(secrets.payloadKey, secrets.retiredPayloadKeys)] };
}

/** Connection options for both Connection (client) and NativeConnection (worker). */
export function temporalConnectionOptions(config: Config, address: string): { address: string; tls?: boolean; apiKey?: string } {
  const tls = config.TEMPORAL_TLS ?? Boolean(config.TEMPORAL_API_KEY);
  return { address, ...(tls ? { tls: true } : {}), ...(config.TEMPORAL_API_KEY ? { apiKey: config.TEMPORAL_API_KEY } : {}) };
}
