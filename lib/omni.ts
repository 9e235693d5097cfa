import { createHash } from 'node:crypto';
import { AgentKeysError } from './errors';

/**
 * OmniAccount derivation, byte-for-byte equal to the Heima TEE's:
 * omni = SHA256(client_id || type_tag || value_bytes), rendered 0x + 64 lower-case hex.
 *
 * Raw-bytes identities (evm 20, substrate 32, bitcoin 33, solana 32) hash their decoded bytes; the
 * text identities hash the upstream `IdentityString` form of their UTF-8 text (see
 * `upstreamIdentityString`), e-mail lower-cased after that.
 *
 * Upstream: litentry/heima `parachain/primitives/src/identity.rs` (`Identity::to_omni_account`,
 * `IdentityString::new`) and `tee-worker/omni-executor/primitives` (`UserId` → `Identity`).
 */

/**
 * Every identity type of the upstream `UserId` / `Identity` enums, as their snake_case serde tag.
 * Upstream versions disagree: older executor `UserId`s have `github` (and `pumpx`, `passkey`) but
 * no `apple`; the newest (`tee-worker/omni-executor/primitives/src/auth.rs`
 * @4a07c15edcd37ee3ab10245772ba466e35a026db) has `apple` and no `github`, as the newest parachain
 * `Identity` has `apple` at index 2 where older ones had `github`.
 * The broker accepts the union, so a callback from any of those builds derives.
 */
export const IDENTITY_TYPES = [
  'email',
  'evm',
  'google',
  'substrate',
  'bitcoin',
  'solana',
  'twitter',
  'discord',
  'github',
  'apple',
  'pumpx',
  'passkey',
] as const;
export type IdentityType = (typeof IDENTITY_TYPES)[number];

/** The text identities: stored in a 64-byte bounded string upstream before hashing. */
export const TEXT_IDENTITY_TYPES: readonly IdentityType[] = ['email', 'google', 'twitter', 'discord', 'github', 'apple', 'pumpx', 'passkey'];

export interface Identity {
  type: IdentityType;
  value: string;
}

export class IdentityError extends AgentKeysError {
  override readonly code: string = 'ERR_IDENTITY';
  override name = 'IdentityError';
}

/**
 * Upstream `IdentityInnerString = BoundedVec<u8, ConstU32<64>>`, built with `truncate_from`
 * (litentry/heima `parachain/primitives/src/identity.rs`, `IdentityString::new`).
 */
export const IDENTITY_STRING_MAX_BYTES = 64;

export interface UpstreamIdentityString {
  /** The bytes upstream hashes (before e-mail lower-casing). */
  bytes: Buffer;
  /** The value was longer than 64 bytes and was cut. */
  truncated: boolean;
  /** The cut split a UTF-8 character, so upstream's `String::from_utf8(..).unwrap_or_default()` made it empty. */
  collapsed: boolean;
}

const utf8Strict = new TextDecoder('utf-8', { fatal: true });

/**
 * What upstream keeps of a text identity value: its UTF-8 bytes cut to the first 64
 * (`BoundedVec::truncate_from`); when the cut splits a character, `to_omni_account` decodes with
 * `String::from_utf8(..).unwrap_or_default()` and hashes the empty string instead.
 */
export function upstreamIdentityString(value: string): UpstreamIdentityString {
  const full = Buffer.from(value, 'utf8');
  if (full.length <= IDENTITY_STRING_MAX_BYTES) return { bytes: full, truncated: false, collapsed: false };
  const cut = full.subarray(0, IDENTITY_STRING_MAX_BYTES);
  try {
    utf8Strict.decode(cut);
    return { bytes: Buffer.from(cut), truncated: true, collapsed: false };
  } catch {
    return { bytes: Buffer.alloc(0), truncated: true, collapsed: true };
  }
}

const HEX_RE = /^(0x)?([0-9a-fA-F]{2})*$/;

function hexBytes(value: string, what: string, expectedLength: number): Buffer {
  if (!HEX_RE.test(value)) throw new IdentityError(`${what} must be hex`);
  const bytes = Buffer.from(value.replace(/^0x/, ''), 'hex');
  if (bytes.length !== expectedLength) throw new IdentityError(`${what} must be ${expectedLength} bytes, got ${bytes.length}`);
  return bytes;
}

