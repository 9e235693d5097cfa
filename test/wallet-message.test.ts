import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { recoverMessageAddress } from 'viem';
import { personalMessageDigest, recoverSigner, SECP256K1_BACKEND } from '../adapters/evm-signature';
import {
  buildEip191ChallengeMessage,
  buildSiweMessage,
  buildStatelessWalletMessage,
  checkSiweMessage,
  normalizeWalletSignature,
  parseEoaSignature,
  parseSiweMessage,
  SignatureFormatError,
  type SiweExpectation,
  type SiweFields,
} from '../lib/wallet-message';
import { newWallet, withHighS, withRecoveryBitV } from './wallet-client';

void describe('wallet messages', () => {
  void test('the stateless message is the docs/contracts.md §5 text, byte for byte', () => {
    assert.equal(
      buildStatelessWalletMessage('0xAbCdEf0123456789aBcDeF0123456789AbCdEf01', 1700000000),
      'Hi! Welcome to AgentKeys.\n' +
        'Sign this message to prove you own this wallet. It sends no transaction and costs no gas.\n' +
        'Address: 0xabcdef0123456789abcdef0123456789abcdef01\n' +
        'Timestamp is 1700000000.',
    );
  });

  void test('the EIP-191 challenge adds a nonce line before the timestamp line', () => {
    assert.equal(
      buildEip191ChallengeMessage('0xABCDEF0123456789ABCDEF0123456789ABCDEF01', 'n0nce123', 1700000000),
      'Hi! Welcome to AgentKeys.\n' +
        'Sign this message to prove you own this wallet. It sends no transaction and costs no gas.\n' +
        'Address: 0xabcdef0123456789abcdef0123456789abcdef01\n' +
        'Nonce: n0nce123\n' +
        'Timestamp is 1700000000.',
    );
  });
});

void describe('SIWE (EIP-4361) parsing and checking', () => {
  const now = Date.parse('2030-01-01T12:00:00.000Z');
  const iso = (offsetMinutes: number) => new Date(now + offsetMinutes * 60_000).toISOString();
  const fields: SiweFields = {
    domain: 'broker.example.com:8443',
    address: '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed',
    statement: 'Sign in to AgentKeys.',
    uri: 'https://broker.example.com:8443',
    version: '1',
    chainId: 1,
    nonce: 'a1b2c3d4e5f6',
    issuedAt: iso(-1),
    expirationTime: iso(44),
  };
  const expected: SiweExpectation = { domain: fields.domain, address: fields.address, uri: fields.uri, chainId: 1, nonce: fields.nonce, windowSeconds: 2700 };

  void test('round trip: build, parse, accept', () => {
    const text = buildSiweMessage(fields);
    assert.equal(
      text,
      'broker.example.com:8443 wants you to sign in with your Ethereum account:\n0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed\n\nSign in to AgentKeys.\n\n' +
        `URI: https://broker.example.com:8443\nVersion: 1\nChain ID: 1\nNonce: a1b2c3d4e5f6\nIssued At: ${iso(-1)}\nExpiration Time: ${iso(44)}`,
    );
    assert.deepEqual(parseSiweMessage(text), { ...fields, notBefore: undefined, requestId: undefined, resources: undefined });
    assert.equal(checkSiweMessage(text, expected, now), undefined);
    const withOptional = buildSiweMessage({
      ...fields,
      statement: undefined,
      notBefore: iso(-1),
      requestId: 'r-1',
      resources: ['https://a.example/x', 'ipfs://b'],
    });
    assert.deepEqual(parseSiweMessage(withOptional).resources, ['https://a.example/x', 'ipfs://b']);
    assert.equal(checkSiweMessage(withOptional, expected, now), undefined);
  });

  void test('every field is checked on its own', () => {
    const cases: [string, Partial<SiweFields>, RegExp][] = [
      ['domain', { domain: 'evil.example.com' }, /domain/],
      ['address', { address: '0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359' }, /address/],
      ['uri', { uri: 'https://broker.example.com:8443/other' }, /URI/],
      ['version', { version: '2' }, /Version/],
      ['chain id', { chainId: 5 }, /Chain ID/],
      ['nonce', { nonce: 'zzzzzzzzzzzz' }, /nonce/],
      ['short nonce', { nonce: 'abc' }, /nonce/],
      ['expired', { issuedAt: iso(-30), expirationTime: iso(-1) }, /expired/],
      ['issued in the future', { issuedAt: iso(5), expirationTime: iso(30) }, /future/],
      ['issued too long ago', { issuedAt: iso(-46), expirationTime: iso(10) }, /too long ago/],
      ['too long a validity', { expirationTime: iso(50) }, /longer/],
      ['no expiration', { expirationTime: undefined }, /Expiration Time is missing/],
      ['not yet valid', { notBefore: iso(3) }, /Not Before/],
    ];
    for (const [what, change, reason] of cases) {
      const problem = checkSiweMessage(buildSiweMessage({ ...fields, ...change }), expected, now);
      assert.match(problem ?? '(accepted)', reason, what);
    }
  });

  void test('malformed messages are refused: CRLF, over 4 KB, unknown lines, bad times', () => {
    const text = buildSiweMessage(fields);
    assert.match(checkSiweMessage(text.replace(/\n/g, '\r\n'), expected, now) ?? '', /CR/);
    assert.match(checkSiweMessage(buildSiweMessage({ ...fields, statement: 'x'.repeat(4100) }), expected, now) ?? '', /4096 bytes/);
    assert.match(checkSiweMessage(`${text}\nExtra: line`, expected, now) ?? '', /unexpected line/);
    assert.match(checkSiweMessage(buildSiweMessage({ ...fields, issuedAt: 'yesterday' }), expected, now) ?? '', /RFC 3339/);
    assert.match(checkSiweMessage(text.replace('Chain ID: 1', 'Chain ID: 01'), expected, now) ?? '', /Chain ID/);
    assert.match(checkSiweMessage(text.replace(' wants you', ' wants  you'), expected, now) ?? '', /first line/);
  });
});

