/**
 * Where a profile's bearer lives: the OS keychain (service `agentkeys`, account = profile), or,
 * where no keychain works (headless Linux without a Secret Service), a file
 * `~/.agentkeys/<profile>/session.json` with mode 0600 in a 0700 directory.
 * `AGENTKEYS_SESSION_STORE=file|keychain` forces one.
 */
import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Identity } from '../lib/omni';
import { CliError, UsageError } from './errors';

export const KEYCHAIN_SERVICE = 'agentkeys';

/** Cached AWS credentials for `mint aws --credential-process`. */
export interface AwsCache {
  key: string;
  access_key_id: string;
  secret_access_key: string;
  session_token: string;
  /** Unix seconds. */
  expiration: number;
}

export interface ProfileSession {
  broker_url: string;
  method: 'wallet' | 'email' | 'google' | 'tee';
  token: string;
  /** Unix seconds. */
  expires_at: number;
  omni_account: string;
  user_id?: string;
  identity?: Identity;
  aws_cache?: AwsCache;
}

export interface SessionStore {
  readonly kind: 'keychain' | 'file';
  /** Human description of where the session is kept. */
  describe(profile: string): string;
  load(profile: string): Promise<ProfileSession | undefined>;
  save(profile: string, session: ProfileSession): Promise<void>;
  remove(profile: string): Promise<void>;
}

const PROFILE_RE = /^[A-Za-z0-9_.-]{1,64}$/;
export function checkProfileName(profile: string): string {
  if (!PROFILE_RE.test(profile) || profile.startsWith('.'))
    throw new UsageError(`profile name "${profile}" must be 1–64 of A-Z a-z 0-9 _ . - (not starting with a dot)`);
  return profile;
}

export class FileSessionStore implements SessionStore {
  readonly kind = 'file' as const;
  constructor(private readonly root = join(homedir(), '.agentkeys')) {}
  path(profile: string): string {
    return join(this.root, profile, 'session.json');
  }
  describe(profile: string): string {
    return `file ${this.path(profile)}`;
  }
  async load(profile: string): Promise<ProfileSession | undefined> {
    let text: string;
    try {
      text = await readFile(this.path(profile), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new CliError(`cannot read ${this.path(profile)}: ${(e as Error).message}`);
    }
    return parseSession(text, this.path(profile));
  }
  async save(profile: string, session: ProfileSession): Promise<void> {
    const dir = join(this.root, profile);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await chmod(this.root, 0o700);
    await chmod(dir, 0o700);
    const tmp = `${this.path(profile)}.${process.pid}.tmp`;
    await writeFile(tmp, `${JSON.stringify(session, null, 2)}\n`, { mode: 0o600 });
    await rename(tmp, this.path(profile));
  }
  async remove(profile: string): Promise<void> {
    await rm(this.path(profile), { force: true });
  }
}

interface KeyringEntry {
  getPassword(): string | null | undefined;
  setPassword(password: string): void;
  deletePassword(): boolean | void;
}
type EntryCtor = new (service: string, account: string) => KeyringEntry;

export class KeychainSessionStore implements SessionStore {
  readonly kind = 'keychain' as const;
  constructor(private readonly Entry: EntryCtor) {}
  describe(profile: string): string {
    return `OS keychain (service ${KEYCHAIN_SERVICE}, account ${profile})`;
  }
  async load(profile: string): Promise<ProfileSession | undefined> {
    const text = new this.Entry(KEYCHAIN_SERVICE, profile).getPassword();
    return text ? parseSession(text, this.describe(profile)) : undefined;
  }
  async save(profile: string, session: ProfileSession): Promise<void> {
    new this.Entry(KEYCHAIN_SERVICE, profile).setPassword(JSON.stringify(session));
  }
  async remove(profile: string): Promise<void> {
    try {
      new this.Entry(KEYCHAIN_SERVICE, profile).deletePassword();
    } catch {
      /* nothing stored */
    }
  }
}

function parseSession(text: string, where: string): ProfileSession {
  try {
    const s = JSON.parse(text) as ProfileSession;
    if (typeof s.token === 'string' && typeof s.expires_at === 'number' && typeof s.broker_url === 'string') return s;
  } catch {
    /* fall through */
  }
  throw new CliError(`the session in ${where} is unreadable: run agentkeys init again`);
}

/** Loads @napi-rs/keyring and checks that the platform store answers; undefined when it does not. */
async function probeKeychain(): Promise<EntryCtor | undefined> {
  try {
    const { Entry } = (await import('@napi-rs/keyring')) as { Entry: EntryCtor };
    new Entry(KEYCHAIN_SERVICE, '.probe').getPassword();
    return Entry;
  } catch {
    return undefined;
  }
}

/** The store to use: forced by AGENTKEYS_SESSION_STORE, else the keychain when it works, else the file. */
export async function openSessionStore(env: NodeJS.ProcessEnv = process.env): Promise<SessionStore> {
  const forced = env.AGENTKEYS_SESSION_STORE;
  if (forced && forced !== 'file' && forced !== 'keychain') throw new UsageError('AGENTKEYS_SESSION_STORE must be "file" or "keychain"');
  if (forced === 'file') return new FileSessionStore();
  const Entry = await probeKeychain();
  if (Entry) return new KeychainSessionStore(Entry);
  if (forced === 'keychain')
    throw new CliError('AGENTKEYS_SESSION_STORE=keychain, but no OS keychain answers here (on Linux: a Secret Service such as gnome-keyring)');
  return new FileSessionStore();
}
