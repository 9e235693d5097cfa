import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createHash } from 'node:crypto';
import {
  assertIdentityFits,
  bareOmniHex,
  deriveOmniAccount,
  IDENTITY_TYPES,
  IdentityError,
  identityValueBytes,
  omniAccountOf,
  OMNI_ACCOUNT_RE,
  upstreamIdentityString,
  type Identity,
  type IdentityType,
} from '../lib/omni';

const EVM = '0x1234567890abcdef1234567890abcdef12345678';

void describe('OmniAccount derivation (docs/contracts.md §1)', () => {
  void test('the four pinned vectors', () => {
    const vectors: [string, Identity, string][] = [
      ['agentkeys', { type: 'evm', value: EVM }, '0xf77b15b548b5e46fe7bc01673db04ab9de4c3354690082f665a6d9704a9db567'],
      ['wildmeta', { type: 'evm', value: EVM }, '0x864a6ed89ff9ee83daf52181a1a734b7cda5752dcb5ce5d326aea99f7e207502'],
      ['agentkeys', { type: 'email', value: 'Onboard@Example.com' }, '0xf677ce5629707f03b345d016721da17ddbe80cc23038e85dbf18ce71f9b340a9'],
      ['agentkeys', { type: 'google', value: '110169484474386276334' }, '0xaaef30b182565ce179741392d311b29bbd968ba9f5e722ca4155fbcb7fa68646'],
    ];
    for (const [clientId, identity, omni] of vectors) {
      const got = deriveOmniAccount(clientId, identity);
      assert.equal(got, omni, `${clientId} ${identity.type} ${identity.value}`);
      assert.match(got, OMNI_ACCOUNT_RE);
    }
  });

  void test('evm hashes the 20 raw address bytes: case and 0x prefix do not matter', () => {
    const pinned = '0xf77b15b548b5e46fe7bc01673db04ab9de4c3354690082f665a6d9704a9db567';
    assert.equal(deriveOmniAccount('agentkeys', { type: 'evm', value: EVM.toUpperCase().replace('0X', '0x') }), pinned);
    assert.equal(deriveOmniAccount('agentkeys', { type: 'evm', value: EVM.slice(2) }), pinned);
    assert.deepEqual(identityValueBytes({ type: 'evm', value: EVM }), Buffer.from(EVM.slice(2), 'hex'));
  });

  void test('email is lower-cased; google sub and other text identities are hashed as given', () => {
    const pinned = '0xf677ce5629707f03b345d016721da17ddbe80cc23038e85dbf18ce71f9b340a9';
    assert.equal(deriveOmniAccount('agentkeys', { type: 'email', value: 'onboard@example.com' }), pinned);
    assert.equal(deriveOmniAccount('agentkeys', { type: 'email', value: 'ONBOARD@EXAMPLE.COM' }), pinned);
    // The type tag is part of the hash: the same text under another type is another account.
    assert.notEqual(deriveOmniAccount('agentkeys', { type: 'google', value: 'onboard@example.com' }), pinned);
    assert.notEqual(
      deriveOmniAccount('agentkeys', { type: 'google', value: '110169484474386276334' }),
      deriveOmniAccount('agentkeys', { type: 'twitter', value: '110169484474386276334' }),
    );
  });

  void test('bad inputs are refused with an IdentityError, never hashed', () => {
    const bad: [Identity, RegExp][] = [
      [{ type: 'evm', value: '0x1234' }, /20 bytes/],
      [{ type: 'evm', value: `${EVM}00` }, /20 bytes/],
      [{ type: 'evm', value: '0x1234567890abcdef1234567890abcdef1234567g' }, /hex/],
      [{ type: 'evm', value: '0x123' }, /hex/],
      [{ type: 'evm', value: 'not an address' }, /hex/],
      [{ type: 'evm', value: '' }, /20 bytes/],
      [{ type: 'substrate', value: EVM }, /32 bytes/],
      [{ type: 'solana', value: '0OIl' }, /base58/],
    ];
    for (const [identity, message] of bad) {
      assert.throws(
        () => deriveOmniAccount('agentkeys', identity),
        (e: unknown) => e instanceof IdentityError && message.test(e.message),
        `${identity.type} ${identity.value}`,
      );
    }
  });
});

/**
 * Upstream keeps a text identity in `IdentityInnerString = BoundedVec<u8, ConstU32<64>>` built with
 * `truncate_from`, and `to_omni_account` hashes `String::from_utf8(inner).unwrap_or_default()`
 * (lower-cased for e-mail): litentry/heima `parachain/primitives/src/identity.rs`. The expected
 * hashes below are built from hand-cut bytes, not from the code under test.
 */