void describe('signature shapes', () => {
  void test('v 0/1 and 27/28 normalise to the same bytes; other v, lengths and hex are refused', async () => {
    const w = newWallet();
    const sig = await w.sign('hello');
    const a = parseEoaSignature(sig);
    const b = parseEoaSignature(withRecoveryBitV(sig));
    assert.equal(a.normalized, b.normalized);
    assert.equal(a.normalized, sig.toLowerCase());
    assert.equal(parseEoaSignature(sig.toUpperCase().replace('0X', '0x')).normalized, a.normalized);
    assert.throws(() => parseEoaSignature(`${sig.slice(0, 130)}1d`), SignatureFormatError);
    assert.throws(() => parseEoaSignature(sig.slice(0, 130)), /65 bytes/);
    assert.throws(() => parseEoaSignature(`${sig}00`), /65 bytes/);
    assert.throws(() => parseEoaSignature(`${sig.slice(0, 129)}`), /odd/);
    assert.throws(() => parseEoaSignature(sig.slice(2)), /hex/);
    assert.throws(() => parseEoaSignature(`0x${'00'.repeat(32)}${sig.slice(66)}`), /r is out of range/);
  });

  void test('high-s is refused although it verifies mathematically (EIP-2)', async () => {
    const w = newWallet();
    const sig = await w.sign('hello');
    const twin = withHighS(sig);
    // viem recovers the same address from the malleated twin: that is why the broker refuses it up front
    assert.equal((await recoverMessageAddress({ message: 'hello', signature: twin })).toLowerCase(), w.lower);
    assert.throws(() => parseEoaSignature(twin), /high s/);
  });

  void test('contract-wallet signatures are other lengths, accepted only when contract wallets are on', () => {
    const long = `0x${'ab'.repeat(200)}`;
    assert.throws(() => normalizeWalletSignature(long, false), /65 bytes/);
    assert.equal(normalizeWalletSignature(long.toUpperCase().replace('0X', '0x'), true), long);
    assert.throws(() => normalizeWalletSignature('0x', true), /1 to/);
    assert.throws(() => normalizeWalletSignature(`0x${'00'.repeat(6145)}`, true), /1 to/);
  });
});

void describe('ecrecover backends', () => {
  void test('the native binding is loaded here and agrees with the pure-JS path and viem', async () => {
    assert.equal(SECP256K1_BACKEND, 'native', 'the secp256k1 prebuilt binding should load on linux-x64');
    for (let i = 0; i < 20; i++) {
      const w = newWallet();
      const message = `message ${i}\nwith lines`;
      const sig = await w.sign(message);
      const digest = personalMessageDigest(message);
      const parsed = parseEoaSignature(sig);
      assert.equal(await recoverSigner(digest, parsed, 'native'), w.lower);
      assert.equal(await recoverSigner(digest, parsed, 'js'), w.lower);
      assert.equal((await recoverMessageAddress({ message, signature: sig })).toLowerCase(), w.lower);
    }
  });

  void test('a signature whose r is not on the curve does not recover, on either backend', async () => {
    const w = newWallet();
    const sig = await w.sign('x');
    // r = 5: no curve point has x = 5 (5^3 + 7 = 132 is not a square mod p)
    const bad = parseEoaSignature(`0x${'0'.repeat(63)}5${sig.slice(66)}`);
    const digest = personalMessageDigest('x');
    await assert.rejects(recoverSigner(digest, bad, 'native'));
    await assert.rejects(recoverSigner(digest, bad, 'js'));
  });
});
