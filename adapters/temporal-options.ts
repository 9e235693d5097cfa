import type { DataConverter } from '@temporalio/common';
import { AesGcmPayloadCodec } from '../lib/codec';
import type { Config } from '../lib/config';
import type { BrokerSecrets } from './secrets';

/** The module of the broker's failure converter (lib/failure-converter.ts): the workflow bundle is built with it too. */
export const FAILURE_CONVERTER_PATH = require.resolve('../lib/failure-converter');

/**
 * The one data converter every broker client and worker uses: payloads are AES-GCM encrypted, and
 * so are failures' messages and stack traces (encoded as a payload first).
 */
export function brokerDataConverter(secrets: BrokerSecrets): DataConverter {
  return { payloadCodecs: [new AesGcmPayloadCodec(secrets.payloadKey, secrets.retiredPayloadKeys)], failureConverterPath: FAILURE_CONVERTER_PATH };
}

/** Connection options for both Connection (client) and NativeConnection (worker). */
export function temporalConnectionOptions(config: Config, address: string): { address: string; tls?: boolean; apiKey?: string } {
  const tls = config.TEMPORAL_TLS ?? Boolean(config.TEMPORAL_API_KEY);
  return { address, ...(tls ? { tls: true } : {}), ...(config.TEMPORAL_API_KEY ? { apiKey: config.TEMPORAL_API_KEY } : {}) };
}
