import { CompactEncrypt, compactDecrypt, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import { AgentKeysError } from './errors';

/**
 * Sealing what a flow hands out (docs/operations.md, "What the history holds"): the API makes a
 * fresh P-256 key pair per request and passes only its public half into the workflow; the
 * activity that mints encrypts the credential to it as a compact JWE (ECDH-ES+A256KW, A256GCM).
 * The history keeps only that JWE, which neither the payload codec key nor the ops token opens;
 * the private half never leaves the API process that made it, and is dropped with the request.
 */
export const SEAL_ALG = 'ECDH-ES+A256KW';
export const SEAL_ENC = 'A256GCM';
/** JWE `cty` of a sealed JSON value. */
const SEAL_CTY = 'agentkeys-sealed+json';

/** The public half as it travels in a workflow input: an EC P-256 JWK, public members only. */
export interface SealPublicJwk {
  kty: 'EC';
  crv: 'P-256';
  x: string;
  y: string;
}

export interface SealKeyPair {
  publicJwk: SealPublicJwk;
  privateKey: CryptoKey;
}

export class SealError extends AgentKeysError {
  override readonly code: string = 'ERR_SEAL';
  override name = 'SealError';
}

/** A fresh key pair for one request. */
export async function createSealKeyPair(): Promise<SealKeyPair> {
  const { publicKey, privateKey } = await generateKeyPair(SEAL_ALG, { crv: 'P-256' });
  const jwk = await exportJWK(publicKey);
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || !jwk.x || !jwk.y) throw new SealError('unexpected key shape from generateKeyPair');
  return { publicJwk: { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y }, privateKey };
}

/** Encrypts a JSON value to the public key; a fresh ephemeral key and IV every call. */
export async function sealJson(to: SealPublicJwk, value: unknown): Promise<string> {
  if (to?.kty !== 'EC' || to.crv !== 'P-256' || typeof to.x !== 'string' || typeof to.y !== 'string') {
    throw new SealError('the seal key is not an EC P-256 public JWK');
  }
  const key = await importJWK({ kty: to.kty, crv: to.crv, x: to.x, y: to.y } satisfies JWK, SEAL_ALG);
  return new CompactEncrypt(new TextEncoder().encode(JSON.stringify(value))).setProtectedHeader({ alg: SEAL_ALG, enc: SEAL_ENC, cty: SEAL_CTY }).encrypt(key);
}

/** Decrypts what sealJson made for this key pair. */
export async function unsealJson<T>(privateKey: CryptoKey, jwe: string): Promise<T> {
  try {
    const { plaintext, protectedHeader } = await compactDecrypt(jwe, privateKey, {
      keyManagementAlgorithms: [SEAL_ALG],
      contentEncryptionAlgorithms: [SEAL_ENC],
    });
    if (protectedHeader.cty !== SEAL_CTY) throw new SealError(`unexpected content type ${String(protectedHeader.cty)}`);
    return JSON.parse(new TextDecoder().decode(plaintext)) as T;
  } catch (e) {
    if (e instanceof SealError) throw e;
    throw new SealError(`could not open the sealed value: ${(e as Error).message}`);
  }
}
