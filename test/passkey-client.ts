/**
 * A software WebAuthn authenticator for tests: P-256 (ES256) credentials, attestation `none`,
 * discoverable (it keeps the user handle), with switches for what the refusal tests need (no user
 * verification, another origin or rp id, a counter that goes backwards, one that stays 0).
 * The byte layouts follow WebAuthn Level 3 §6.1 (authenticator data), §6.5.4 (attestation
 * object) and RFC 9052/9053 (COSE_Key EC2); the CBOR is the few major types those use.
 */
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import type { Db } from '../db/pool';

/** What the options routes answer (the parts the tests read): creation options, request options, and the envelope. */
export type CreationOptions = {
  challenge: string;
  rp: { id?: string; name: string };
  user: { id: string; name: string };
  excludeCredentials?: { id: string }[];
};
export type RequestOptions = { challenge: string; rpId?: string; userVerification?: string; allowCredentials?: unknown[] };
export interface Issued<O> {
  request_id: string;
  expires_at: number;
  options: O;
}

/** The row counts a passkey request may change (users, sessions, used signatures, audit rows, passkeys) and the sum of the counters. */
export async function passkeyCounts(db: Db): Promise<Record<string, number>> {
  const r = await db.query<Record<string, string>>(
    `SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM sessions) AS sessions, (SELECT count(*) FROM used_signatures) AS used_signatures,
            (SELECT count(*) FROM audit_log) AS audit_log, (SELECT count(*) FROM passkeys) AS passkeys,
            (SELECT coalesce(sum(counter), 0) FROM passkeys) AS counters`,
  );
  return Object.fromEntries(Object.entries(r.rows[0] ?? {}).map(([k, v]) => [k, Number(v)]));
}

type Cbor = number | string | Uint8Array | Cbor[] | Map<Cbor, Cbor>;

function head(major: number, n: number): Buffer {
  if (n < 24) return Buffer.from([(major << 5) | n]);
  if (n < 0x100) return Buffer.from([(major << 5) | 24, n]);
  if (n < 0x10000) return Buffer.from([(major << 5) | 25, n >> 8, n & 0xff]);
  const b = Buffer.alloc(5);
  b[0] = (major << 5) | 26;
  b.writeUInt32BE(n, 1);
  return b;
}

export function cbor(v: Cbor): Buffer {
  if (typeof v === 'number') return v >= 0 ? head(0, v) : head(1, -1 - v);
  if (typeof v === 'string') return Buffer.concat([head(3, Buffer.byteLength(v)), Buffer.from(v, 'utf8')]);
  if (v instanceof Uint8Array) return Buffer.concat([head(2, v.length), Buffer.from(v)]);
  if (Array.isArray(v)) return Buffer.concat([head(4, v.length), ...v.map(cbor)]);
  return Buffer.concat([head(5, v.size), ...[...v].flatMap(([k, x]) => [cbor(k), cbor(x)])]);
}

const sha256 = (b: Uint8Array | string) => createHash('sha256').update(b).digest();
const b64u = (b: Uint8Array) => Buffer.from(b).toString('base64url');

export const FLAGS = { UP: 0x01, UV: 0x04, BE: 0x08, BS: 0x10, AT: 0x40 } as const;

export interface Credential {
  id: Buffer;
  key: KeyObject;
  publicJwk: { x: string; y: string };
  rpId: string;
  userHandle: string;
  counter: number;
}

function newCredential(rpId: string, userHandle: string): Credential {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { id: randomBytes(32), key: privateKey, publicJwk: publicKey.export({ format: 'jwk' }) as { x: string; y: string }, rpId, userHandle, counter: 0 };
}

export interface CeremonyOptions {
  origin: string;
  /** The rp id the authenticator scopes the credential to (default: the options'). */
  rpId?: string;
  /** Whether the user was verified (the UV flag); default true. */
  userVerified?: boolean;
  /** clientDataJSON.type; default webauthn.create / webauthn.get. */
  type?: string;
}

