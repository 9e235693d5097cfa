import { canonicalJson } from '../../lib/canonical-json';

/**
 * An audit inclusion proof (GET /v1/audit/proof) checked in the browser with WebCrypto, link by
 * link as lib/audit-proof.ts verifyAuditProof checks it on a server: the row's fields hash to its
 * hash (lib/audit-chain.ts, sharded form), each later row of its shard chains to the one before,
 * the chain ends at the shard head the proof names, the RFC 6962 audit path leads from that shard
 * head to the Merkle root (lib/audit-merkle.ts, RFC 9162 §2.1.3.2), the signed head's shard heads
 * make that root, and the head's ES256 signature verifies with one of the published audit keys
 * (GET /v1/audit/keys). The same canonical JSON as the server (lib/canonical-json.ts) is bundled in.
 */

export interface AuditProof {
  version: 1;
  row: {
    seq: string;
    shard: number;
    shard_seq: string;
    at: string;
    event: string;
    outcome: string;
    omni_account: string | null;
    request_id: string | null;
    idem_key: string | null;
    details: Record<string, unknown>;
    prev_hash: string;
    hash: string;
  };
  chain: { seq: string; shard_seq: string; content: string; hash: string }[];
  shard_head: { shard: number; seq: string; hash: string };
  tree_size: number;
  audit_path: string[];
  head: { jws: string; signed_at: string; kid: string };
}

export interface Jwk {
  kty?: string;
  crv?: string;
  x?: string;
  y?: string;
  kid?: string;
}

export interface Proven {
  headAt: string;
  root: string;
  kid: string;
}

export class ProofError extends Error {}

const HEX64 = /^[0-9a-f]{64}$/;
const utf8 = (s: string): Uint8Array<ArrayBuffer> => new TextEncoder().encode(s);
const toHex = (b: ArrayBuffer): string => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, '0')).join('');
const fromHex = (h: string): Uint8Array => Uint8Array.from(h.match(/../g) ?? [], (x) => parseInt(x, 16));

