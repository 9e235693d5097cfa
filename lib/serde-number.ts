import { AgentKeysError } from './errors';

/**
 * A JSON number as serde_json writes it back after reading it into a `serde_json::Value`: the
 * spelling AgentKeys' `canonicalize_json` puts into the text a wallet signs (litentry/agent-terrier
 * 5f79a9f, `crates/agentkeys-broker-server/src/handlers/mint.rs`; its Cargo.lock pins serde_json
 * 1.0.149 with zmij 1.0.21 and no crate of the workspace turns on `float_roundtrip` or
 * `arbitrary_precision`).
 *
 * Reading (serde-rs/json v1.0.149, `src/de.rs`, the functions named below): a number without `.`
 * or exponent is a u64, or an i64 when negative; `-0`, and whole numbers past those ranges, become
 * an f64. Everything else becomes an f64 by serde_json's fast path (not correctly rounded in every
 * case, which is why it is ported here step by step rather than left to `Number()`): the first
 * digits that fit a u64, the rest only counted, times or over one power of ten from its table.
 * An f64 past the range is a parse error (`NumberOutOfRange`).
 *
 * Writing: integers in decimal; an f64 as zmij's `format_finite` (dtolnay/zmij 1.0.21,
 * `src/lib.rs`, `write`): the shortest digits that read back to the same f64, in plain notation
 * for decimal exponents −5 to 15 (`1.0`, `0.0001`, `1000000000000000.0`), else `d.ddde±x`
 * (`1e+16`, `1.5e-7`); ryu, which serde_json used before zmij, wrote `1e16`.
 */

export class SerdeNumberError extends AgentKeysError {
  override readonly code: string = 'ERR_SERDE_NUMBER';
  override name = 'SerdeNumberError';
}

const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);
const I32_MAX = 2 ** 31 - 1;
const I32_MIN = -(2 ** 31);

/** serde_json's `overflow!(a * 10 + b, max)`: would the next digit overflow? */
const overflowsU64 = (sig: bigint, digit: number): boolean => sig >= U64_MAX / 10n && (sig > U64_MAX / 10n || BigInt(digit) > U64_MAX % 10n);
const overflowsI32 = (exp: number, digit: number): boolean => exp >= Math.trunc(I32_MAX / 10) && (exp > Math.trunc(I32_MAX / 10) || digit > I32_MAX % 10);
const saturateI32 = (n: number): number => Math.min(I32_MAX, Math.max(I32_MIN, n));

/** serde_json's `POW10`: the f64 nearest each of 1e0 … 1e308. */
const POW10: readonly number[] = Array.from({ length: 309 }, (_, i) => Number(`1e${i}`));

type Parsed = { kind: 'int'; value: bigint } | { kind: 'float'; value: number };

