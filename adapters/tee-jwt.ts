import { createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  calculateJwkThumbprint,
  createRemoteJWKSet,
  decodeProtectedHeader,
  errors,
  jwtVerify,
  type CryptoKey,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import type { ReadinessCheck } from '../lib/readiness';
import type { Config } from '../lib/config';
import { OMNI_ACCOUNT_RE } from '../lib/omni';
import { assertCanonicalCompactJws, JwsSpellingError } from '../lib/compact-jws';
import { AgentKeysError } from '../lib/errors';

export interface TeeTokenClaims {
  sub: string;
  typ: 'access' | 'id';
  exp: number;
  aud: string;
}

export interface TeeTokenVerifier {
  /** Resolves the verified claims or throws an Error whose message says why the token is refused. */
  verify(token: string): Promise<TeeTokenClaims>;
}

/**
 * Verification of the JWTs the Heima TEE worker issues (docs/contracts.md §2): RS256 only, no `kid`
 * upstream, claims `sub` (OmniAccount), `typ` ("access" | "id"), `exp`, `aud` (= client id).
 *
 * The key comes from config, loaded once: `BROKER_TEE_JWT_PUBLIC_KEY` (the byte list the TEE logs,
 * PEM SPKI or PKCS#1 text, the hex of the PKCS#1 DER, or a path to a file holding one of them) or `BROKER_TEE_JWKS_URL`
 * (fetched once, cached and refreshed by jose).
 *
 * `kid` policy: with a static key a token without `kid` (what the TEE sends) is verified against
 * that key; a token carrying a `kid` is accepted only when the kid equals the configured key's
 * RFC 7638 thumbprint, anything else is refused before any signature check. With a JWKS a `kid`
 * must name a published key; a token without `kid` (all real TEE tokens) is accepted when one of
 * the published RSA keys verifies it, so a JWKS can carry the old and the new key during a rotation.
 */

export class TeeKeyError extends AgentKeysError {
  override readonly code: string = 'ERR_TEE_KEY';
  override name = 'TeeKeyError';
}

const MIN_RSA_BITS = 2048;

function rsaKeyOrThrow(key: KeyObject, what: string): KeyObject {
  if (key.type !== 'public') throw new TeeKeyError(`${what} is not a public key`);
  if (key.asymmetricKeyType !== 'rsa') throw new TeeKeyError(`${what} is a ${key.asymmetricKeyType ?? 'unknown'} key; the TEE signs with RSA`);
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < MIN_RSA_BITS) throw new TeeKeyError(`${what} is RSA-${bits}; at least RSA-${MIN_RSA_BITS} is required`);
  return key;
}

function fromPem(pem: string, what: string): KeyObject {
  // createPublicKey would derive the public half of a private key: never take a private key here.
  if (/PRIVATE KEY/.test(pem)) throw new TeeKeyError(`${what} is a private key; configure the TEE's public key only`);
  try {
    // createPublicKey reads "BEGIN PUBLIC KEY" (SPKI) and "BEGIN RSA PUBLIC KEY" (PKCS#1) alike.
    return createPublicKey({ key: pem, format: 'pem' });
  } catch (e) {
    throw new TeeKeyError(`${what} is not a readable PEM public key: ${(e as Error).message}`);
  }
}

const HEX_RE = /^(0x)?[0-9a-fA-F]+$/;

/**
 * The TEE logs its JWT public key as the Rust `Debug` rendering of the PKCS#1 DER bytes:
 * `info!("Auth token (JWT) RSA public_key: {:?}", public_key.as_bytes())` →
 * `[48, 130, 1, 10, 2, 130, 1, 1, 0, …]` (litentry/heima
 * `tee-worker/omni-executor/rpc-server/src/auth_token_key_store.rs`). Accepted with or without the
 * brackets, with any whitespace or line breaks between the numbers, and with the log line's text
 * before the list (`… RSA public_key: [48, 130, …]`).
 */
const BYTE_LIST_RE = /^\[?\s*\d{1,3}(\s*,\s*\d{1,3})+\s*,?\s*\]?$/;

