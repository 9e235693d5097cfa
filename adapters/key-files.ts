/** Signing keys as private JWK files (mode 0600): reading, writing, creating on first use. */
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { JWK } from 'jose';
import { KeyFileError, KeyFileMissingError, generateSigningKeyJwk, signingKeyFromJwk, type SigningKey } from '../lib/signing-key';

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
    const Missing = (e as NodeJS.ErrnoException).code === 'ENOENT' ? KeyFileMissingError : KeyFileError;
    throw new Missing(`cannot read signing key ${path}: ${(e as Error).message}`);
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
    if (!(e instanceof KeyFileMissingError)) throw e;
  }
  try {
    await writeKeyFile(path, await generateSigningKeyJwk(), { exclusive: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  return loadSigningKey(path);
}
