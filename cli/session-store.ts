/**
 * Where a profile lives. Two parts, both under `~/.agentkeys/<profile>/` (0700 directories):
 *
 * - `profile.json` (0600): what is not secret — the broker URL, which store holds the session, who
 *   is logged in and until when. It outlives `logout`, so the profile remembers its broker.
 * - the session (bearer, cached AWS credentials): in `session.json` (0600) for the file store, or
 *   in the OS keychain (service `agentkeys`, account = profile).
 *
 * Which store a new login uses: `AGENTKEYS_SESSION_STORE=file|keychain` when set; else the
 * keychain where one answers — macOS and Windows always, Linux and the BSDs only when a Secret
 * Service owns (or can be started for) `org.freedesktop.secrets` on the session D-Bus; else the
 * file. Without a Secret Service the keychain library on Linux falls back to the kernel's
 * persistent keyring, which is keyed by user id (every process of the user shares it), is lost at
 * reboot and expires after days unused: only used when asked for.
 *
 * AgentKeys' own CLI (litentry/agent-terrier c348357, `crates/agentkeys-core/src/session_store.rs`)
 * keeps its sessions under the same `~/.agentkeys/<session id>/`: a `session.json` of another shape
 * (`token`, `wallet`, `created_at`, `ttl_seconds`, no broker URL), or a `.keyring_managed` marker
 * beside its keychain entry (service `agentkeys` too). A directory holding those and no
 * `profile.json` is not a profile of this CLI: it is listed by no command and no command writes to
 * or deletes from it (ForeignProfileError).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Identity } from '../lib/omni';
import { CliError, initCommandFor, UsageError } from './errors';
import { replaceFile } from './write-file';

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

export type LoginMethod = 'wallet' | 'email' | 'google' | 'tee' | 'device';

/** The secret part: kept in the profile's store. */
export interface ProfileSession {
  broker_url: string;
  method: LoginMethod;
  token: string;
  /** Unix seconds. */
  expires_at: number;
  omni_account: string;
  user_id?: string;
  identity?: Identity;
  /** The verified email behind a Google login, when the broker tells it. */
  email?: string;
  /** Traded for a new session before this one expires (each is accepted once). */
  refresh_token?: string;
  /** Unix seconds: the refresh token expires then unless used. */
  refresh_expires_at?: number;
  aws_cache?: AwsCache;
}

export type StoreKind = 'file' | 'keychain';
/** Which keychain the keyring library writes to on this platform. */
export type KeychainKind = 'macos-keychain' | 'windows-credential-manager' | 'secret-service' | 'kernel-keyring';

export interface StoreChoice {
  kind: StoreKind;
  keychain?: KeychainKind;
}

/** `profile.json`: nothing secret. The session fields are absent after logout. */
export interface ProfileRecord extends StoreChoice {
  broker_url: string;
  method?: LoginMethod;
  omni_account?: string;
  identity?: Identity;
  email?: string;
  /** Unix seconds. */
  expires_at?: number;
  /** Unix seconds: until then the session renews itself. */
  renews_until?: number;
}

export interface SessionStore extends StoreChoice {
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

export function agentkeysDir(): string {
  return join(homedir(), '.agentkeys');
}
export function profileDir(profile: string): string {
  return join(agentkeysDir(), profile);
}
export function sessionFilePath(profile: string): string {
  return join(profileDir(profile), 'session.json');
}
function recordPath(profile: string): string {
  return join(profileDir(profile), 'profile.json');
}

/** Writes a 0600 file in 0700 directories, atomically. */
async function writePrivate(path: string, dir: string, text: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(agentkeysDir(), 0o700);
  await chmod(dir, 0o700);
  await replaceFile(path, text, 0o600);
}

async function readIfPresent(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw new CliError(`cannot read ${path}: ${(e as Error).message}`);
  }
}

const KEYCHAIN_NAMES: Record<KeychainKind, string> = {
  'macos-keychain': 'macOS Keychain',
  'windows-credential-manager': 'Windows Credential Manager',
  'secret-service': 'Secret Service keyring',
  'kernel-keyring': "Linux kernel keyring (shared by all the user's processes, lost at reboot)",
};

/** Where a profile's session is kept, for people. */
export function describeStore(choice: StoreChoice, profile: string): string {
  if (choice.kind === 'file') return `file ${sessionFilePath(profile)}`;
  return `${KEYCHAIN_NAMES[choice.keychain ?? 'secret-service']} (service ${KEYCHAIN_SERVICE}, account ${profile})`;
}

