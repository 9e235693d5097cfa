import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseKey } from '../lib/codec';
import type { Config } from '../lib/config';
import { loadOrCreateSigningKey, loadSigningKey } from './key-files';
import type { SigningKey } from '../lib/signing-key';

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
  if (b.length < 32) throw new Error('BROKER_SECRET must be at least 32 bytes (hex or base64)');
  return b;
}

export async function resolveSecrets(config: Config): Promise<BrokerSecrets> {
  const needDev = !config.BROKER_SECRET || !config.BROKER_PAYLOAD_KEY;
  const dev = needDev ? await loadOrCreateDevSecrets(config.BROKER_DATA_DIR) : undefined;
  const hmacSecret = parseSecret(config.BROKER_SECRET ?? (dev as DevSecretsFile).secret);
  const payloadKey = parseKey(config.BROKER_PAYLOAD_KEY ?? (dev as DevSecretsFile).payload_key, 'BROKER_PAYLOAD_KEY');
  const retiredPayloadKeys = (config.BROKER_PAYLOAD_KEYS_RETIRED ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((k) => parseKey(k, 'BROKER_PAYLOAD_KEYS_RETIRED'));
  const sessionKey = config.BROKER_SESSION_KEY_PATH
    ? await loadSigningKey(config.BROKER_SESSION_KEY_PATH)
    : await loadOrCreateSigningKey(join(config.BROKER_DATA_DIR, 'session-key.jwk.json'));
  const auditKey = config.BROKER_AUDIT_KEY_PATH
    ? await loadSigningKey(config.BROKER_AUDIT_KEY_PATH)
    : await loadOrCreateSigningKey(join(config.BROKER_DATA_DIR, 'audit-key.jwk.json'));
  return { hmacSecret, payloadKey, retiredPayloadKeys, sessionKey, auditKey };
}
