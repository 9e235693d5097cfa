import { randomInt } from 'node:crypto';

/**
 * User codes of the device authorization grant (RFC 8628 §6.1): 8 characters from a base-20
 * alphabet of consonants — no vowels, so no words; none of the letters people confuse with digits
 * (no I, O, U) — 20^8 ≈ 2^34.5 codes, shown as `XXXX-XXXX` so they read aloud in two halves.
 * Input is case-insensitive and ignores dashes and whitespace (§6.1: "the user code SHOULD be
 * compared case-insensitively… punctuation… removed").
 */
export const USER_CODE_ALPHABET = 'BCDFGHJKLMNPQRSTVWXZ';
export const USER_CODE_LENGTH = 8;

/** A fresh user code, normalised (8 letters, no dash): every letter drawn with crypto.randomInt, so uniform. */
export function newUserCode(): string {
  let code = '';
  for (let i = 0; i < USER_CODE_LENGTH; i++) code += USER_CODE_ALPHABET[randomInt(USER_CODE_ALPHABET.length)];
  return code;
}

/** `BCDFGHJK` → `BCDF-GHJK`, the form shown to people. */
export function formatUserCode(normalised: string): string {
  return `${normalised.slice(0, 4)}-${normalised.slice(4)}`;
}

const USER_CODE_RE = new RegExp(`^[${USER_CODE_ALPHABET}]{${USER_CODE_LENGTH}}$`);

/**
 * The one spelling of what a person typed, or undefined when it cannot be a user code: upper case,
 * dashes and whitespace removed. Anything else (another letter, a digit, a wrong length) is no code.
 */
export function normaliseUserCode(input: string): string | undefined {
  if (input.length > 64) return undefined;
  const s = input.replace(/[\s-]/g, '').toUpperCase();
  return USER_CODE_RE.test(s) ? s : undefined;
}

/** The grant type of the token request (RFC 8628 §3.4). */
export const DEVICE_CODE_GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:device_code';

/** The token endpoint's error codes (RFC 8628 §3.5, RFC 6749 §5.2). */
export type DeviceTokenError =
  'authorization_pending' | 'slow_down' | 'access_denied' | 'expired_token' | 'invalid_grant' | 'invalid_request' | 'unsupported_grant_type';

/** RFC 8628 §3.5: on slow_down the client's interval grows by 5 seconds, for this and every later request. */
export const SLOW_DOWN_STEP_SECONDS = 5;