function fromB64url(s: string): Uint8Array<ArrayBuffer> {
  if (!/^[\w-]*$/.test(s)) throw new ProofError('the head is not a compact JWS');
  const bin = atob(s.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (s.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<ArrayBuffer> {
  return crypto.subtle.digest('SHA-256', bytes);
}
const sha256Hex = async (text: string): Promise<string> => toHex(await sha256(utf8(text)));

function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const leafHash = async (leaf: Uint8Array): Promise<Uint8Array> => new Uint8Array(await sha256(concat(Uint8Array.of(0), leaf)));
const nodeHash = async (l: Uint8Array, r: Uint8Array): Promise<Uint8Array> => new Uint8Array(await sha256(concat(Uint8Array.of(1), l, r)));
const shardLeaf = (h: { shard: number; seq: string; hash: string }): Uint8Array => utf8(canonicalJson({ shard: h.shard, seq: h.seq, hash: h.hash }));

/** RFC 6962 MTH over the leaves. */
async function merkleRoot(leaves: Uint8Array[]): Promise<Uint8Array> {
  if (leaves.length === 1) return leafHash(leaves[0] as Uint8Array);
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return nodeHash(await merkleRoot(leaves.slice(0, k)), await merkleRoot(leaves.slice(k)));
}

/** RFC 9162 §2.1.3.2. */
async function inclusionLeadsTo(leaf: Uint8Array, index: number, treeSize: number, path: string[], rootHex: string): Promise<boolean> {
  if (index < 0 || index >= treeSize) return false;
  let fn = index;
  let sn = treeSize - 1;
  let r = await leafHash(leaf);
  for (const hex of path) {
    if (!HEX64.test(hex) || sn === 0) return false;
    const p = fromHex(hex);
    if (fn % 2 === 1 || fn === sn) {
      r = await nodeHash(p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && toHex(r.buffer as ArrayBuffer) === rootHex;
}

interface HeadStatement {
  v?: number;
  root?: string;
  shards?: { shard: number; seq: string; hash: string }[];
  at?: string;
}

/** The head's signature with the audit keys (ES256: the JWS signature is r‖s, as WebCrypto takes it). */
async function verifyHead(jws: string, keys: Jwk[]): Promise<{ statement: HeadStatement; kid: string }> {
  const parts = jws.trim().split('.');
  if (parts.length !== 3) throw new ProofError('the head is not a compact JWS');
  const [h, p, s] = parts as [string, string, string];
  let header: { alg?: string; typ?: string; kid?: string };
  try {
    header = JSON.parse(new TextDecoder().decode(fromB64url(h))) as typeof header;
  } catch {
    throw new ProofError('the head has no readable header');
  }
  if (header.alg !== 'ES256') throw new ProofError(`the head is signed with ${String(header.alg)}, not ES256`);
  if (header.typ !== 'agentkeys-audit-head+jws') throw new ProofError('the head is not an audit head');
  const key = keys.find((k) => k.kid === header.kid && k.kty === 'EC' && k.crv === 'P-256');
  if (!key) throw new ProofError('the head is signed by a key that is not a published audit key');
  const publicKey = await crypto.subtle.importKey(
    'jwk',
    { kty: 'EC', crv: 'P-256', x: key.x, y: key.y, ext: true },
    { name: 'ECDSA', namedCurve: 'P-256' },
    false,
    ['verify'],
  );
  const ok = await crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, publicKey, fromB64url(s), utf8(`${h}.${p}`));
  if (!ok) throw new ProofError("the head's signature does not verify with the published audit key");
  return { statement: JSON.parse(new TextDecoder().decode(fromB64url(p))) as HeadStatement, kid: header.kid ?? '' };
}

/** Checks a proof of the row `expected` (as GET /v1/audit listed it); ProofError says which link fails. */
export async function verifyProofInBrowser(proof: AuditProof, keys: Jwk[], expected: { seq: string; hash: string }): Promise<Proven> {
  const row = proof.row;
  if (row.seq !== expected.seq || row.hash !== expected.hash) throw new ProofError('the proof is for another row than the one listed');
  const { statement: head, kid } = await verifyHead(proof.head.jws, keys);
  if (head.v !== 2 || typeof head.root !== 'string' || !Array.isArray(head.shards) || head.shards.length === 0)
    throw new ProofError('the head has no Merkle root to prove a row under');
  if (toHex((await merkleRoot(head.shards.map(shardLeaf))).buffer as ArrayBuffer) !== head.root)
    throw new ProofError("the head's root is not the Merkle root of its shard heads");

  const content = await sha256Hex(
    canonicalJson({
      v: 2,
      seq: row.seq,
      at: row.at,
      event: row.event,
      outcome: row.outcome,
      omni_account: row.omni_account,
      request_id: row.request_id,
      idem_key: row.idem_key,
      details: row.details,
      shard: row.shard,
      shard_seq: row.shard_seq,
    }),
  );
  if ((await sha256Hex(canonicalJson({ v: 2, content, prev_hash: row.prev_hash }))) !== row.hash)
    throw new ProofError("the row's fields do not hash to its hash");
  let hash = row.hash;
  let seq = BigInt(row.seq);
  let shardSeq = BigInt(row.shard_seq);
  for (const [i, step] of proof.chain.entries()) {
    if (BigInt(step.shard_seq) !== shardSeq + 1n || BigInt(step.seq) <= seq) throw new ProofError(`chain step ${i} is not the next row of the shard`);
    const next = await sha256Hex(canonicalJson({ v: 2, content: step.content, prev_hash: hash }));
    if (next !== step.hash) throw new ProofError(`chain step ${i} does not chain to the row before it`);
    hash = next;
    seq = BigInt(step.seq);
    shardSeq += 1n;
  }
  const leaf = { shard: row.shard, seq: seq.toString(), hash };
  const named = proof.shard_head;
  if (named.shard !== leaf.shard || named.seq !== leaf.seq || named.hash !== leaf.hash) throw new ProofError('the chain does not end at the shard head named');
  if (proof.tree_size !== head.shards.length) throw new ProofError('the proof and the head disagree on the number of shards');
  if (!(await inclusionLeadsTo(shardLeaf(leaf), leaf.shard, proof.tree_size, proof.audit_path, head.root)))
    throw new ProofError("the audit path does not lead from the shard's head to the signed root");
  return { headAt: head.at ?? proof.head.signed_at, root: head.root, kid };
}
