import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { AesGcmPayloadCodec, CodecError, ENCODING, keyId, parseKey } from '../lib/codec';

const keyA = randomBytes(32);
const keyB = randomBytes(32);
const text = (b: Uint8Array | null | undefined) => Buffer.from(b ?? new Uint8Array()).toString();
const secretInput = { email: 'someone.private@example.com', code: '493817' };

function plainPayloads(): Payload[] {
  return [defaultPayloadConverter.toPayload(secretInput), defaultPayloadConverter.toPayload('a string'), defaultPayloadConverter.toPayload(undefined)];
}

async function encryptedBy(codec: AesGcmPayloadCodec): Promise<Payload> {
  const [p] = await codec.encode([defaultPayloadConverter.toPayload(secretInput)]);
  assert.ok(p);
  return p;
}

const withData = (p: Payload, data: Buffer): Payload => ({ metadata: p.metadata, data });

void describe('AES-GCM payload codec (lib/codec.ts)', () => {
  void test('round trip: every payload encrypts and decodes to the same bytes', async () => {
    const codec = new AesGcmPayloadCodec(keyA);
    const plain = plainPayloads();
    const encoded = await codec.encode(plain);
    assert.equal(encoded.length, plain.length);
    for (const e of encoded) {
      assert.equal(text(e.metadata?.encoding), ENCODING);
      assert.equal(text(e.metadata?.['encryption-key-id']), keyId(keyA));
      assert.ok(!text(e.data).includes('someone.private'), 'ciphertext holds no plaintext');
      assert.ok(!text(e.data).includes('json/plain'), 'the inner encoding is encrypted too');
    }
    const decoded = await codec.decode(encoded);
    assert.equal(decoded.length, plain.length);
    decoded.forEach((d, i) => {
      const p = plain[i] as Payload;
      assert.deepEqual(Buffer.from(d.data ?? new Uint8Array()), Buffer.from(p.data ?? new Uint8Array()));
      assert.deepEqual(Object.keys(d.metadata ?? {}).sort(), Object.keys(p.metadata ?? {}).sort());
      for (const k of Object.keys(p.metadata ?? {})) assert.equal(text(d.metadata?.[k]), text(p.metadata?.[k]));
    });
    assert.deepEqual(defaultPayloadConverter.fromPayload(decoded[0] as Payload), secretInput);
  });

  void test('a fresh IV per payload: the same input encrypts differently each time', async () => {
    const codec = new AesGcmPayloadCodec(keyA);
    const [a, b] = await codec.encode([defaultPayloadConverter.toPayload(secretInput), defaultPayloadConverter.toPayload(secretInput)]);
    assert.notDeepEqual(Buffer.from(a?.data ?? new Uint8Array()), Buffer.from(b?.data ?? new Uint8Array()));
  });

  void test('payloads that are not encrypted pass through decode untouched', async () => {
    const codec = new AesGcmPayloadCodec(keyA);
    const plain = plainPayloads();
    assert.deepEqual(await codec.decode(plain), plain);
  });

  void test('an unknown key id is a clear error naming the id and the setting to fix', async () => {
    const p = await encryptedBy(new AesGcmPayloadCodec(keyA));
    await assert.rejects(new AesGcmPayloadCodec(keyB).decode([p]), (e: unknown) => {
      assert.ok(e instanceof CodecError);
      assert.match(e.message, new RegExp(`no payload key with id ${keyId(keyA)}`));
      assert.match(e.message, /BROKER_PAYLOAD_KEYS_RETIRED/);
      return true;
    });
    const noId: Payload = { metadata: { encoding: Buffer.from(ENCODING) }, data: p.data };
    await assert.rejects(new AesGcmPayloadCodec(keyA).decode([noId]), /no payload key with id \(missing\)/);
  });

  void test('tampered ciphertext, tag or IV, a truncated payload and a swapped key id are refused', async () => {
    const codec = new AesGcmPayloadCodec(keyA, [keyB]);
    const p = await encryptedBy(codec);
    const data = Buffer.from(p.data ?? new Uint8Array());
    for (const at of [0, 12, Math.floor(data.length / 2), data.length - 1]) {
      const bad = Buffer.from(data);
      bad[at] = (bad[at] ?? 0) ^ 0x01;
      await assert.rejects(codec.decode([withData(p, bad)]), (e: unknown) => e instanceof CodecError && /failed authentication/.test(e.message), `byte ${at}`);
    }
    await assert.rejects(codec.decode([withData(p, data.subarray(0, 20))]), (e: unknown) => e instanceof CodecError && /truncated/.test(e.message));
    // Claiming the other configured key does not help: GCM authenticates with the key actually used.
    const swapped: Payload = { metadata: { ...p.metadata, 'encryption-key-id': Buffer.from(keyId(keyB)) }, data };
    await assert.rejects(codec.decode([swapped]), (e: unknown) => e instanceof CodecError && /failed authentication/.test(e.message));
  });

  void test('rotation: a retired key still decodes; new payloads use the active key', async () => {
    const old = await encryptedBy(new AesGcmPayloadCodec(keyA));
    const rotated = new AesGcmPayloadCodec(keyB, [keyA]);
    const [decoded] = await rotated.decode([old]);
    assert.deepEqual(defaultPayloadConverter.fromPayload(decoded as Payload), secretInput);
    const fresh = await encryptedBy(rotated);
    assert.equal(text(fresh.metadata?.['encryption-key-id']), keyId(keyB));
    // Once the retired key is dropped, its payloads no longer decode.
    await assert.rejects(new AesGcmPayloadCodec(keyB).decode([old]), CodecError);
  });

  void test('parseKey accepts 32 bytes as hex, 0x-hex or base64 and refuses anything else', () => {
    const hex = keyA.toString('hex');
    assert.deepEqual(parseKey(hex, 'K'), keyA);
    assert.deepEqual(parseKey(`0x${hex}`, 'K'), keyA);
    assert.deepEqual(parseKey(` ${keyA.toString('base64')}\n`, 'K'), keyA);
    assert.throws(
      () => parseKey(randomBytes(16).toString('hex'), 'BROKER_PAYLOAD_KEY'),
      (e: unknown) => e instanceof CodecError && /BROKER_PAYLOAD_KEY must be 32 bytes/.test(e.message),
    );
    assert.throws(() => parseKey('', 'K'), CodecError);
    assert.match(keyId(keyA), /^[0-9a-f]{16}$/);
    assert.notEqual(keyId(keyA), keyId(keyB));
  });
});
