import { DefaultFailureConverter } from '@temporalio/common';

/**
 * The broker's failure converter (loaded by path: `failureConverterPath` of the data converter, and
 * of the workflow bundle, worker/create-worker.ts). It moves every failure's message and stack
 * trace into an encoded payload, which the payload codec then encrypts like any other payload:
 * Temporal stores a failure's text in clear otherwise, and some of it is not ours to bound (a
 * provider's or Postgres' error text, which can quote what it refused). History then shows
 * `Encoded failure`; clients and workers with the key, and the Temporal UI through the codec
 * endpoint (docs/operations.md), read the real text.
 */
export const failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
