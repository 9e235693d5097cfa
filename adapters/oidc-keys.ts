import { randomBytes } from 'node:crypto';
import { chmod, link, mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { JWK } from 'jose';
import type { Config } from '../lib/config';
import { generateSigningKeyJwk, signingKeyFromJwk, type SigningKey } from '../lib/signing-key';
import { AgentKeysError } from '../lib/errors';

/**
 * The OIDC issuer's keyset (docs/contracts.md §4): ES256 keys kept apart from the session key, in one
 * JSON file (mode 0600) that the API (serving the JWKS) and the worker (signing) both read.
 *
 *   {"version":1,"active_kid":"…","keys":[{"jwk":{…private…},"created_at":"…","retired_at":null,"drop_after":null}, …]}
 *
 * Rotation makes a new key the signer and marks the old one retired with a `drop_after` of
 * now + (token TTL + verifier cache time): it stays in the JWKS until then, so every token it
 * signed still verifies until it expires, and is pruned from the file by a later rotation.
 * A file holding a single private JWK (e.g. made by `npm run keygen`) is read as a keyset of one.
 */

export interface OidcKeyEntry {
  /** Private EC P-256 JWK with kid. */
  jwk: JWK;
  created_at: string;
  retired_at: string | null;
  /** When a retired key leaves the JWKS (ISO time); null while active. */
  drop_after: string | null;
}

export interface OidcKeysetFile {
  version: 1;
  active_kid: string;
  keys: OidcKeyEntry[];
}

export interface OidcKeyset {
  /** The key that signs new tokens. */
  active: SigningKey;
  entries: OidcKeyEntry[];
}

export class OidcKeysetError extends AgentKeysError {
  override readonly code: string = 'ERR_OIDC_KEYSET';
  override name = 'OidcKeysetError';
}

/** Where the keyset lives: BROKER_OIDC_KEY_PATH, else BROKER_DATA_DIR/oidc-keys.json. */
export function oidcKeysetPath(config: Pick<Config, 'BROKER_OIDC_KEY_PATH' | 'BROKER_DATA_DIR'>): string {
  return config.BROKER_OIDC_KEY_PATH ?? join(config.BROKER_DATA_DIR, 'oidc-keys.json');
}

/** How long a retired key stays published: the longest token TTL plus a verifier's JWKS cache time. */
export function retiredKeyRetentionSeconds(config: Pick<Config, 'BROKER_OIDC_JWT_TTL_SECONDS' | 'BROKER_OIDC_VERIFIER_CACHE_SECONDS'>): number {
  return config.BROKER_OIDC_JWT_TTL_SECONDS + config.BROKER_OIDC_VERIFIER_CACHE_SECONDS;
}

/** Public JWKs to serve at `nowMs`: the active key first, then retired keys not yet past drop_after. */
export function publishedJwks(keyset: OidcKeyset, nowMs: number): JWK[] {
  const active = keyset.entries.find((e) => e.jwk.kid === keyset.active.kid);
  const others = keyset.entries.filter((e) => e !== active && e.drop_after !== null && Date.parse(e.drop_after) > nowMs);
  return [active, ...others].filter((e): e is OidcKeyEntry => e !== undefined).map((e) => publicJwk(e.jwk));
}

function publicJwk(jwk: JWK): JWK {
  return { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y, kid: jwk.kid, alg: 'ES256', use: 'sig' };
}

function isEntry(v: unknown): v is OidcKeyEntry {
  const e = v as OidcKeyEntry;
  return typeof e === 'object' && e !== null && typeof e.jwk === 'object' && typeof e.jwk.kid === 'string' && typeof e.created_at === 'string';
}

/** Parses a keyset file (or a single private JWK) and imports its active key. */
export async function parseOidcKeyset(text: string, path: string): Promise<OidcKeyset> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new OidcKeysetError(`OIDC keyset ${path} is not JSON (expected {"active_kid","keys"} or a private JWK)`);
  }
  if (typeof doc === 'object' && doc !== null && 'kty' in doc) {
    const single = await signingKeyFromJwk(doc as JWK).catch((e: Error) => {
      throw new OidcKeysetError(`OIDC key ${path}: ${e.message}`);
    });
    return {
      active: single,
      entries: [{ jwk: { ...(doc as JWK), kid: single.kid }, created_at: new Date(0).toISOString(), retired_at: null, drop_after: null }],
    };
  }
  const file = doc as OidcKeysetFile;
  if (file?.version !== 1 || typeof file.active_kid !== 'string' || !Array.isArray(file.keys) || !file.keys.every(isEntry)) {
    throw new OidcKeysetError(`OIDC keyset ${path} is malformed (expected version 1 with active_kid and keys)`);
  }
  const activeEntry = file.keys.find((k) => k.jwk.kid === file.active_kid);
  if (!activeEntry) throw new OidcKeysetError(`OIDC keyset ${path}: active_kid ${file.active_kid} is not among its keys`);
  try {
    return { active: await signingKeyFromJwk(activeEntry.jwk), entries: file.keys };
  } catch (e) {
    throw new OidcKeysetError(`OIDC keyset ${path}: ${(e as Error).message}`);
  }
}

async function freshKeysetFile(nowMs: number): Promise<OidcKeysetFile> {
  const jwk = await generateSigningKeyJwk();
  return { version: 1, active_kid: jwk.kid as string, keys: [{ jwk, created_at: new Date(nowMs).toISOString(), retired_at: null, drop_after: null }] };
}

