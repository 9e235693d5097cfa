import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { formatSerdeFloat, serdeNumberText } from '../lib/serde-number';

/**
 * JSON numbers as serde_json reads and writes them (lib/serde-number.ts), against what serde_json
 * itself did. `test/serde-number-vectors.json` holds 500 number texts — edge cases (u64/i64 bounds,
 * `-0`, subnormals, 1e308 and past it, more digits than a u64 holds, exponents past i32) and
 * random integers, decimals and exponent forms — each with what a reference program printed after
 * `serde_json::from_str::<Value>` and `serde_json::to_string` (null where serde_json refused the
 * text). The program was built against Debian's serde_json 1.0.87; its number reading
 * (`parse_integer` … `f64_from_parts` in `src/de.rs`) is the same as 1.0.149's for valid JSON, and
 * it wrote floats with ryu, so a positive exponent is shown here as zmij writes it (`e+21` for
 * ryu's `e21`: the one difference zmij's own `tests/ryu_comparison.rs` allows).
 */

const vectors = JSON.parse(readFileSync(join(__dirname, 'serde-number-vectors.json'), 'utf8')) as [string, string | null][];

void describe('serde_json number spellings', () => {
  void test('500 reference read-and-write results, refusals included', () => {
    assert.equal(vectors.length, 500);
    const wrong: string[] = [];
    for (const [text, expected] of vectors) {
      let got: string | null;
      try {
        got = serdeNumberText(text);
      } catch {
        got = null;
      }
      if (got !== expected) wrong.push(`${text}: expected ${String(expected)}, got ${String(got)}`);
    }
    assert.deepEqual(wrong, []);
  });

  void test('the fast path is serde_json’s, not a correctly rounded read', () => {
    // Inputs whose correctly rounded f64 differs from serde_json's: the spelling must follow serde_json.
    let differ = 0;
    for (const [text, expected] of vectors) {
      if (expected === null || !/[.eE]/.test(text)) continue;
      if (formatSerdeFloat(Number(text)) !== expected) differ++;
    }
    assert.ok(differ > 0, 'no vector tells the fast path from a correctly rounded read');
  });

  void test('zmij’s pinned spellings (dtolnay/zmij 1.0.21 tests/test.rs)', () => {
    for (const [value, text] of [
      [6.62607015e-34, '6.62607015e-34'],
      [5.444310685350916e14, '544431068535091.6'],
      [5e-324, '5e-324'],
      [1.2e-322, '1.2e-322'],
      [-4.932096661796888e-226, '-4.932096661796888e-226'],
      [3.439070283483335e35, '3.439070283483335e+35'],
      [6.606854224493745e-17, '6.606854224493745e-17'],
      [6.079537928711555e61, '6.079537928711555e+61'],
      [9.061488e15, '9061488000000000.0'],
      [1.0, '1.0'],
      [0.0, '0.0'],
      [-0.0, '-0.0'],
    ] as const) {
      assert.equal(formatSerdeFloat(value), text, String(value));
    }
  });
});