const BASE58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
function base58Decode(text: string): Buffer {
  let n = 0n;
  for (const ch of text) {
    const i = BASE58.indexOf(ch);
    if (i < 0) throw new IdentityError('solana address must be base58');
    n = n * 58n + BigInt(i);
  }
  const bytes: number[] = [];
  while (n > 0n) {
    bytes.unshift(Number(n % 256n));
    n /= 256n;
  }
  for (const ch of text) {
    if (ch !== '1') break;
    bytes.unshift(0);
  }
  return Buffer.from(bytes);
}

/** The bytes the TEE hashes for an identity value. */
export function identityValueBytes(identity: Identity): Buffer {
  switch (identity.type) {
    case 'evm':
      return hexBytes(identity.value, 'evm address', 20);
    case 'substrate':
      return hexBytes(identity.value, 'substrate account', 32);
    case 'bitcoin':
      // Upstream `UserId::Bitcoin` → `Address33` (the compressed public key).
      return hexBytes(identity.value, 'bitcoin public key', 33);
    case 'solana': {
      // Upstream takes base58 only; a 0x-hex form of the same 32 bytes is a broker convenience.
      const bytes = identity.value.startsWith('0x') ? hexBytes(identity.value, 'solana address', 32) : base58Decode(identity.value);
      if (bytes.length !== 32) throw new IdentityError(`solana address must be 32 bytes, got ${bytes.length}`);
      return bytes;
    }
    case 'email':
      // Upstream lower-cases after the 64-byte cut: `String::from_utf8(inner).unwrap_or_default().to_lowercase()`.
      return Buffer.from(upstreamIdentityString(identity.value).bytes.toString('utf8').toLowerCase(), 'utf8');
    default:
      return upstreamIdentityString(identity.value).bytes;
  }
}

export function deriveOmniAccount(clientId: string, identity: Identity): string {
  const h = createHash('sha256');
  h.update(Buffer.from(clientId, 'utf8'));
  h.update(Buffer.from(identity.type, 'utf8'));
  h.update(identityValueBytes(identity));
  return `0x${h.digest('hex')}`;
}

/**
 * Refuses a text value over 64 bytes. Upstream hashes only its first 64 bytes (or the empty string
 * when the cut splits a UTF-8 character), so such a value shares its OmniAccount with every value
 * that starts with the same 64 bytes: `<a 64-byte address>.attacker.test` is the account of that
 * address. The broker takes no such value at any door (docs/tee-account.md, "Identity lengths"),
 * so no login lands in an account created for another value. Raw-bytes identities are never cut.
 */
export function assertIdentityFits(identity: Identity): void {
  if (!TEXT_IDENTITY_TYPES.includes(identity.type)) return;
  const { truncated, collapsed } = upstreamIdentityString(identity.value);
  if (!truncated) return;
  throw new IdentityError(
    `value is over ${IDENTITY_STRING_MAX_BYTES} bytes: the TEE hashes only its first ${IDENTITY_STRING_MAX_BYTES}` +
      (collapsed ? ' (here: the empty string, as byte 64 falls inside a UTF-8 character)' : '') +
      ', an account it would share with every value that begins the same way',
  );
}

/** The OmniAccount of an identity the broker takes (assertIdentityFits, then deriveOmniAccount); IdentityError otherwise. */
export function omniAccountOf(clientId: string, identity: Identity): string {
  assertIdentityFits(identity);
  return deriveOmniAccount(clientId, identity);
}

/** True when the text value is at most 64 UTF-8 bytes, i.e. upstream hashes all of it. */
export function fitsIdentityString(value: string): boolean {
  return Buffer.byteLength(value, 'utf8') <= IDENTITY_STRING_MAX_BYTES;
}

export const OMNI_ACCOUNT_RE = /^0x[0-9a-f]{64}$/;

/** The OmniAccount as bare lower-case hex (no 0x): the form AWS principal tags carry. */
export function bareOmniHex(omniAccount: string): string {
  return omniAccount.replace(/^0x/i, '').toLowerCase();
}