export class FileSessionStore implements SessionStore {
  readonly kind = 'file' as const;
  describe(profile: string): string {
    return describeStore(this, profile);
  }
  async load(profile: string): Promise<ProfileSession | undefined> {
    const text = await readIfPresent(sessionFilePath(profile));
    if (text === undefined) return undefined;
    // Another program's session written over this profile's (its CLI's default id is another name, but may be given this one).
    if (isForeignSession(text)) throw new ForeignProfileError(profile);
    return parseSession(text, sessionFilePath(profile));
  }
  async save(profile: string, session: ProfileSession): Promise<void> {
    await writePrivate(sessionFilePath(profile), profileDir(profile), `${JSON.stringify(session, null, 2)}\n`);
  }
  async remove(profile: string): Promise<void> {
    await rm(sessionFilePath(profile), { force: true });
  }
}

/**
 * A keychain entry as @napi-rs/keyring's AsyncEntry presents it (its calls run off the main thread,
 * so a keychain prompt left open does not stop the renewal lock's heartbeat); a synchronous one
 * (the tests' stand-in) does as well.
 */
interface KeyringEntry {
  getPassword(): string | null | undefined | Promise<string | null | undefined>;
  setPassword(password: string): void | Promise<void>;
  deletePassword(): unknown;
}
type EntryCtor = new (service: string, account: string) => KeyringEntry;

export class KeychainSessionStore implements SessionStore {
  readonly kind = 'keychain' as const;
  constructor(
    private readonly Entry: EntryCtor,
    readonly keychain: KeychainKind,
  ) {}
  describe(profile: string): string {
    return describeStore(this, profile);
  }
  async load(profile: string): Promise<ProfileSession | undefined> {
    const text = await new this.Entry(KEYCHAIN_SERVICE, profile).getPassword();
    if (!text) return undefined;
    // AgentKeys' own CLI keeps its keychain sessions under the same service (account: its session id).
    if (isForeignSession(text)) throw new ForeignProfileError(profile);
    return parseSession(text, this.describe(profile));
  }
  async save(profile: string, session: ProfileSession): Promise<void> {
    await new this.Entry(KEYCHAIN_SERVICE, profile).setPassword(JSON.stringify(session));
  }
  async remove(profile: string): Promise<void> {
    try {
      await new this.Entry(KEYCHAIN_SERVICE, profile).deletePassword();
    } catch {
      /* nothing stored */
    }
  }
}

/** The marker AgentKeys' own CLI leaves in a session directory whose session is in the keychain. */
const FOREIGN_KEYRING_MARKER = '.keyring_managed';

/** A profile directory another program keeps its session in (see the file comment). */
export class ForeignProfileError extends CliError {
  constructor(profile: string) {
    super(
      `${profileDir(profile)} holds files this CLI did not write (AgentKeys' own agentkeys CLI keeps its sessions and keys in ~/.agentkeys/<name>/ too); it is left alone: use another --profile (or AGENTKEYS_PROFILE)`,
    );
  }
}

/** A session text in no shape of this CLI's but JSON all the same: another program's. */
function isForeignSession(text: string): boolean {
  try {
    const s = JSON.parse(text) as unknown;
    return typeof s === 'object' && s !== null && !Array.isArray(s) && typeof (s as { broker_url?: unknown }).broker_url !== 'string';
  } catch {
    return false;
  }
}

/**
 * How a profile's directory stands: this CLI's (its profile.json, or a session file of its own from
 * before profile.json existed), another program's, or nothing of either.
 */
async function profileKind(profile: string): Promise<'ours' | 'foreign' | 'none'> {
  if (existsSync(recordPath(profile))) return 'ours';
  const text = await readIfPresent(sessionFilePath(profile));
  if (text !== undefined) return isForeignSession(text) ? 'foreign' : 'ours';
  return (await holdsOthersFiles(profile)) ? 'foreign' : 'none';
}

/** The JSON files this CLI writes in a profile directory. */
const OUR_JSON = new Set(['profile.json', 'session.json']);

/**
 * A directory with no profile.json of this CLI's that holds another program's files: AgentKeys' own
 * keychain marker, or a JSON file this CLI does not write (its CLI also keeps e.g.
 * `~/.agentkeys/k11/<omni>.json`, agent-terrier c348357 `crates/agentkeys-cli/src/k11.rs`). Such a
 * directory is left alone.
 */
