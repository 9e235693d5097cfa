import { AgentKeysError } from './errors';
/**
 * What a wallet signs to log in, and the shape of the signature that comes back (docs/contracts.md §5).
 * Pure and dependency-free: the wallet-login workflow builds and checks messages with it, the API
 * and the activities parse signatures with it. Recovery itself lives in lib/evm-signature.ts.
 *
 * - Stateless EIP-191 message (the dexs-backend pattern): built from the address and a unix
 *   timestamp, accepted within a window of the broker's clock.
 * - EIP-191 challenge: the same text with a `Nonce: <n>` line before the timestamp line.
 * - Sign-In with Ethereum (EIP-4361): built by the broker, parsed strictly and checked field by
 *   field against what was issued (domain, address, URI, version, chain id, nonce, times).
 */

/** Signed messages (and wallet request bodies) larger than this are refused. */
export const MAX_WALLET_MESSAGE_BYTES = 4096;

const GREETING = 'Hi! Welcome to AgentKeys.';
const PURPOSE = 'Sign this message to prove you own this wallet. It sends no transaction and costs no gas.';
export const SIWE_STATEMENT = 'Sign in to AgentKeys.';

export const EVM_ADDRESS_RE = /^0x[0-9a-fA-F]{40}$/;

const ANY_EVM_SPELLING_RE = /^(?:0x)?([0-9a-f]{40})$/i;

/**
 * An EVM address in any spelling (with or without `0x`, any case) as lower-case `0x` text, or
 * undefined when the text is no address: for values other programs pass on as they got them.
 */
export function normalizeEvmAddress(text: string): string | undefined {
  const m = ANY_EVM_SPELLING_RE.exec(text);
  return m ? `0x${(m[1] as string).toLowerCase()}` : undefined;
}
export const ZERO_ADDRESS = '0x0000000000000000000000000000000000000000';
/** EIP-4361: at least 8 alphanumerics. */
export const SIWE_NONCE_RE = /^[A-Za-z0-9]{8,}$/;

/** The stateless login message: lines joined by "\n", no trailing newline; address lower-case. */
export function buildStatelessWalletMessage(address: string, timestamp: number): string {
  return [GREETING, PURPOSE, `Address: ${address.toLowerCase()}`, `Timestamp is ${timestamp}.`].join('\n');
}

/** The EIP-191 challenge: the stateless message with a nonce line before the timestamp line. */
export function buildEip191ChallengeMessage(address: string, nonce: string, timestamp: number): string {
  return [GREETING, PURPOSE, `Address: ${address.toLowerCase()}`, `Nonce: ${nonce}`, `Timestamp is ${timestamp}.`].join('\n');
}

export interface SiweFields {
  /** RFC 3986 authority (host[:port]) of the broker's public URL. */
  domain: string;
  /** EIP-55 checksummed address. */
  address: string;
  statement?: string;
  uri: string;
  version: string;
  chainId: number;
  nonce: string;
  /** RFC 3339 timestamps, as written in the message. */
  issuedAt: string;
  expirationTime?: string;
  notBefore?: string;
  requestId?: string;
  resources?: string[];
}

/** Serialises an EIP-4361 message exactly as the ABNF of the EIP lays it out. */
export function buildSiweMessage(f: SiweFields): string {
  const lines = [`${f.domain} wants you to sign in with your Ethereum account:`, f.address, ''];
  if (f.statement !== undefined) lines.push(f.statement, '');
  lines.push(`URI: ${f.uri}`, `Version: ${f.version}`, `Chain ID: ${f.chainId}`, `Nonce: ${f.nonce}`, `Issued At: ${f.issuedAt}`);
  if (f.expirationTime !== undefined) lines.push(`Expiration Time: ${f.expirationTime}`);
  if (f.notBefore !== undefined) lines.push(`Not Before: ${f.notBefore}`);
  if (f.requestId !== undefined) lines.push(`Request ID: ${f.requestId}`);
  if (f.resources !== undefined) lines.push('Resources:', ...f.resources.map((r) => `- ${r}`));
  return lines.join('\n');
}

export class WalletMessageError extends AgentKeysError {
  override readonly code: string = 'ERR_WALLET_MESSAGE';
  override name = 'WalletMessageError';
}

const RFC3339_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

