import { CompactSign, compactVerify, createLocalJWKSet, errors, type JSONWebKeySet } from 'jose';
import { canonicalJson } from './canonical-json';
import { AgentKeysError } from './errors';
import type { SigningKey } from './signing-key';

/**
 * A signed head of the audit chain: `{seq, hash, at, iss}` as a compact JWS (ES256, header `kid`
 * and `typ: "agentkeys-audit-head+jws"`) by the audit key. Because every row's hash covers the
 * previous row's, a head pins every row up to `seq`: a log that later disagrees with a head it
 * signed was rewritten or cut (scripts/audit-verify.ts).
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
  if (verified.protectedHeader.typ !== AUDIT_HEAD_TYP) throw new AuditHeadError(`not an audit head (typ ${String(verified.protectedHeader.typ)})`);
  let s: Partial<AuditHeadStatement>;
  try {
    s = JSON.parse(new TextDecoder().decode(verified.payload)) as Partial<AuditHeadStatement>;
  } catch {
    throw new AuditHeadError('the head payload is not JSON');
  }
  if (typeof s.seq !== 'string' || !/^\d+$/.test(s.seq) || typeof s.hash !== 'string' || typeof s.at !== 'string' || typeof s.iss !== 'string') {
    throw new AuditHeadError('the head payload lacks seq, hash, at or iss');
  }
  return { seq: s.seq, hash: s.hash, at: s.at, iss: s.iss, kid: verified.protectedHeader.kid ?? '' };
}
