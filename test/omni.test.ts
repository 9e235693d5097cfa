import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { deriveOmniAccount, IdentityError, identityValueBytes, OMNI_ACCOUNT_RE, type Identity } from '../lib/omni';

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
    assert.notEqual(deriveOmniAccount('agentkeys', { type: 'google', value: '110169484474386276334' }), deriveOmniAccount('agentkeys', { type: 'twitter', value: '110169484474386276334' }));
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
      assert.throws(() => deriveOmniAccount('agentkeys', identity), (e: unknown) => e instanceof IdentityError && message.test(e.message), `${identity.type} ${identity.value}`);
    }
  });
});
