import { createHash } from 'node:crypto';
import { AgentKeysError } from './errors';

/**
 * OmniAccount derivation, byte-for-byte equal to the Heima TEE's:
 * omni = SHA256(client_id || type_tag || value_bytes), rendered 0x + 64 lower-case hex.
 * Raw-bytes identities (evm, substrate, bitcoin, solana) hash their decoded bytes; the rest
 * hash their UTF-8 text (email lower-cased).
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
  'apple',
  'pumpx',
  'passkey',
] as const;
export type IdentityType = (typeof IDENTITY_TYPES)[number];

export interface Identity {
  type: IdentityType;
  value: string;
}

export class IdentityError extends AgentKeysError {
  override readonly code: string = 'ERR_IDENTITY';
  override name = 'IdentityError';
}

const HEX_RE = /^(0x)?([0-9a-fA-F]{2})*$/;

function hexBytes(value: string, what: string, expectedLength?: number): Buffer {
  if (!HEX_RE.test(value)) throw new IdentityError(`${what} must be hex`);
  const bytes = Buffer.from(value.replace(/^0x/, ''), 'hex');
  if (expectedLength !== undefined && bytes.length !== expectedLength) {
    throw new IdentityError(`${what} must be ${expectedLength} bytes, got ${bytes.length}`);
  }
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
      return hexBytes(identity.value, 'bitcoin public key');
    case 'solana':
      return HEX_RE.test(identity.value) && identity.value.startsWith('0x')
        ? hexBytes(identity.value, 'solana address', 32)
        : base58Decode(identity.value);
    case 'email':
      return Buffer.from(identity.value.toLowerCase(), 'utf8');
    default:
      return Buffer.from(identity.value, 'utf8');
  }
}

export function deriveOmniAccount(clientId: string, identity: Identity): string {
  const h = createHash('sha256');
  h.update(Buffer.from(clientId, 'utf8'));
  h.update(Buffer.from(identity.type, 'utf8'));
  h.update(identityValueBytes(identity));
  return `0x${h.digest('hex')}`;
}

export const OMNI_ACCOUNT_RE = /^0x[0-9a-f]{64}$/;
