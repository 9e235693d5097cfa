import type { Payload } from '@temporalio/common';

/** A Payload as the codec-server protocol carries it (proto3 JSON: bytes as base64). */
export interface JsonPayload {
  metadata: Record<string, string>;
  data?: string;
}

/** A history Payload in the codec-server protocol's JSON form, as the Temporal UI sends it. */
export function payloadToJson(p: Payload): JsonPayload {
  return {
    metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v).toString('base64')])),
    data: Buffer.from(p.data ?? new Uint8Array()).toString('base64'),
  };
}