export class SoftAuthenticator {
  readonly credentials: Credential[] = [];
  /** Signature counter step per use; 0 models an authenticator without a counter (synced passkeys). */
  counterStep: number;
  backupEligible: boolean;

  constructor(opts: { counterStep?: number; backupEligible?: boolean } = {}) {
    this.counterStep = opts.counterStep ?? 1;
    this.backupEligible = opts.backupEligible ?? true;
  }

  private flags(userVerified: boolean, extra = 0): number {
    return FLAGS.UP | (userVerified ? FLAGS.UV : 0) | (this.backupEligible ? FLAGS.BE | FLAGS.BS : 0) | extra;
  }

  /** navigator.credentials.create: a new credential for `options` (PublicKeyCredentialCreationOptionsJSON). */
  register(options: { challenge: string; rp: { id?: string }; user: { id: string } }, c: CeremonyOptions & { credential?: Credential }) {
    const rpId = c.rpId ?? options.rp.id ?? new URL(c.origin).hostname;
    const cred = c.credential ?? newCredential(rpId, options.user.id);
    const jwk = cred.publicJwk;
    const cose = cbor(
      new Map<Cbor, Cbor>([
        [1, 2],
        [3, -7],
        [-1, 1],
        [-2, Buffer.from(jwk.x, 'base64url')],
        [-3, Buffer.from(jwk.y, 'base64url')],
      ]),
    );
    const idLen = Buffer.alloc(2);
    idLen.writeUInt16BE(cred.id.length);
    const authData = Buffer.concat([
      sha256(rpId),
      Buffer.from([this.flags(c.userVerified ?? true, FLAGS.AT)]),
      Buffer.alloc(4),
      Buffer.alloc(16),
      idLen,
      cred.id,
      cose,
    ]);
    const clientDataJSON = Buffer.from(
      JSON.stringify({ type: c.type ?? 'webauthn.create', challenge: options.challenge, origin: c.origin, crossOrigin: false }),
    );
    const attestationObject = cbor(
      new Map<Cbor, Cbor>([
        ['fmt', 'none'],
        ['attStmt', new Map()],
        ['authData', authData],
      ]),
    );
    if (!c.credential) this.credentials.push(cred);
    return {
      id: b64u(cred.id),
      rawId: b64u(cred.id),
      type: 'public-key' as const,
      response: { clientDataJSON: b64u(clientDataJSON), attestationObject: b64u(attestationObject), transports: ['internal'] },
      clientExtensionResults: {},
      authenticatorAttachment: 'platform',
    };
  }

  /** navigator.credentials.get with a discoverable credential: signs `options.challenge` with `cred` (default the newest). */
  assert(options: { challenge: string; rpId?: string }, c: CeremonyOptions & { credential?: Credential; counter?: number }) {
    const cred = c.credential ?? this.credentials.at(-1);
    if (!cred) throw new Error('this authenticator holds no credential');
    cred.counter = c.counter ?? cred.counter + this.counterStep;
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(cred.counter);
    const authData = Buffer.concat([sha256(c.rpId ?? cred.rpId), Buffer.from([this.flags(c.userVerified ?? true)]), counter]);
    const clientDataJSON = Buffer.from(JSON.stringify({ type: c.type ?? 'webauthn.get', challenge: options.challenge, origin: c.origin, crossOrigin: false }));
    const signature = sign('sha256', Buffer.concat([authData, sha256(clientDataJSON)]), cred.key);
    return {
      id: b64u(cred.id),
      rawId: b64u(cred.id),
      type: 'public-key' as const,
      response: { clientDataJSON: b64u(clientDataJSON), authenticatorData: b64u(authData), signature: b64u(signature), userHandle: cred.userHandle },
      clientExtensionResults: {},
      authenticatorAttachment: 'platform',
    };
  }
}