async function holdsOthersFiles(profile: string): Promise<boolean> {
  if (existsSync(recordPath(profile))) return false;
  const names = await readdir(profileDir(profile)).catch(() => [] as string[]);
  // Another program's marker, or a JSON file this CLI does not write; dotfiles and other strays (.DS_Store, an editor's backup) do not count.
  return names.some((n) => n === FOREIGN_KEYRING_MARKER || (!n.startsWith('.') && n.endsWith('.json') && !OUR_JSON.has(n)));
}

export function parseSession(text: string, where: string): ProfileSession {
  try {
    const s = JSON.parse(text) as ProfileSession;
    if (typeof s.token === 'string' && typeof s.expires_at === 'number' && typeof s.broker_url === 'string') return s;
  } catch {
    /* fall through */
  }
  throw new CliError(`the session in ${where} is unreadable: run agentkeys init again`);
}

/** Loads @napi-rs/keyring's asynchronous entry and checks that the platform store answers; undefined when it does not. */
async function loadKeyring(): Promise<EntryCtor | undefined> {
  try {
    const { AsyncEntry } = (await import('@napi-rs/keyring')) as { AsyncEntry: EntryCtor };
    await new AsyncEntry(KEYCHAIN_SERVICE, '.probe').getPassword();
    return AsyncEntry;
  } catch {
    return undefined;
  }
}

/**
 * Whether a Secret Service answers on the session D-Bus: `org.freedesktop.secrets` has an owner or
 * can be activated. Asked through `dbus-send` (a second at most); no bus, no tool: no.
 */
export function secretServiceAnswers(env: NodeJS.ProcessEnv): boolean {
  let address = env.DBUS_SESSION_BUS_ADDRESS;
  if (!address && env.XDG_RUNTIME_DIR && existsSync(join(env.XDG_RUNTIME_DIR, 'bus'))) address = `unix:path=${join(env.XDG_RUNTIME_DIR, 'bus')}`;
  if (!address) return false;
  const ask = (method: string, ...args: string[]): string => {
    const r = spawnSync(
      'dbus-send',
      [
        '--session',
        '--print-reply=literal',
        '--reply-timeout=1000',
        '--dest=org.freedesktop.DBus',
        '/org/freedesktop/DBus',
        `org.freedesktop.DBus.${method}`,
        ...args,
      ],
      { env: { ...env, DBUS_SESSION_BUS_ADDRESS: address }, timeout: 2000, encoding: 'utf8' },
    );
    return r.status === 0 ? r.stdout : '';
  };
  if (/\btrue\b/.test(ask('NameHasOwner', 'string:org.freedesktop.secrets'))) return true;
  return /\borg\.freedesktop\.secrets\b/.test(ask('ListActivatableNames'));
}

/** The store a new login goes to (see the file comment). Pure but for the probe passed in. */
export function chooseStore(env: NodeJS.ProcessEnv, platform: NodeJS.Platform, secretService: () => boolean): StoreChoice {
  const forced = env.AGENTKEYS_SESSION_STORE;
  if (forced && forced !== 'file' && forced !== 'keychain') throw new UsageError('AGENTKEYS_SESSION_STORE must be "file" or "keychain"');
  if (forced === 'file') return { kind: 'file' };
  if (platform === 'darwin') return { kind: 'keychain', keychain: 'macos-keychain' };
  if (platform === 'win32') return { kind: 'keychain', keychain: 'windows-credential-manager' };
  if (secretService()) return { kind: 'keychain', keychain: 'secret-service' };
  return forced === 'keychain' ? { kind: 'keychain', keychain: platform === 'linux' ? 'kernel-keyring' : 'secret-service' } : { kind: 'file' };
}

/** Where a new login on this machine goes. */
export function loginStoreChoice(env: NodeJS.ProcessEnv): StoreChoice {
  return chooseStore(env, process.platform, () => secretServiceAnswers(env));
}

/** Opens a store; a keychain that does not answer is an error. */
export async function openStore(choice: StoreChoice): Promise<SessionStore> {
  if (choice.kind === 'file') return new FileSessionStore();
  const keychain = choice.keychain ?? 'secret-service';
  const Entry = await loadKeyring();
  if (!Entry)
    throw new CliError(`the session store is the ${KEYCHAIN_NAMES[keychain]}, but it does not answer here (AGENTKEYS_SESSION_STORE=file keeps it in a file)`);
  return new KeychainSessionStore(Entry, keychain);
}