function byteListOf(text: string): string | undefined {
  const marker = /public_key:\s*(\[[\s\S]*\])/.exec(text);
  const candidate = (marker?.[1] ?? text).trim();
  return BYTE_LIST_RE.test(candidate) ? candidate : undefined;
}

function fromByteList(list: string, what: string): KeyObject {
  const numbers = list
    .replace(/[[\]\s]/g, '')
    .replace(/,$/, '')
    .split(',')
    .map(Number);
  if (numbers.some((n) => !Number.isInteger(n) || n < 0 || n > 255)) throw new TeeKeyError(`${what} is a byte list with a value outside 0-255`);
  return fromDer(Buffer.from(numbers), what, 'a byte list');
}

function fromDer(der: Buffer, what: string, form: string): KeyObject {
  for (const type of ['pkcs1', 'spki'] as const) {
    try {
      return createPublicKey({ key: der, format: 'der', type });
    } catch {
      /* try the next encoding */
    }
  }
  throw new TeeKeyError(`${what} is ${form} but neither a PKCS#1 nor an SPKI DER public key`);
}

/** Which form a BROKER_TEE_JWT_PUBLIC_KEY value was read as (keygen tee-thumbprint prints it). */
export type TeeKeyForm = 'pem' | 'der-hex' | 'debug-byte-list' | 'file-pem' | 'file-der-hex' | 'file-debug-byte-list';

/** Parses a key value that is not a path; undefined when it is none of the inline forms. */
function parseInline(text: string, what: string): { key: KeyObject; form: 'pem' | 'der-hex' | 'debug-byte-list' } | undefined {
  if (text.includes('-----BEGIN')) return { key: fromPem(text.replace(/\\n/g, '\n'), what), form: 'pem' };
  const list = byteListOf(text);
  if (list !== undefined) return { key: fromByteList(list, what), form: 'debug-byte-list' };
  if (HEX_RE.test(text) && text.replace(/^0x/i, '').length % 2 === 0 && text.length >= 128) {
    return { key: fromDer(Buffer.from(text.replace(/^0x/i, ''), 'hex'), what, 'hex'), form: 'der-hex' };
  }
  return undefined;
}

/**
 * Parses BROKER_TEE_JWT_PUBLIC_KEY and says which form it was: PEM text (SPKI or PKCS#1; `\n`
 * escapes allowed for one-line env values), the TEE's log line / Rust `Debug` byte list of the
 * PKCS#1 DER, the hex of a PKCS#1 (or SPKI) DER, or a path to a file holding any of these.
 */