const tmpPathFor = (path: string) => `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;

async function writeTemp(path: string, file: OidcKeysetFile): Promise<string> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = tmpPathFor(path);
  await writeFile(tmp, `${JSON.stringify(file, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
  await chmod(tmp, 0o600);
  return tmp;
}

/** Replaces the keyset file atomically (readers see the old or the new file, never half of one). */
export async function writeOidcKeyset(path: string, file: OidcKeysetFile): Promise<void> {
  const tmp = await writeTemp(path, file);
  await rename(tmp, path);
}

/** Creates the keyset file with one fresh key unless it exists; safe against a concurrent creator. */
export async function createOidcKeysetIfMissing(path: string, nowMs = Date.now()): Promise<boolean> {
  const tmp = await writeTemp(path, await freshKeysetFile(nowMs));
  try {
    await link(tmp, path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    return false;
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

async function readKeysetText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new OidcKeysetError(
        `OIDC keyset ${path} does not exist; create it with \`BROKER_OIDC_KEY_PATH=${path} npm run oidc:rotate\` (or point BROKER_OIDC_KEY_PATH at the existing one)`,
      );
    }
    throw new OidcKeysetError(`cannot read OIDC keyset ${path}: ${(e as Error).message}`);
  }
}

export interface OidcRotation {
  /** kid of the new signing key. */
  activeKid: string;
  /** kid of the key it replaced (undefined when the keyset was just created). */
  retiredKid?: string;
  /** When the retired key leaves the JWKS. */
  retiredDropAfter?: string;
  /** kids of retired keys pruned from the file because they were past drop_after. */
  dropped: string[];
  created: boolean;
}

/**
 * Rotates the keyset at `path`: a new key signs from now on, the previous one stays published
 * for `retentionSeconds`, keys already past their drop_after are pruned. Creates the keyset when
 * the file is missing. Run one rotation at a time (it is an operator command).
 */
export async function rotateOidcKeyset(path: string, opts: { retentionSeconds: number; nowMs?: number }): Promise<OidcRotation> {
  const nowMs = opts.nowMs ?? Date.now();
  if (await createOidcKeysetIfMissing(path, nowMs)) {
    const fresh = await parseOidcKeyset(await readKeysetText(path), path);
    return { activeKid: fresh.active.kid, dropped: [], created: true };
  }
  const current = await parseOidcKeyset(await readKeysetText(path), path);
  const now = new Date(nowMs).toISOString();
  const dropAfter = new Date(nowMs + opts.retentionSeconds * 1000).toISOString();
  const dropped: string[] = [];
  const kept: OidcKeyEntry[] = [];
  for (const e of current.entries) {
    if (e.jwk.kid === current.active.kid) {
      kept.push({ ...e, retired_at: now, drop_after: dropAfter });
    } else if (e.drop_after !== null && Date.parse(e.drop_after) <= nowMs) {
      dropped.push(e.jwk.kid as string);
    } else {
      kept.push(e);
    }
  }
  const jwk = await generateSigningKeyJwk();
  await writeOidcKeyset(path, {
    version: 1,
    active_kid: jwk.kid as string,
    keys: [{ jwk, created_at: now, retired_at: null, drop_after: null }, ...kept],
  });
  return { activeKid: jwk.kid as string, retiredKid: current.active.kid, retiredDropAfter: dropAfter, dropped, created: false };
}

/**
 * The keyset as the processes use it: loaded once, re-read when the file changes (checked at
 * most every `recheckMs`), so a rotation takes effect without a restart. In development the file
 * is created on first use; in production it must exist.
 */
export class OidcKeyStore {
  private cached?: { keyset: OidcKeyset; signature: string };
  private checkedAt = 0;
  private loading?: Promise<OidcKeyset>;

  constructor(
    readonly path: string,
    private readonly opts: { createIfMissing: boolean; recheckMs: number },
  ) {}

  static fromConfig(config: Config): OidcKeyStore {
    // Production never falls back to the development keyset under BROKER_DATA_DIR (loadConfig refuses it too).
    if (config.isProduction && !config.BROKER_OIDC_KEY_PATH)
      throw new OidcKeysetError('BROKER_OIDC_KEY_PATH is required in production (create the keyset with `BROKER_OIDC_KEY_PATH=FILE npm run oidc:rotate`)');
    return new OidcKeyStore(oidcKeysetPath(config), { createIfMissing: !config.isProduction, recheckMs: config.BROKER_OIDC_KEY_RECHECK_MS });
  }

  /** The current keyset; throws OidcKeysetError when the file is missing or unusable. */
  async current(): Promise<OidcKeyset> {
    if (this.cached && Date.now() - this.checkedAt < this.opts.recheckMs) return this.cached.keyset;
    this.loading ??= this.refresh().finally(() => {
      this.loading = undefined;
    });
    return this.loading;
  }

  private async refresh(): Promise<OidcKeyset> {
    let st;
    try {
      st = await stat(this.path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || !this.opts.createIfMissing) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') await readKeysetText(this.path); // throws the helpful message
        throw e;
      }
      await createOidcKeysetIfMissing(this.path);
      st = await stat(this.path);
    }
    const signature = `${st.ino}:${st.size}:${st.mtimeMs}`;
    if (!this.cached || this.cached.signature !== signature) {
      const keyset = await parseOidcKeyset(await readKeysetText(this.path), this.path);
      this.cached = { keyset, signature };
    }
    this.checkedAt = Date.now();
    return this.cached.keyset;
  }
}
