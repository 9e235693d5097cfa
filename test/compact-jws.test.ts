import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { teeTokenDigest } from '../api/plugins/auth';
import { generateTeeKeyPair, signTeeJwt, teeClaims } from '../fixtures/tee/jwt';
import { assertCanonicalCompactJws, canonicalCompactJws, isCanonicalBase64url, JwsSpellingError } from '../lib/compact-jws';
import { otherSpellings } from './adversarial-tokens';

/** The one spelling rule for the JWTs the broker takes (lib/compact-jws.ts) and what records a token by. */

void describe('canonical base64url', () => {
  void test('a segment as Buffer writes it is canonical; padding, "+" "/", a dangling character or unused bits set are not', () => {
    for (let n = 0; n <= 40; n += 1) assert.ok(isCanonicalBase64url(randomBytes(n).toString('base64url')), `${n} bytes`);
    assert.equal(isCanonicalBase64url('QQ'), true); // "A"
    for (const bad of ['QQ==', 'QR', 'QQ=', 'a+b/', 'abcde', 'ab c', 'Zm9v\n']) assert.equal(isCanonicalBase64url(bad), false, bad);
  });

  void test('every other spelling of a TEE token is refused, and maps to one canonical form and one digest', async () => {
    const key = await generateTeeKeyPair();
    const token = signTeeJwt(key.privateKey, teeClaims(`0x${'ab'.repeat(32)}`, 'access', 'agentkeys', 1_800_000_000));
    assert.doesNotThrow(() => assertCanonicalCompactJws(token));
    const secret = randomBytes(32);
    const spellings = otherSpellings(token);
    assert.equal(spellings.length, 15);
    for (const s of spellings) {
      assert.throws(() => assertCanonicalCompactJws(s), JwsSpellingError);
      assert.equal(canonicalCompactJws(s), token);
      assert.equal(teeTokenDigest(secret, 'revoked-tee-token', s), teeTokenDigest(secret, 'revoked-tee-token', token));
    }
    // A padded header or payload is refused by name.
    const [h, p, sig] = token.split('.');
    assert.throws(() => assertCanonicalCompactJws(`${h}.${p}=.${sig}`), /payload segment/);
    assert.throws(() => assertCanonicalCompactJws(`${h}.${p}`), /not a JWT: 3 segments expected/);
    assert.notEqual(teeTokenDigest(secret, 'tee-token', token), teeTokenDigest(secret, 'revoked-tee-token', token), 'the purposes do not share digests');
  });
});
