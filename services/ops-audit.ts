/**
 * Operators' reads of flow payloads (the codec endpoint the Temporal UI calls): one audit row per
 * accepted call, durable before anything is decoded. Checks here: none — the ops token, namespace
 * and rate limit are checked by the route before this is called.
 */
import { appendAudit } from '../db/audit';
import { withTransaction, type Db } from '../db/pool';

export interface CodecCall {
  op: 'decode' | 'encode';
  requestId: string;
  /** The caller's address and user agent (cut to 200 characters), for who did it. */
  address: string;
  userAgent: string | null;
  namespace: string;
  payloads: number;
  bytes: number;
}

/** Writes the call's audit row (its own transaction); throws when it cannot be written (the caller then decodes nothing). */
export async function recordCodecCall(deps: { db: Db }, call: CodecCall): Promise<void> {
  await withTransaction(deps.db, (tx) =>
    appendAudit(tx, {
      event: `ops.codec.${call.op}`,
      outcome: 'ok',
      requestId: call.requestId,
      details: {
        address: call.address,
        user_agent: call.userAgent === null ? null : call.userAgent.slice(0, 200),
        namespace: call.namespace,
        payloads: call.payloads,
        bytes: call.bytes,
      },
    }),
  );
}
