import { createCipheriv, createDecipheriv, createHash, createPublicKey, diffieHellman, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { AgentKeysError } from './errors';
import { isSealPublicJwk, type SealPublicJwk } from './seal-key';

/**
 * Sealing what a flow hands out (docs/operations.md, "What the history holds"): the API makes a
 * fresh X25519 key pair per request and passes only its public half into the workflow; the
 * activity that mints encrypts the credential to it as a compact JWE (ECDH-ES+A256KW, A256GCM;
 * RFC 7516, RFC 7518 §4.6, X25519 keys as RFC 8037 OKP JWKs), with a fresh ephemeral key, content
 * key and IV every call. The history keeps only that JWE, which neither the payload codec key nor
 * the ops token opens; the private half never leaves the API process that made it, and is dropped
 * with the request.
 *
 * Built on node:crypto's synchronous primitives rather than WebCrypto (jose): the same JWE, which
 * jose opens and makes (test/sealing.test.ts), without thread-pool hops. X25519 rather than P-256
 * since 2026-12-06: key generation, agreement and the import of a JWK cost less than half as much
 * (docs/performance.md). A P-256 key (`kty: EC`) is still sealed to and opened: a mint started by
 * an API of the version before, or an ephemeral key of that curve, works on either side.
 */
export const SEAL_ALG = 'ECDH-ES+A256KW';
export const SEAL_ENC = 'A256GCM';
/** JWE `cty` of a sealed JSON value. */
const SEAL_CTY = 'agentkeys-sealed+json';
/** RFC 3394 §2.2.3.1: the default initial value of AES key wrap. */
const AES_KW_IV = Buffer.from('A6A6A6A6A6A6A6A6', 'hex');
const GCM_IV_BYTES = 12;
const GCM_TAG_BYTES = 16;
const HEADER_KEYS = new Set(['alg', 'enc', 'cty', 'epk']);

export type { SealPublicJwk } from './seal-key';

export interface SealKeyPair {
  publicJwk: SealPublicJwk;
  privateKey: KeyObject;
}

export class SealError extends AgentKeysError {
  override readonly code: string = 'ERR_SEAL';
  override name = 'SealError';
}

/** Public members only; createPublicKey also checks the key (for P-256, that the point is on the curve). */
function publicKeyOf(jwk: SealPublicJwk): KeyObject {
  const key = jwk.kty === 'OKP' ? { kty: jwk.kty, crv: jwk.crv, x: jwk.x } : { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y };
  return createPublicKey({ key, format: 'jwk' });
}

function publicJwkOf(key: KeyObject): SealPublicJwk {
  const jwk = key.export({ format: 'jwk' });
  if (!isSealPublicJwk(jwk)) throw new SealError('unexpected key shape from generateKeyPair');
  return jwk.kty === 'OKP' ? { kty: 'OKP', crv: 'X25519', x: jwk.x } : { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y };
}

/** A fresh key pair on the curve of `like`. */
function keyPairLike(like: SealPublicJwk): { publicKey: KeyObject; privateKey: KeyObject } {
  return like.kty === 'OKP' ? generateKeyPairSync('x25519') : generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

/** RFC 7518 §4.6.2: the key-wrapping key from the shared secret (Concat KDF, SHA-256, no PartyUInfo/PartyVInfo). */
function keyWrappingKey(sharedSecret: Buffer): Buffer {
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  const algorithmId = Buffer.from(SEAL_ALG, 'ascii');
  return createHash('sha256')
    .update(u32(1))
    .update(sharedSecret)
    .update(u32(algorithmId.length))
    .update(algorithmId)
    .update(u32(0)) // PartyUInfo
    .update(u32(0)) // PartyVInfo
    .update(u32(256)) // SuppPubInfo: the KEK's length in bits
    .digest();
}

/** A fresh key pair for one request. */
export async function createSealKeyPair(): Promise<SealKeyPair> {
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  return { publicJwk: publicJwkOf(publicKey), privateKey };
}

/** Encrypts a JSON value to the public key; a fresh ephemeral key, content key and IV every call. */
export async function sealJson(to: SealPublicJwk, value: unknown): Promise<string> {
  if (!isSealPublicJwk(to)) throw new SealError('the seal key is not an X25519 (OKP) or P-256 (EC) public JWK');
  try {
    const recipient = publicKeyOf(to);
    const ephemeral = keyPairLike(to);
    const kek = keyWrappingKey(diffieHellman({ privateKey: ephemeral.privateKey, publicKey: recipient }));
    const cek = randomBytes(32);
    const wrap = createCipheriv('id-aes256-wrap', kek, AES_KW_IV);
    const encryptedKey = Buffer.concat([wrap.update(cek), wrap.final()]);
    const header = Buffer.from(JSON.stringify({ alg: SEAL_ALG, enc: SEAL_ENC, cty: SEAL_CTY, epk: publicJwkOf(ephemeral.publicKey) })).toString('base64url');
    const iv = randomBytes(GCM_IV_BYTES);
    const gcm = createCipheriv('aes-256-gcm', cek, iv, { authTagLength: GCM_TAG_BYTES });
    gcm.setAAD(Buffer.from(header, 'ascii'));
    const ciphertext = Buffer.concat([gcm.update(JSON.stringify(value), 'utf8'), gcm.final()]);
    return [header, encryptedKey, iv, ciphertext, gcm.getAuthTag()].map((p) => (typeof p === 'string' ? p : p.toString('base64url'))).join('.');
  } catch (e) {
    throw new SealError(`could not seal the value: ${(e as Error).message}`);
  }
}

const B64URL = /^[A-Za-z0-9_-]*$/;

/** Decrypts what sealJson made for this key pair (or any compact JWE of this alg, enc and cty to it). */
export async function unsealJson<T>(privateKey: KeyObject, jwe: string): Promise<T> {
  try {
    const parts = typeof jwe === 'string' ? jwe.split('.') : [];
    if (parts.length !== 5 || !parts.every((p) => B64URL.test(p))) throw new SealError('not a compact JWE');
    const [headerText, ek, ivText, ct, tagText] = parts as [string, string, string, string, string];
    let header: { alg?: unknown; enc?: unknown; cty?: unknown; epk?: unknown };
    try {
      header = JSON.parse(Buffer.from(headerText, 'base64url').toString('utf8')) as typeof header;
    } catch {
      throw new SealError('the protected header is not JSON');
    }
    if (typeof header !== 'object' || header === null) throw new SealError('the protected header is not an object');
    const unknownMember = Object.keys(header).find((k) => !HEADER_KEYS.has(k));
    if (unknownMember !== undefined) throw new SealError(`unexpected header member ${unknownMember}`);
    if (header.alg !== SEAL_ALG || header.enc !== SEAL_ENC) throw new SealError(`unexpected alg/enc ${String(header.alg)}/${String(header.enc)}`);
    if (header.cty !== SEAL_CTY) throw new SealError(`unexpected content type ${String(header.cty)}`);
    if (!isSealPublicJwk(header.epk)) throw new SealError('the ephemeral key is not an X25519 (OKP) or P-256 (EC) public JWK');
    const iv = Buffer.from(ivText, 'base64url');
    const tag = Buffer.from(tagText, 'base64url');
    if (iv.length !== GCM_IV_BYTES || tag.length !== GCM_TAG_BYTES) throw new SealError('bad IV or tag length');
    const kek = keyWrappingKey(diffieHellman({ privateKey, publicKey: publicKeyOf(header.epk) }));
    const unwrap = createDecipheriv('id-aes256-wrap', kek, AES_KW_IV);
    const cek = Buffer.concat([unwrap.update(Buffer.from(ek, 'base64url')), unwrap.final()]);
    if (cek.length !== 32) throw new SealError('bad content key length');
    const gcm = createDecipheriv('aes-256-gcm', cek, iv, { authTagLength: GCM_TAG_BYTES });
    gcm.setAAD(Buffer.from(headerText, 'ascii'));
    gcm.setAuthTag(tag);
    const plaintext = Buffer.concat([gcm.update(Buffer.from(ct, 'base64url')), gcm.final()]);
    return JSON.parse(plaintext.toString('utf8')) as T;
  } catch (e) {
    throw new SealError(`could not open the sealed value: ${(e as Error).message}`);
  }
}
