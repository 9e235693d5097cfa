import { base64url, CompactSign, compactVerify, createLocalJWKSet, decodeProtectedHeader, errors, type JSONWebKeySet } from 'jose';
import { canonicalJson } from './canonical-json';
import { AgentKeysError } from './errors';
import { shardHeadsRoot, type ShardHead } from './audit-merkle';
import type { SigningKey } from './signing-key';

/**
 * A signed head of the audit log as a compact JWS (ES256, header `kid` and
 * `typ: "agentkeys-audit-head+jws"`) by the audit key. Because every row's hash covers the
 * previous row's, a head pins every row up to it: a log that later disagrees with a head it signed
 * was rewritten or cut (scripts/audit-verify.ts).
 *
 * Version 1 (the single chain, before migration 010): `{seq, hash, at, iss}`.
 * Version 2 (sharded chains): `{v: 2, seq, hash, root, shards, at, iss}` — `shards` the head
 * `{shard, seq, hash}` of every shard in shard order, `root` their RFC 6962 Merkle root
 * (lib/audit-merkle.ts), and `seq`/`hash` still the log's latest row, so a reader of version 1
 * keeps working. A statement without `v` is version 1.
 */
export const AUDIT_HEAD_TYP = 'agentkeys-audit-head+jws';

export interface AuditHeadStatement {
  /** The head row's seq (a decimal string). */
  seq: string;
  hash: string;
  /** ISO-8601 time of signing. */
  at: string;
  /** The broker's public URL. */
  iss: string;
  /** 2 for a sharded head; absent in version 1. */
  v?: 2;
  /** Version 2: the Merkle root (hex) over `shards`. */
  root?: string;
  /** Version 2: every shard's head, in shard order. */
  shards?: ShardHead[];
}

export class AuditHeadError extends AgentKeysError {
  override readonly code: string = 'ERR_AUDIT_HEAD';
  override name = 'AuditHeadError';
}

export async function signAuditHead(key: SigningKey, statement: AuditHeadStatement): Promise<string> {
  return new CompactSign(new TextEncoder().encode(canonicalJson(statement)))
    .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: AUDIT_HEAD_TYP })
    .sign(key.privateKey);
}

/** Verifies a head against the audit keys (a JWKS) and returns its statement; AuditHeadError says why not. */
export async function verifyAuditHead(jws: string, keys: JSONWebKeySet): Promise<AuditHeadStatement & { kid: string }> {
  let verified;
  try {
    verified = await compactVerify(jws.trim(), createLocalJWKSet(keys), { algorithms: ['ES256'] });
  } catch (e) {
    if (e instanceof errors.JWKSNoMatchingKey) throw new AuditHeadError('the head is signed by a key that is not an audit key of this broker');
    if (e instanceof errors.JOSEError) throw new AuditHeadError(`the head does not verify: ${e.code}`);
    throw e;
  }
  return statementOf(verified.protectedHeader, verified.payload);
}

/** The kid in a head's protected header, read without checking anything else; null when it is not a compact JWS with one. */
export function auditHeadKid(jws: string): string | null {
  try {
    const kid = decodeProtectedHeader(jws.trim()).kid;
    return typeof kid === 'string' ? kid : null;
  } catch {
    return null;
  }
}

/**
 * A head's statement, its form checked as verifyAuditHead checks it, but not its signature: only
 * for a head from a source the database cannot write (the audit anchor's previous run, kept by
 * Temporal) signed by a key since retired, which the current audit keys cannot verify.
 */
export function readAuditHeadUnverified(jws: string): AuditHeadStatement & { kid: string } {
  const parts = jws.trim().split('.');
  if (parts.length !== 3) throw new AuditHeadError('the head is not a compact JWS');
  let header: { typ?: unknown; kid?: unknown };
  let payload: Uint8Array;
  try {
    header = decodeProtectedHeader(jws.trim());
    payload = base64url.decode(parts[1] as string);
  } catch {
    throw new AuditHeadError('the head is not a compact JWS');
  }
  return statementOf(header, payload);
}

function statementOf(header: { typ?: unknown; kid?: unknown }, payload: Uint8Array): AuditHeadStatement & { kid: string } {
  if (header.typ !== AUDIT_HEAD_TYP) throw new AuditHeadError(`not an audit head (typ ${String(header.typ)})`);
  let s: Partial<AuditHeadStatement>;
  try {
    s = JSON.parse(new TextDecoder().decode(payload)) as Partial<AuditHeadStatement>;
  } catch {
    throw new AuditHeadError('the head payload is not JSON');
  }
  if (typeof s.seq !== 'string' || !/^\d+$/.test(s.seq) || typeof s.hash !== 'string' || typeof s.at !== 'string' || typeof s.iss !== 'string') {
    throw new AuditHeadError('the head payload lacks seq, hash, at or iss');
  }
  const base = { seq: s.seq, hash: s.hash, at: s.at, iss: s.iss, kid: typeof header.kid === 'string' ? header.kid : '' };
  if (s.v === undefined) return base;
  if (s.v !== 2) throw new AuditHeadError(`unknown head version ${String(s.v)}`);
  const shards = s.shards;
  if (typeof s.root !== 'string' || !/^[0-9a-f]{64}$/.test(s.root) || !Array.isArray(shards) || shards.length === 0) {
    throw new AuditHeadError('a version 2 head lacks root or shards');
  }
  shards.forEach((h: Partial<ShardHead>, i) => {
    if (h.shard !== i || typeof h.seq !== 'string' || !/^\d+$/.test(h.seq) || typeof h.hash !== 'string' || !/^[0-9a-f]{64}$/.test(h.hash)) {
      throw new AuditHeadError(`shard head ${i} of the head is malformed`);
    }
  });
  if (shardHeadsRoot(shards) !== s.root) throw new AuditHeadError(`the head's root ${s.root} is not the Merkle root of its shard heads`);
  return { ...base, v: 2, root: s.root, shards };
}