/** The store for a new login on this machine: the keychain when asked for or when it answers, else the file. */
export async function openLoginStore(env: NodeJS.ProcessEnv): Promise<SessionStore> {
  const choice = loginStoreChoice(env);
  if (choice.kind === 'file' || env.AGENTKEYS_SESSION_STORE === 'keychain') return openStore(choice);
  try {
    return await openStore(choice);
  } catch {
    return new FileSessionStore();
  }
}

export async function readProfileRecord(profile: string): Promise<ProfileRecord | undefined> {
  const text = await readIfPresent(recordPath(profile));
  if (text !== undefined) {
    try {
      const r = JSON.parse(text) as ProfileRecord;
      if (typeof r.broker_url === 'string' && (r.kind === 'file' || r.kind === 'keychain')) return r;
    } catch {
      /* fall through */
    }
    throw new CliError(`${recordPath(profile)} is unreadable: run ${initCommandFor(profile)} again`);
  }
  // A session file from before profile.json existed: the file store (another program's is refused by the load).
  const legacy = await new FileSessionStore().load(profile);
  if (legacy) return { ...recordOf(legacy), kind: 'file' };
  if (await holdsOthersFiles(profile)) throw new ForeignProfileError(profile);
  return undefined;
}

function recordOf(s: ProfileSession): Omit<ProfileRecord, 'kind'> {
  return {
    broker_url: s.broker_url,
    method: s.method,
    omni_account: s.omni_account,
    identity: s.identity,
    email: s.email,
    expires_at: s.expires_at,
    ...(s.refresh_expires_at ? { renews_until: s.refresh_expires_at } : {}),
  };
}

export async function writeProfileRecord(profile: string, record: ProfileRecord): Promise<void> {
  await writePrivate(recordPath(profile), profileDir(profile), `${JSON.stringify(record, null, 2)}\n`);
}

/** Whether `store` holds another program's session for `profile` (ForeignProfileError), which nothing here may replace or remove. */
async function holdsForeign(store: SessionStore, profile: string): Promise<boolean> {
  if (await holdsOthersFiles(profile)) return true;
  try {
    await store.load(profile);
    return false;
  } catch (e) {
    return e instanceof ForeignProfileError;
  }
}

/**
 * Refuses a login whose session would go where another program's is (ForeignProfileError). `init`
 * asks before it logs in, so a refused profile costs no session at the broker and no code; the save
 * asks again, for one written there meanwhile.
 */
export async function assertLoginWritable(profile: string, store: SessionStore): Promise<void> {
  if (await holdsForeign(store, profile)) throw new ForeignProfileError(profile);
}

/**
 * Keeps a new login: the session in its store, the record beside it; a session left in another store
 * is removed. Another program's session where this one would go is refused (ForeignProfileError), and
 * one in the store left behind stays.
 */
export async function saveLogin(profile: string, store: SessionStore, session: ProfileSession, previous: ProfileRecord | undefined): Promise<void> {
  await assertLoginWritable(profile, store);
  await store.save(profile, session);
  await writeProfileRecord(profile, { ...recordOf(session), kind: store.kind, ...(store.keychain ? { keychain: store.keychain } : {}) });
  if (previous && previous.kind !== store.kind) {
    try {
      const old = await openStore(previous);
      if (!(await holdsForeign(old, profile))) await old.remove(profile);
    } catch {
      /* the old store no longer answers: nothing to remove there */
    }
  }
}

/** Forgets the session; the record keeps the broker URL and the store. */
export async function forgetLogin(profile: string, store: SessionStore, record: ProfileRecord | undefined): Promise<void> {
  await store.remove(profile);
  if (record)
    await writeProfileRecord(profile, { broker_url: record.broker_url, kind: record.kind, ...(record.keychain ? { keychain: record.keychain } : {}) });
}

/** Every profile of this CLI (a record, or a session file of its own), sorted by name; and the directories another program keeps its sessions in. */
export async function listProfiles(): Promise<{ profiles: string[]; foreign: string[] }> {
  let entries: string[];
  try {
    entries = await readdir(agentkeysDir());
  } catch {
    return { profiles: [], foreign: [] };
  }
  const profiles: string[] = [];
  const foreign: string[] = [];
  for (const name of entries.sort()) {
    if (!PROFILE_RE.test(name) || name.startsWith('.')) continue;
    const kind = await profileKind(name);
    if (kind === 'ours') profiles.push(name);
    else if (kind === 'foreign') foreign.push(name);
  }
  return { profiles, foreign };
}