/** The number's text read as serde_json reads it (default features); throws on what it refuses. */
function readSerdeNumber(text: string): Parsed {
  let pos = 0;
  const at = (i: number): string => text[i] ?? '';
  const isDigit = (c: string): boolean => c >= '0' && c <= '9';
  const outOfRange = (): never => {
    throw new SerdeNumberError('number out of range');
  };
  const positive = at(0) !== '-';
  if (!positive) pos++;

  // f64_from_parts (without float_roundtrip).
  const fromParts = (sig: bigint, exponent: number): number => {
    let f = Number(sig);
    for (;;) {
      // `POW10.get(exponent.wrapping_abs() as usize)`.
      const pow = POW10[Math.abs(exponent)];
      if (pow !== undefined) {
        if (exponent >= 0) {
          f *= pow;
          if (!Number.isFinite(f)) outOfRange();
        } else {
          f /= pow;
        }
        break;
      }
      if (f === 0) break;
      if (exponent >= 0) outOfRange();
      f /= 1e308;
      exponent += 308;
    }
    return positive ? f : -f;
  };
  // parse_exponent and parse_exponent_overflow.
  const exponentPart = (sig: bigint, startingExp: number): number => {
    pos++; // e | E
    let positiveExp = true;
    if (at(pos) === '+') pos++;
    else if (at(pos) === '-') {
      positiveExp = false;
      pos++;
    }
    if (!isDigit(at(pos))) throw new SerdeNumberError('invalid number');
    let exp = Number(at(pos++));
    while (isDigit(at(pos))) {
      const digit = Number(at(pos++));
      if (overflowsI32(exp, digit)) {
        if (sig !== 0n && positiveExp) outOfRange();
        while (isDigit(at(pos))) pos++;
        return positive ? 0 : -0;
      }
      exp = exp * 10 + digit;
    }
    return fromParts(sig, saturateI32(positiveExp ? startingExp + exp : startingExp - exp));
  };
  // parse_decimal_overflow: further digits are dropped.
  const decimalOverflow = (sig: bigint, exponent: number): number => {
    while (isDigit(at(pos))) pos++;
    return at(pos) === 'e' || at(pos) === 'E' ? exponentPart(sig, exponent) : fromParts(sig, exponent);
  };
  // parse_decimal.
  const decimalPart = (sigIn: bigint, exponentBefore: number): number => {
    let sig = sigIn;
    pos++; // '.'
    let exponentAfter = 0;
    while (isDigit(at(pos))) {
      const digit = Number(at(pos));
      if (overflowsU64(sig, digit)) return decimalOverflow(sig, exponentBefore + exponentAfter);
      pos++;
      sig = sig * 10n + BigInt(digit);
      exponentAfter--;
    }
    if (exponentAfter === 0) throw new SerdeNumberError('invalid number');
    const exponent = exponentBefore + exponentAfter;
    return at(pos) === 'e' || at(pos) === 'E' ? exponentPart(sig, exponent) : fromParts(sig, exponent);
  };
  // parse_long_integer: digits past a u64 only count.
  const longInteger = (sig: bigint): number => {
    let exponent = 0;
    for (;;) {
      const c = at(pos);
      if (isDigit(c)) {
        pos++;
        exponent++;
      } else if (c === '.') return decimalPart(sig, exponent);
      else if (c === 'e' || c === 'E') return exponentPart(sig, exponent);
      else return fromParts(sig, exponent);
    }
  };

  const finish = (p: Parsed): Parsed => {
    if (pos !== text.length) throw new SerdeNumberError('invalid number');
    return p;
  };
  // parse_integer and parse_number.
  const first = at(pos++);
  if (!isDigit(first)) throw new SerdeNumberError('invalid number');
  let sig = BigInt(first);
  if (first === '0') {
    if (isDigit(at(pos))) throw new SerdeNumberError('invalid number');
  } else {
    while (isDigit(at(pos))) {
      const digit = Number(at(pos));
      if (overflowsU64(sig, digit)) return finish({ kind: 'float', value: longInteger(sig) });
      pos++;
      sig = sig * 10n + BigInt(digit);
    }
  }
  if (at(pos) === '.') return finish({ kind: 'float', value: decimalPart(sig, 0) });
  if (at(pos) === 'e' || at(pos) === 'E') return finish({ kind: 'float', value: exponentPart(sig, 0) });
  if (positive) return finish({ kind: 'int', value: sig });
  // `(significand as i64).wrapping_neg()`: a float on `-0` and below i64::MIN.
  return finish(sig === 0n || -sig < I64_MIN ? { kind: 'float', value: -Number(sig) } : { kind: 'int', value: -sig });
}

/** The shortest round-trip digits of a positive finite f64 and the decimal exponent of the first: value = d.ddd × 10^exp. */
function shortestDigits(value: number): { digits: string; exp: number } {
  const [mantissa = '', e] = String(value).split('e');
  const [whole = '', fraction = ''] = mantissa.split('.');
  let digits = whole + fraction;
  let point = whole.length + (e === undefined ? 0 : Number(e));
  const lead = /^0*/.exec(digits)?.[0].length ?? 0;
  digits = digits.slice(lead).replace(/0+$/, '');
  point -= lead;
  return { digits, exp: point - 1 };
}

/** An f64 as zmij's `format_finite` writes it. */
export function formatSerdeFloat(value: number): string {
  if (!Number.isFinite(value)) throw new SerdeNumberError('not a finite number');
  if (value === 0) return Object.is(value, -0) ? '-0.0' : '0.0';
  const sign = value < 0 ? '-' : '';
  const { digits, exp } = shortestDigits(Math.abs(value));
  const length = digits.length;
  if (exp >= -5 && exp <= 15) {
    if (length - 1 <= exp) return `${sign}${digits}${'0'.repeat(exp - (length - 1))}.0`;
    if (exp >= 0) return `${sign}${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
    return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
  }
  const mantissa = length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  return `${sign}${mantissa}e${exp >= 0 ? '+' : '-'}${Math.abs(exp)}`;
}

/** A JSON number's text (RFC 8259 grammar) as serde_json writes it back; throws SerdeNumberError where serde_json refuses it. */
export function serdeNumberText(text: string): string {
  const parsed = readSerdeNumber(text);
  return parsed.kind === 'int' ? parsed.value.toString() : formatSerdeFloat(parsed.value);
}
