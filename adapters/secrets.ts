import { randomBytes } from 'node:crypto';
import type { JWK } from 'jose';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseKey } from '../lib/codec';
import { ConfigError, type Config } from '../lib/config';
import { loadOrCreateSigningKey, loadSigningKey } from './key-files';
import { KeyFileError, KeyFileMissingError, type SigningKey } from '../lib/signing-key';

/**
 * The broker's secrets: the HMAC secret, the payload codec keys, the session and audit signing keys.
 * Production reads them from the environment / key files; development generates them once under
 * BROKER_DATA_DIR (mode 0600) so a second start reuses them.
 */
export interface BrokerSecrets {
  hmacSecret: Buffer;
  payloadKey: Buffer;
  retiredPayloadKeys: Buffer[];
  sessionKey: SigningKey;
  /** Signs the audit chain's heads (lib/audit-head.ts). */
  auditKey: SigningKey;
  /** Public halves of audit keys retired by a rotation (BROKER_AUDIT_KEYS_RETIRED_PATH): heads they signed still verify. */
  retiredAuditKeys: JWK[];
}

interface DevSecretsFile {
  secret: string;
  payload_key: string;
}

async function loadOrCreateDevSecrets(dataDir: string): Promise<DevSecretsFile> {
  const path = join(dataDir, 'secrets.json');
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const fresh: DevSecretsFile = { secret: randomBytes(32).toString('hex'), payload_key: randomBytes(32).toString('hex') };
  try {
    await writeFile(path, `${JSON.stringify(fresh, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
    return fresh;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  return JSON.parse(await readFile(path, 'utf8')) as DevSecretsFile;
}

function parseSecret(text: string): Buffer {
  const t = text.trim();
  const b = /^[0-9a-fA-F]+$/.test(t) && t.length % 2 === 0 ? Buffer.from(t, 'hex') : Buffer.from(t, 'base64');
  if (b.length < 32)
    throw new ConfigError(`BROKER_SECRET must be at least 32 bytes as hex or base64 (got ${b.length}); generate one with \`npm run keygen -- secret\``);
  return b;
}

function payloadKey(text: string, name: string): Buffer {
  try {
    return parseKey(text, name);
  } catch (e) {
    throw new ConfigError(`${(e as Error).message}; generate one with \`npm run keygen -- secret\``);
  }
}

/** A configured key file, or a one-line error naming its variable and the keygen command that makes one. */
async function configuredSigningKey(variable: string, kind: 'session' | 'audit', path: string): Promise<SigningKey> {
  try {
    return await loadSigningKey(path);
  } catch (e) {
    if (!(e instanceof KeyFileError)) throw e;
    const why = e instanceof KeyFileMissingError ? 'does not exist' : e.message.replace(`cannot read signing key ${path}: `, '');
    throw new ConfigError(`${variable}=${path}: ${why}; generate one with \`npm run keygen -- ${kind} --out ${path}\``);
  }
}

export async function resolveSecrets(config: Config): Promise<BrokerSecrets> {
  const needDev = !config.BROKER_SECRET || !config.BROKER_PAYLOAD_KEY;
  const dev = needDev ? await loadOrCreateDevSecrets(config.BROKER_DATA_DIR) : undefined;
  const hmacSecret = parseSecret(config.BROKER_SECRET ?? (dev as DevSecretsFile).secret);
  const payload = payloadKey(config.BROKER_PAYLOAD_KEY ?? (dev as DevSecretsFile).payload_key, 'BROKER_PAYLOAD_KEY');
  const retiredPayloadKeys = (config.BROKER_PAYLOAD_KEYS_RETIRED ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((k) => payloadKey(k, 'BROKER_PAYLOAD_KEYS_RETIRED'));
  const sessionKey = config.BROKER_SESSION_KEY_PATH
    ? await configuredSigningKey('BROKER_SESSION_KEY_PATH', 'session', config.BROKER_SESSION_KEY_PATH)
    : await loadOrCreateSigningKey(join(config.BROKER_DATA_DIR, 'session-key.jwk.json'));
  const auditKey = config.BROKER_AUDIT_KEY_PATH
    ? await configuredSigningKey('BROKER_AUDIT_KEY_PATH', 'audit', config.BROKER_AUDIT_KEY_PATH)
    : await loadOrCreateSigningKey(join(config.BROKER_DATA_DIR, 'audit-key.jwk.json'));
  const retiredAuditKeys = config.BROKER_AUDIT_KEYS_RETIRED_PATH ? await retiredAuditPublicKeys(config.BROKER_AUDIT_KEYS_RETIRED_PATH, auditKey.kid) : [];
  return { hmacSecret, payloadKey: payload, retiredPayloadKeys, sessionKey, auditKey, retiredAuditKeys };
}

/**
 * The retired audit keys' JWKS: ES256 public keys, each with its kid, none the current key's and
 * none with a private part (the file is published as it is read).
 */
async function retiredAuditPublicKeys(path: string, currentKid: string): Promise<JWK[]> {
  const refuse = (why: string) => new ConfigError(`BROKER_AUDIT_KEYS_RETIRED_PATH=${path}: ${why}`);
  let jwks: unknown;
  try {
    jwks = JSON.parse(await readFile(path, 'utf8'));
  } catch (e) {
    throw refuse(`cannot read it as JSON (${(e as NodeJS.ErrnoException).code ?? (e as Error).name}); give a JWKS file {"keys": [...]}`);
  }
  const keys = (jwks as { keys?: unknown }).keys;
  if (!Array.isArray(keys)) throw refuse('not a JWKS ({"keys": [...]})');
  return keys.map((k: unknown, i) => {
    const key = k as JWK;
    if (typeof key !== 'object' || key === null) throw refuse(`key ${i} is not an object`);
    if ('d' in key) throw refuse(`key ${i} holds a private part: give the public halves only (GET /v1/audit/keys of the broker before the rotation)`);
    if (key.kty !== 'EC' || key.crv !== 'P-256' || typeof key.x !== 'string' || typeof key.y !== 'string')
      throw refuse(`key ${i} is not an ES256 (P-256) public key`);
    if (typeof key.kid !== 'string' || key.kid === '') throw refuse(`key ${i} has no kid`);
    if (key.kid === currentKid) throw refuse(`key ${i} is the current audit key (kid ${key.kid})`);
    return { kty: 'EC', crv: 'P-256', x: key.x, y: key.y, kid: key.kid, alg: 'ES256', use: 'sig' };
  });
}