void describe('the 64-byte IdentityString rule', () => {
  const sha = (clientId: string, tag: string, bytes: Buffer) => `0x${createHash('sha256').update(clientId).update(tag).update(bytes).digest('hex')}`;
  const ascii = (n: number) => 'g'.repeat(n);

  void test('google sub of 63 and 64 bytes hashes whole; 65 and 70 bytes hash their first 64', () => {
    for (const n of [63, 64]) {
      const v = ascii(n);
      assert.equal(deriveOmniAccount('agentkeys', { type: 'google', value: v }), sha('agentkeys', 'google', Buffer.from(v)), `${n} bytes`);
      assert.deepEqual(upstreamIdentityString(v), { bytes: Buffer.from(v), truncated: false, collapsed: false });
    }
    for (const n of [65, 70]) {
      const v = `${ascii(64)}${'Z'.repeat(n - 64)}`;
      assert.equal(Buffer.byteLength(v), n);
      const got = deriveOmniAccount('agentkeys', { type: 'google', value: v });
      assert.equal(got, sha('agentkeys', 'google', Buffer.from(ascii(64))), `${n} bytes`);
      // Two different values with the same first 64 bytes are one account upstream, and here.
      assert.equal(got, deriveOmniAccount('agentkeys', { type: 'google', value: ascii(64) }));
      assert.deepEqual(upstreamIdentityString(v), { bytes: Buffer.from(ascii(64)), truncated: true, collapsed: false });
    }
  });

  void test('a 70-byte e-mail is cut to 64 bytes, then lower-cased (upstream order)', () => {
    const local = 'A'.repeat(58);
    const email = `${local}@Example.com`; // 58 + 1 + 11 = 70 bytes
    assert.equal(Buffer.byteLength(email), 70);
    const first64 = email.slice(0, 64); // ASCII: bytes = chars
    assert.equal(deriveOmniAccount('agentkeys', { type: 'email', value: email }), sha('agentkeys', 'email', Buffer.from(first64.toLowerCase())));
  });

  void test('a multi-byte character across byte 64 collapses the value to the empty string', () => {
    // 63 ASCII bytes + "é" (2 bytes: 63, 64) → the cut at 64 keeps only the first byte of "é".
    const v = `${ascii(63)}é-tail`;
    assert.equal(Buffer.byteLength(v), 63 + 2 + 5);
    assert.deepEqual(upstreamIdentityString(v), { bytes: Buffer.alloc(0), truncated: true, collapsed: true });
    assert.equal(deriveOmniAccount('agentkeys', { type: 'google', value: v }), sha('agentkeys', 'google', Buffer.alloc(0)));
    assert.equal(deriveOmniAccount('agentkeys', { type: 'email', value: `${ascii(62)}€@x.io` }), sha('agentkeys', 'email', Buffer.alloc(0)));
    assert.throws(() => assertIdentityFits({ type: 'google', value: v }), /the empty string/);
    // A character that ends exactly at byte 64 is kept whole.
    const cutClean = `${ascii(62)}é${'x'.repeat(6)}`;
    assert.equal(deriveOmniAccount('agentkeys', { type: 'twitter', value: cutClean }), sha('agentkeys', 'twitter', Buffer.from(`${ascii(62)}é`)));
  });

  void test('the broker takes a text value of at most 64 bytes: one more would share the account of its first 64', () => {
    const v64 = `${'v'.repeat(52)}@example.com`;
    assert.equal(Buffer.byteLength(v64), 64);
    assert.doesNotThrow(() => assertIdentityFits({ type: 'email', value: v64 }));
    assert.equal(omniAccountOf('agentkeys', { type: 'email', value: v64 }), deriveOmniAccount('agentkeys', { type: 'email', value: v64 }));
    const longer = `${v64}.attacker.test`;
    // The TEE derives both to one account; the broker refuses the longer one at every door.
    assert.equal(deriveOmniAccount('agentkeys', { type: 'email', value: longer }), deriveOmniAccount('agentkeys', { type: 'email', value: v64 }));
    assert.throws(() => omniAccountOf('agentkeys', { type: 'email', value: longer }), IdentityError);
    assert.throws(() => assertIdentityFits({ type: 'email', value: `${v64}x` }), /over 64 bytes/);
    assert.throws(() => assertIdentityFits({ type: 'twitter', value: `${ascii(62)}é${'x'.repeat(6)}` }), IdentityError);
    assert.doesNotThrow(() => assertIdentityFits({ type: 'github', value: `${ascii(62)}é` }), '64 bytes with a character ending at byte 64');
    // Raw-bytes identities are never cut.
    assert.doesNotThrow(() => assertIdentityFits({ type: 'evm', value: EVM }));
  });

  void test('every upstream identity type derives; github and apple included; bitcoin is a 33-byte key', () => {
    const values: Record<IdentityType, string> = {
      email: 'a@b.io',
      evm: EVM,
      google: '1',
      substrate: `0x${'11'.repeat(32)}`,
      bitcoin: `0x02${'22'.repeat(32)}`,
      solana: '11111111111111111111111111111111',
      twitter: 't',
      discord: 'd',
      github: 'octocat',
      apple: '001.abc',
      pumpx: 'p',
      passkey: 'k',
    };
    const seen = new Set<string>();
    for (const type of IDENTITY_TYPES) {
      const omni = deriveOmniAccount('agentkeys', { type, value: values[type] });
      assert.match(omni, OMNI_ACCOUNT_RE);
      seen.add(omni);
    }
    assert.equal(seen.size, IDENTITY_TYPES.length);
    assert.equal(deriveOmniAccount('agentkeys', { type: 'github', value: 'octocat' }), sha('agentkeys', 'github', Buffer.from('octocat')));
    assert.equal(deriveOmniAccount('agentkeys', { type: 'solana', value: '11111111111111111111111111111111' }), sha('agentkeys', 'solana', Buffer.alloc(32)));
    assert.throws(() => deriveOmniAccount('agentkeys', { type: 'bitcoin', value: `0x${'22'.repeat(20)}` }), /33 bytes/);
    assert.throws(() => deriveOmniAccount('agentkeys', { type: 'solana', value: '1111' }), /32 bytes/);
  });

  void test('the AWS tag form is bare lower-case hex', () => {
    assert.equal(
      bareOmniHex('0xF77B15b548b5e46fe7bc01673db04ab9de4c3354690082f665a6d9704a9db567'),
      'f77b15b548b5e46fe7bc01673db04ab9de4c3354690082f665a6d9704a9db567',
    );
  });
});
