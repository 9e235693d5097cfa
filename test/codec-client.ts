import assert from 'node:assert/strict';
import type { Payload } from '@temporalio/common';
import type { TestStack } from './harness';

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

/** Every Payload anywhere in a history event (inputs, results, update arguments and results, failures' details). */
export function collectPayloads(value: unknown, out: Payload[] = []): Payload[] {
  if (value === null || typeof value !== 'object') return out;
  if (value instanceof Uint8Array) return out;
  const v = value as Record<string, unknown>;
  if (v.metadata && typeof v.metadata === 'object' && v.data instanceof Uint8Array) {
    out.push(v);
    return out;
  }
  for (const child of Object.values(v)) collectPayloads(child, out);
  return out;
}

/** Decodes payloads through the stack's codec endpoint as an operator would (the ops token), returning each one's text. */
export async function decodeThroughCodec(stack: TestStack, opsToken: string, payloads: Payload[]): Promise<string[]> {
  const res = await stack.request('POST', '/codec/decode', {
    body: { payloads: payloads.map(payloadToJson) },
    headers: { authorization: `Bearer ${opsToken}` },
  });
  assert.equal(res.status, 200, res.text.slice(0, 300));
  return (res.body as { payloads: JsonPayload[] }).payloads.map((p) => Buffer.from(p.data ?? '', 'base64').toString('utf8'));
}