export function parseTeePublicKeyWithForm(value: string, what = 'BROKER_TEE_JWT_PUBLIC_KEY'): { key: KeyObject; form: TeeKeyForm } {
  const text = value.trim();
  const inline = parseInline(text, what);
  if (inline) return { key: rsaKeyOrThrow(inline.key, what), form: inline.form };
  let file: string;
  try {
    file = readFileSync(text, 'utf8').trim();
  } catch (e) {
    throw new TeeKeyError(
      `${what} is neither a PEM, the TEE's logged byte list, the hex of a DER key, nor a readable file: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  const inFile = `${what} (file ${text})`;
  const fromFile = parseInline(file, inFile);
  if (!fromFile) throw new TeeKeyError(`${inFile} holds neither a PEM, the TEE's logged byte list, nor the hex of a DER public key`);
  return { key: rsaKeyOrThrow(fromFile.key, inFile), form: `file-${fromFile.form}` };
}

/** parseTeePublicKeyWithForm without the form. */
export function parseTeePublicKey(value: string, what = 'BROKER_TEE_JWT_PUBLIC_KEY'): KeyObject {
  return parseTeePublicKeyWithForm(value, what).key;
}

/** The RFC 7638 thumbprint of an RSA public key: what /readyz and `keygen tee-thumbprint` print. */
export function teeKeyThumbprint(key: KeyObject): Promise<string> {
  return calculateJwkThumbprint(key.export({ format: 'jwk' }));
}

export class TeeTokenError extends AgentKeysError {
  override readonly code: string = 'ERR_TEE_TOKEN';
  override name = 'TeeTokenError';
}

export interface TeeVerifierOptions {
  /** The expected `aud` (BROKER_CLIENT_ID). */
  audience: string;
  /** Milliseconds since the epoch: the broker's clock for `exp`. */
  now?: () => number;
}

/** A TeeTokenVerifier that can also say what it trusts and whether that is usable (/readyz). */
export interface ConfiguredTeeVerifier extends TeeTokenVerifier {
  /** e.g. "static RSA-2048 key, thumbprint …" or "JWKS https://…". */
  readonly source: string;
  check(): Promise<{ ok: boolean; detail: string }>;
}

function claimsOrThrow(payload: JWTPayload, audience: string): TeeTokenClaims {
  // aud was checked by jwtVerify; the TEE sends it as a plain string.
  const { sub, typ, exp } = payload as JWTPayload & { typ?: unknown };
  if (typeof sub !== 'string' || !OMNI_ACCOUNT_RE.test(sub)) throw new TeeTokenError('sub must be an OmniAccount (0x + 64 lower-case hex)');
  if (typ !== 'access' && typ !== 'id') throw new TeeTokenError('typ claim must be "access" or "id"');
  if (typeof exp !== 'number') throw new TeeTokenError('exp claim is required');
  return { sub, typ, exp, aud: audience };
}

async function verifyPayload(token: string, key: KeyObject | CryptoKey | JWTVerifyGetKey, opts: TeeVerifierOptions): Promise<JWTPayload> {
  const now = opts.now?.();
  const options = {
    algorithms: ['RS256'],
    audience: opts.audience,
    requiredClaims: ['sub', 'exp', 'aud'],
    ...(now !== undefined ? { currentDate: new Date(now) } : {}),
  };
  try {
    return (await jwtVerify(token, key as KeyObject, options)).payload;
  } catch (e) {
    if (!(e instanceof errors.JWKSMultipleMatchingKeys)) throw e;
    // A kid-less token (what the TEE sends) and a JWKS with several RSA keys (a rotation):
    // accepted when one of them verifies it.
    for await (const candidate of e) {
      try {
        return (await jwtVerify(token, candidate, options)).payload;
      } catch (inner) {
        if (!(inner instanceof errors.JWSSignatureVerificationFailed)) throw inner;
      }
    }
    throw new errors.JWSSignatureVerificationFailed();
  }
}

async function verifyWith(token: string, key: KeyObject | JWTVerifyGetKey, opts: TeeVerifierOptions): Promise<TeeTokenClaims> {
  try {
    return claimsOrThrow(await verifyPayload(token, key, opts), opts.audience);
  } catch (e) {
    if (e instanceof TeeTokenError) throw e;
    if (e instanceof errors.JWTExpired) throw new TeeTokenError('token expired');
    if (e instanceof errors.JWTClaimValidationFailed)
      throw new TeeTokenError(`claim ${e.claim} ${e.reason === 'check_failed' ? 'has the wrong value' : e.reason}`);
    if (e instanceof errors.JOSEAlgNotAllowed) throw new TeeTokenError('algorithm not allowed (RS256 only)');
    if (e instanceof errors.JWKSNoMatchingKey) throw new TeeTokenError('no trusted key matches the token (unknown kid)');
    if (e instanceof errors.JWSSignatureVerificationFailed) throw new TeeTokenError('signature verification failed');
    if (e instanceof errors.JOSEError) throw new TeeTokenError(`invalid token: ${e.code}`);
    throw new TeeTokenError(`invalid token: ${(e as Error).message}`);
  }
}

/** The protected header of a token spelled canonically (lib/compact-jws.ts); TeeTokenError otherwise. */
function headerOrThrow(token: string): { alg?: string; kid?: string } {
  try {
    assertCanonicalCompactJws(token);
    return decodeProtectedHeader(token);
  } catch (e) {
    if (e instanceof JwsSpellingError) throw new TeeTokenError(e.message);
    throw new TeeTokenError('not a JWT');
  }
}

/** Verifies against one configured RSA public key (what operators get from the TEE's log). */
export async function createStaticTeeVerifier(key: KeyObject, opts: TeeVerifierOptions): Promise<ConfiguredTeeVerifier> {
  const publicKey = rsaKeyOrThrow(key, 'TEE public key');
  const thumbprint = await teeKeyThumbprint(publicKey);
  const bits = publicKey.asymmetricKeyDetails?.modulusLength ?? 0;
  const source = `static RSA-${bits} key, thumbprint ${thumbprint}`;
  return {
    source,
    async verify(token) {
      const { alg, kid } = headerOrThrow(token);
      if (alg !== 'RS256') throw new TeeTokenError(`algorithm ${alg ?? '(none)'} not allowed (RS256 only)`);
      if (kid !== undefined && kid !== thumbprint) throw new TeeTokenError('no trusted key matches the token (unknown kid)');
      return verifyWith(token, publicKey, opts);
    },
    check: () => Promise.resolve({ ok: true, detail: source }),
  };
}

/** Verifies against a JWKS fetched from `url` (cached by jose: 10 min max age, 30 s cooldown). */
export function createJwksTeeVerifier(url: string, opts: TeeVerifierOptions): ConfiguredTeeVerifier {
  const jwks = createRemoteJWKSet(new URL(url), { timeoutDuration: 3000 });
  const source = `JWKS ${url}`;
  return {
    source,
    async verify(token) {
      const { alg } = headerOrThrow(token);
      if (alg !== 'RS256') throw new TeeTokenError(`algorithm ${alg ?? '(none)'} not allowed (RS256 only)`);
      return verifyWith(token, jwks, opts);
    },
    async check() {
      if (!jwks.fresh) await jwks.reload();
      const keys = (jwks.jwks()?.keys ?? []).filter((k) => k.kty === 'RSA' && (k.alg === undefined || k.alg === 'RS256'));
      return keys.length > 0 ? { ok: true, detail: `${source}: ${keys.length} RS256 key(s)` } : { ok: false, detail: `${source} publishes no RSA key` };
    },
  };
}

/**
 * Builds the TEE verifier the configuration asks for, or undefined when none is configured
 * (the TEE callbacks then answer 503 and TEE bearers are refused). Throws TeeKeyError at boot
 * when the configured key is unusable, so a typo cannot start a broker that refuses every login.
 */
export async function createTeeVerifierFromConfig(
  config: Pick<Config, 'BROKER_TEE_JWT_PUBLIC_KEY' | 'BROKER_TEE_JWKS_URL' | 'BROKER_CLIENT_ID'>,
  opts: { now?: () => number } = {},
): Promise<ConfiguredTeeVerifier | undefined> {
  const verifierOpts: TeeVerifierOptions = { audience: config.BROKER_CLIENT_ID, now: opts.now };
  if (config.BROKER_TEE_JWT_PUBLIC_KEY && config.BROKER_TEE_JWKS_URL) {
    throw new TeeKeyError('set either BROKER_TEE_JWT_PUBLIC_KEY or BROKER_TEE_JWKS_URL, not both');
  }
  if (config.BROKER_TEE_JWT_PUBLIC_KEY) return createStaticTeeVerifier(parseTeePublicKey(config.BROKER_TEE_JWT_PUBLIC_KEY), verifierOpts);
  if (config.BROKER_TEE_JWKS_URL) return createJwksTeeVerifier(config.BROKER_TEE_JWKS_URL, verifierOpts);
  return undefined;
}

/** The /readyz part "tee_key": not configured (ready, callbacks answer 503), or the key's state. */
export function teeKeyReadiness(verifier: TeeTokenVerifier | undefined): ReadinessCheck {
  return async () => {
    if (!verifier) return { ok: true, detail: 'not configured: TEE bearers are refused and the TEE callbacks answer 503' };
    const configured = verifier as Partial<ConfiguredTeeVerifier>;
    if (typeof configured.check !== 'function') return { ok: true, detail: 'configured' };
    return configured.check();
  };
}
