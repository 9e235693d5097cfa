import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type CryptoKey, type JWK } from 'jose';

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

export class KeyFileError extends Error {
  override name = 'KeyFileError';
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

export async function writeKeyFile(path: string, jwk: JWK, opts: { exclusive?: boolean } = {}): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  await writeFile(path, `${JSON.stringify(jwk, null, 2)}\n`, { mode: 0o600, flag: opts.exclusive ? 'wx' : 'w' });
  await chmod(path, 0o600);
}

export async function loadSigningKey(path: string): Promise<SigningKey> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new KeyFileError(`cannot read signing key ${path}: ${(e as Error).message}`);
  }
  let jwk: JWK;
  try {
    jwk = JSON.parse(text) as JWK;
  } catch {
    throw new KeyFileError(`signing key ${path} is not JSON (expected a private JWK, see npm run keygen)`);
  }
  return signingKeyFromJwk(jwk);
}

/** Loads the key at path, creating it first when absent (development only). Safe against a concurrent creator. */
export async function loadOrCreateSigningKey(path: string): Promise<SigningKey> {
  try {
    return await loadSigningKey(path);
  } catch (e) {
    if (!(e instanceof KeyFileError) || !/ENOENT/.test(e.message)) throw e;
  }
  try {
    await writeKeyFile(path, await generateSigningKeyJwk(), { exclusive: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  return loadSigningKey(path);
}
