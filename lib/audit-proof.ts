import type { JSONWebKeySet } from 'jose';
import { z } from 'zod';
import { auditRowHash, auditRowHashV2 } from './audit-chain';
import { verifyAuditHead } from './audit-head';
import { verifyShardInclusion, type ShardHead } from './audit-merkle';
import { AgentKeysError } from './errors';

/**
 * An inclusion proof: what an account holder needs to check that one of its audit rows is under a
 * signed head, without seeing any other account's row.
 *
 *   row          the row itself (every field its hash covers, and the hash)
 *   chain        the later rows of its shard up to the shard's head at that signed head, each as
 *                {seq, shard_seq, content, hash}: content is the digest of the row's own fields
 *                (lib/audit-chain.ts auditRowContentDigest), hash = H(content, previous hash)
 *   shard_head   {shard, seq, hash} the chain ends at: a leaf of the head's Merkle tree
 *   tree_size,   the RFC 6962 audit path from that leaf (index = shard) to the signed root
 *   audit_path
 *   head         the signed head (compact JWS, version 2)
 *
 * verifyAuditProof recomputes every hash from the row up and checks the head's signature with the
 * audit keys; a single changed field anywhere is refused.
 */

const hex64 = z.string().regex(/^[0-9a-f]{64}$/, 'a 64-digit lower-case hex hash');
const decimal = z.string().regex(/^(0|[1-9]\d{0,18})$/, 'a decimal string');

export const auditProofSchema = z.object({
  version: z.literal(1),
  row: z.object({
    seq: decimal,
    shard: z.number().int().min(0),
    shard_seq: decimal,
    at: z.string(),
    event: z.string(),
    outcome: z.enum(['ok', 'denied', 'failed']),
    omni_account: z.string().nullable(),
    request_id: z.string().nullable(),
    idem_key: z.string().nullable(),
    details: z.record(z.string(), z.unknown()),
    prev_hash: hex64,
    hash: hex64,
  }),
  chain: z.array(z.object({ seq: decimal, shard_seq: decimal, content: hex64, hash: hex64 })),
  shard_head: z.object({ shard: z.number().int().min(0), seq: decimal, hash: hex64 }),
  tree_size: z.number().int().min(1),
  audit_path: z.array(hex64),
  head: z.object({ jws: z.string(), signed_at: z.string(), kid: z.string() }),
});

export type AuditProof = z.infer<typeof auditProofSchema>;

export class AuditProofError extends AgentKeysError {
  override readonly code: string = 'ERR_AUDIT_PROOF';
  override name = 'AuditProofError';
}

export interface ProvenRow {
  seq: string;
  shard: number;
  /** The signed head's time and root the row is under. */
  headAt: string;
  root: string;
}

/** Checks a proof (parsed JSON) against the audit keys; AuditProofError says which link fails. */
export async function verifyAuditProof(input: unknown, keys: JSONWebKeySet): Promise<ProvenRow> {
  const parsed = auditProofSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new AuditProofError(`not an audit proof: ${issue ? `${issue.path.join('.') || '(top)'}: ${issue.message}` : 'malformed'}`);
  }
  const p = parsed.data;
  let head;
  try {
    head = await verifyAuditHead(p.head.jws, keys);
  } catch (e) {
    throw new AuditProofError(`the head: ${(e as Error).message}`);
  }
  if (head.v !== 2 || !head.root || !head.shards) throw new AuditProofError('the head is a version 1 head: it has no Merkle root to prove a shard head under');
  const computed = auditRowHash(p.row);
  if (computed !== p.row.hash) throw new AuditProofError(`the row's content does not match its hash (${p.row.hash}; its fields hash to ${computed})`);
  let hash = p.row.hash;
  let seq = BigInt(p.row.seq);
  let shardSeq = BigInt(p.row.shard_seq);
  for (const [i, step] of p.chain.entries()) {
    if (BigInt(step.shard_seq) !== shardSeq + 1n)
      throw new AuditProofError(`chain step ${i} is shard row ${step.shard_seq}, not the next one (${shardSeq + 1n})`);
    if (BigInt(step.seq) <= seq) throw new AuditProofError(`chain step ${i} has seq ${step.seq}, not after ${seq}`);
    const next = auditRowHashV2(step.content, hash);
    if (next !== step.hash)
      throw new AuditProofError(
        `chain step ${i} (seq ${step.seq}) does not chain to the row before it: its hash would be ${next}, the proof says ${step.hash}`,
      );
    hash = next;
    seq = BigInt(step.seq);
    shardSeq += 1n;
  }
  const leaf: ShardHead = { shard: p.row.shard, seq: seq.toString(), hash };
  if (p.shard_head.shard !== leaf.shard || p.shard_head.seq !== leaf.seq || p.shard_head.hash !== leaf.hash) {
    throw new AuditProofError(`the chain ends at shard ${leaf.shard} seq ${leaf.seq} hash ${leaf.hash}, not at the shard head the proof names`);
  }
  if (p.tree_size !== head.shards.length) throw new AuditProofError(`the proof says ${p.tree_size} shards, the head signed ${head.shards.length}`);
  if (!verifyShardInclusion(leaf, p.tree_size, p.audit_path, head.root)) {
    throw new AuditProofError(`the audit path does not lead from shard ${leaf.shard}'s head to the signed root ${head.root}`);
  }
  return { seq: p.row.seq, shard: p.row.shard, headAt: head.at, root: head.root };
}
