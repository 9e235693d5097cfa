import { createHash } from 'node:crypto';
import { canonicalJson } from './canonical-json';

/**
 * The Merkle tree a signed head commits to: one leaf per shard, in shard order, over the shard's
 * head `{shard, seq, hash}` (seq the global seq of the shard's last row, "0" for an empty shard).
 * RFC 6962 §2.1 hashing with its domain separation: a leaf is SHA-256(0x00 || leaf bytes), an
 * inner node SHA-256(0x01 || left || right), and a tree of n leaves splits at the largest power
 * of two below n. Audit paths are RFC 6962's PATH and verify as in RFC 9162 §2.1.3.2.
 */

export interface ShardHead {
  shard: number;
  /** Global seq of the shard's last row (a decimal string); "0" when the shard has no row yet. */
  seq: string;
  /** That row's hash; for an empty shard, the hash its first row will chain to. */
  hash: string;
}

/** The bytes of a leaf: the canonical JSON of the shard head. */
export function shardLeafBytes(h: ShardHead): Buffer {
  return Buffer.from(canonicalJson({ shard: h.shard, seq: h.seq, hash: h.hash }), 'utf8');
}

export function merkleLeafHash(leaf: Buffer): Buffer {
  return createHash('sha256')
    .update(Buffer.from([0x00]))
    .update(leaf)
    .digest();
}

export function merkleNodeHash(left: Buffer, right: Buffer): Buffer {
  return createHash('sha256')
    .update(Buffer.from([0x01]))
    .update(left)
    .update(right)
    .digest();
}

function largestPowerOfTwoBelow(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function mth(leaves: Buffer[]): Buffer {
  if (leaves.length === 1) return leaves[0] as Buffer;
  const k = largestPowerOfTwoBelow(leaves.length);
  return merkleNodeHash(mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}

function path(m: number, leaves: Buffer[]): Buffer[] {
  if (leaves.length <= 1) return [];
  const k = largestPowerOfTwoBelow(leaves.length);
  if (m < k) return [...path(m, leaves.slice(0, k)), mth(leaves.slice(k))];
  return [...path(m - k, leaves.slice(k)), mth(leaves.slice(0, k))];
}

/** RFC 6962 MTH over raw leaf data (hex): the root of a tree with at least one leaf. */
export function merkleRoot(leaves: Buffer[]): string {
  if (leaves.length === 0) throw new Error('a Merkle root needs at least one leaf');
  return mth(leaves.map(merkleLeafHash)).toString('hex');
}

/** RFC 6962 PATH(index) over raw leaf data: the sibling hashes (hex), leaf to root. */
export function merkleAuditPath(leaves: Buffer[], index: number): string[] {
  if (!Number.isSafeInteger(index) || index < 0 || index >= leaves.length) throw new Error(`no leaf ${index} among ${leaves.length}`);
  return path(index, leaves.map(merkleLeafHash)).map((b) => b.toString('hex'));
}

/** RFC 9162 §2.1.3.2: does `auditPath` lead from `leaf` (raw data) at `index` of a `treeSize`-leaf tree to `rootHex`? */
export function verifyMerkleInclusion(leaf: Buffer, index: number, treeSize: number, auditPath: readonly string[], rootHex: string): boolean {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(treeSize) || index < 0 || index >= treeSize) return false;
  let fn = index;
  let sn = treeSize - 1;
  let r = merkleLeafHash(leaf);
  for (const hex of auditPath) {
    if (typeof hex !== 'string' || !/^[0-9a-f]{64}$/.test(hex)) return false;
    const p = Buffer.from(hex, 'hex');
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = merkleNodeHash(p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      r = merkleNodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && r.toString('hex') === rootHex;
}

function inShardOrder(heads: ShardHead[]): Buffer[] {
  heads.forEach((h, i) => {
    if (h.shard !== i) throw new Error(`shard heads out of order: position ${i} holds shard ${h.shard}`);
  });
  return heads.map(shardLeafBytes);
}

/** The root (hex) over the shard heads, which must be in shard order 0..n-1. */
export function shardHeadsRoot(heads: ShardHead[]): string {
  return merkleRoot(inShardOrder(heads));
}

/** The audit path (hex, leaf to root) of shard `index` among the shard heads. */
export function shardAuditPath(heads: ShardHead[], index: number): string[] {
  return merkleAuditPath(inShardOrder(heads), index);
}

/** Does `auditPath` lead from the shard head (leaf `head.shard` of `treeSize`) to `rootHex`? */
export function verifyShardInclusion(head: ShardHead, treeSize: number, auditPath: readonly string[], rootHex: string): boolean {
  return verifyMerkleInclusion(shardLeafBytes(head), head.shard, treeSize, auditPath, rootHex);
}
