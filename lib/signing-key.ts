import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';
import { AgentKeysError } from './errors';

/**
 * An ES256 signing key with a stable `kid` (its RFC 7638 thumbprint), stored as a private JWK
 * file (mode 0600). Used for the broker session key; the OIDC issuer keeps its own, separate keys.
 */
export interface SigningKey {
  kid: string;
  alg: 'ES256';
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  /** The public half as a JWK with kid, alg and use set, ready for a JWKS. */
  publicJwk: JWK;
}

export class KeyFileError extends AgentKeysError {
  override readonly code: string = 'ERR_KEY_FILE';
}

/** The key file does not exist (a development start may then create it). */
export class KeyFileMissingError extends KeyFileError {
  override readonly code: string = 'ERR_KEY_FILE_MISSING';
}

export async function generateSigningKeyJwk(): Promise<JWK> {
  const { privateKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = await exportJWK(privateKey);
  jwk.kid = await calculateJwkThumbprint(jwk);
  jwk.alg = 'ES256';
  jwk.use = 'sig';
  return jwk;
}

export async function signingKeyFromJwk(jwk: JWK): Promise<SigningKey> {
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || typeof jwk.d !== 'string') {
    throw new KeyFileError('signing key must be a private EC P-256 JWK');
  }
  const { d: _d, ...pub } = jwk;
  const kid = jwk.kid ?? (await calculateJwkThumbprint(pub));
  const privateKey = (await importJWK({ ...jwk, alg: 'ES256' }, 'ES256')) as CryptoKey;
  const publicKey = (await importJWK({ ...pub, alg: 'ES256' }, 'ES256')) as CryptoKey;
  const publicJwk: JWK = { kty: 'EC', crv: 'P-256', x: pub.x, y: pub.y, kid, alg: 'ES256', use: 'sig' };
  return { kid, alg: 'ES256', privateKey, publicKey, publicJwk };
}