function utf8Length(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/**
 * Parses an EIP-4361 message strictly: "\n" line endings only, fields in the order of the ABNF,
 * no unknown lines. Throws WalletMessageError saying what is wrong.
 */
export function parseSiweMessage(text: string): SiweFields {
  if (utf8Length(text) > MAX_WALLET_MESSAGE_BYTES) throw new WalletMessageError(`message is larger than ${MAX_WALLET_MESSAGE_BYTES} bytes`);
  if (text.includes('\r')) throw new WalletMessageError('message has CR characters; lines end with "\\n" only');
  const lines = text.split('\n');
  let i = 0;
  const next = (): string | undefined => lines[i++];
  const header = /^(\S+) wants you to sign in with your Ethereum account:$/.exec(next() ?? '');
  if (!header?.[1]) throw new WalletMessageError('first line is not "<domain> wants you to sign in with your Ethereum account:"');
  const address = next() ?? '';
  if (!EVM_ADDRESS_RE.test(address)) throw new WalletMessageError('second line is not an address');
  if (next() !== '') throw new WalletMessageError('expected an empty line after the address');
  let statement: string | undefined;
  if (!(lines[i] ?? '').startsWith('URI: ')) {
    statement = next();
    if (statement === undefined || statement === '' || statement.includes('\n')) throw new WalletMessageError('malformed statement');
    if (next() !== '') throw new WalletMessageError('expected an empty line after the statement');
  }
  const field = (name: string, required: boolean): string | undefined => {
    const line = lines[i];
    if (line?.startsWith(`${name}: `)) {
      i++;
      return line.slice(name.length + 2);
    }
    if (required) throw new WalletMessageError(`missing "${name}:" line`);
    return undefined;
  };
  const uri = field('URI', true) as string;
  const version = field('Version', true) as string;
  const chainIdText = field('Chain ID', true) as string;
  if (!/^[1-9]\d{0,15}$/.test(chainIdText)) throw new WalletMessageError('Chain ID is not a positive integer');
  const nonce = field('Nonce', true) as string;
  const issuedAt = field('Issued At', true) as string;
  const expirationTime = field('Expiration Time', false);
  const notBefore = field('Not Before', false);
  const requestId = field('Request ID', false);
  let resources: string[] | undefined;
  if (lines[i] === 'Resources:') {
    i++;
    resources = [];
    while (i < lines.length && (lines[i] ?? '').startsWith('- ')) resources.push((lines[i++] ?? '').slice(2));
  }
  if (i !== lines.length) throw new WalletMessageError(`unexpected line ${i + 1}`);
  for (const [name, value] of [
    ['Issued At', issuedAt],
    ['Expiration Time', expirationTime],
    ['Not Before', notBefore],
  ] as const) {
    if (value !== undefined && (!RFC3339_RE.test(value) || Number.isNaN(Date.parse(value)))) throw new WalletMessageError(`${name} is not an RFC 3339 time`);
  }
  return {
    domain: header[1],
    address,
    statement,
    uri,
    version,
    chainId: Number(chainIdText),
    nonce,
    issuedAt,
    expirationTime,
    notBefore,
    requestId,
    resources,
  };
}

/** What the broker issued and expects back in a SIWE message. */
export interface SiweExpectation {
  domain: string;
  /** EIP-55 checksummed. */
  address: string;
  uri: string;
  chainId: number;
  nonce: string;
  /** The broker's wallet window: the longest a message may be valid or old. */
  windowSeconds: number;
}

/**
 * Checks every field of a SIWE message against what was issued and against the broker's clock
 * (`nowMs`). viem's validateSiweMessage skips issuedAt and the chain id; this does not. Returns
 * the reason the message is refused, or undefined when it is acceptable.
 */
export function checkSiweMessage(text: string, expected: SiweExpectation, nowMs: number): string | undefined {
  let m: SiweFields;
  try {
    m = parseSiweMessage(text);
  } catch (e) {
    return `not a valid EIP-4361 message: ${(e as Error).message}`;
  }
  if (m.domain !== expected.domain) return `domain "${m.domain}" is not this broker's (${expected.domain})`;
  if (m.address !== expected.address) return 'address does not match the one the challenge was issued for';
  if (m.uri !== expected.uri) return `URI "${m.uri}" is not this broker's (${expected.uri})`;
  if (m.version !== '1') return `Version "${m.version}" is not supported (only 1)`;
  if (m.chainId !== expected.chainId) return `Chain ID ${m.chainId} is not the one issued (${expected.chainId})`;
  if (!SIWE_NONCE_RE.test(m.nonce) || m.nonce !== expected.nonce) return 'nonce is not the one issued';
  const windowMs = expected.windowSeconds * 1000;
  const issuedAt = Date.parse(m.issuedAt);
  if (issuedAt > nowMs) return 'Issued At is in the future';
  if (nowMs - issuedAt > windowMs) return 'message was issued too long ago';
  if (m.expirationTime === undefined) return 'Expiration Time is missing';
  const expiresAt = Date.parse(m.expirationTime);
  if (expiresAt <= nowMs) return 'message has expired';
  if (expiresAt - issuedAt > windowMs) return 'message is valid for longer than the broker allows';
  if (m.notBefore !== undefined && Date.parse(m.notBefore) > nowMs) return 'message is not valid yet (Not Before)';
  return undefined;
}

// ---- the signature that comes back ----------------------------------------------------------------

const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
const HALF_N = SECP256K1_N >> 1n;

/** Longest contract-wallet (ERC-1271 / ERC-6492) signature accepted, in bytes. */
export const MAX_CONTRACT_SIGNATURE_BYTES = 6144;

export interface EoaSignature {
  /** 0x + 130 lower-case hex, v rewritten to 27/28: the form hashed for the replay guard. */
  normalized: string;
  r: bigint;
  s: bigint;
  /** 0 or 1. */
  recoveryBit: 0 | 1;
}

export class SignatureFormatError extends AgentKeysError {
  override readonly code: string = 'ERR_SIGNATURE_FORMAT';
  override name = 'SignatureFormatError';
}

function hexBody(signature: string): string {
  if (typeof signature !== 'string' || !/^0x[0-9a-fA-F]*$/.test(signature)) throw new SignatureFormatError('signature must be 0x-prefixed hex');
  const body = signature.slice(2);
  if (body.length % 2 !== 0) throw new SignatureFormatError('signature has an odd number of hex digits');
  return body.toLowerCase();
}

/**
 * Parses a 65-byte r || s || v ECDSA signature. v may be 27/28 or 0/1 (both mean the same
 * signature and normalise to 27/28). High-s signatures are refused (EIP-2): they are the
 * malleated twin of a low-s one and would otherwise slip past a replay guard keyed on the bytes.
 */
export function parseEoaSignature(signature: string): EoaSignature {
  const body = hexBody(signature);
  if (body.length !== 130) throw new SignatureFormatError(`signature must be 65 bytes (r, s, v), got ${body.length / 2}`);
  const r = BigInt(`0x${body.slice(0, 64)}`);
  const s = BigInt(`0x${body.slice(64, 128)}`);
  const v = parseInt(body.slice(128), 16);
  if (v !== 0 && v !== 1 && v !== 27 && v !== 28) throw new SignatureFormatError(`signature v must be 27/28 (or 0/1), got ${v}`);
  if (r === 0n || r >= SECP256K1_N) throw new SignatureFormatError('signature r is out of range');
  if (s === 0n || s >= SECP256K1_N) throw new SignatureFormatError('signature s is out of range');
  if (s > HALF_N) throw new SignatureFormatError('signature has a high s value (malleable form); sign again with a standard wallet');
  const recoveryBit = (v >= 27 ? v - 27 : v) as 0 | 1;
  return { normalized: `0x${body.slice(0, 128)}${recoveryBit === 0 ? '1b' : '1c'}`, r, s, recoveryBit };
}

/**
 * Checks a signature's shape and returns its normalised hex: a 65-byte signature is always read
 * as an ECDSA signature (see parseEoaSignature); other lengths are accepted only as contract-wallet
 * signatures (ERC-1271 / ERC-6492), when the broker can ask a chain about them.
 */
export function normalizeWalletSignature(signature: string, contractWallets: boolean): string {
  const body = hexBody(signature);
  if (body.length === 130) return parseEoaSignature(signature).normalized;
  if (!contractWallets) throw new SignatureFormatError(`signature must be 65 bytes (r, s, v), got ${body.length / 2}`);
  if (body.length === 0 || body.length / 2 > MAX_CONTRACT_SIGNATURE_BYTES) {
    throw new SignatureFormatError(`contract-wallet signatures must be 1 to ${MAX_CONTRACT_SIGNATURE_BYTES} bytes`);
  }
  return `0x${body}`;
}
