import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import type { Payload, PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { AgentKeysError } from './errors';

/**
 * AES-256-GCM payload codec: every payload the broker's clients and workers exchange with Temporal
 * is encrypted, so flow inputs (email addresses, tokens) never sit in history in plain text.
 * The key id travels in the payload metadata, so keys can be rotated: new payloads use the
 * active key, old ones decode with any retired key still configured.
 */

export const ENCODING = 'binary/encrypted';
const METADATA_ENCODING_KEY = 'encoding';
const METADATA_KEY_ID = 'encryption-key-id';
const IV_LENGTH = 12;
const TAG_LENGTH = 16;

export class CodecError extends AgentKeysError {
  override readonly code: string = 'ERR_CODEC';
  override name = 'CodecError';
}

export function parseKey(text: string, name: string): Buffer {
  const t = text.trim();
  const key = /^(0x)?[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t.replace(/^0x/, ''), 'hex') : Buffer.from(t, 'base64');
  if (key.length !== 32) throw new CodecError(`${name} must be 32 bytes as hex or base64 (got ${key.length} bytes)`);
  return key;
}

export function keyId(key: Uint8Array): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 16);
}

export class AesGcmPayloadCodec implements PayloadCodec {
  private readonly activeId: string;
  private readonly keys = new Map<string, Buffer>();

  constructor(activeKey: Buffer, retiredKeys: Buffer[] = []) {
    this.activeId = keyId(activeKey);
    this.keys.set(this.activeId, activeKey);
    for (const k of retiredKeys) this.keys.set(keyId(k), k);
  }

  // async, so a failure is a rejected promise, never a synchronous throw from a Promise-returning method.
  async encode(payloads: Payload[]): Promise<Payload[]> {
    const key = this.keys.get(this.activeId) as Buffer;
    return payloads.map((payload) => {
      const plain = temporal.api.common.v1.Payload.encode(payload).finish();
      const iv = randomBytes(IV_LENGTH);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      const body = Buffer.concat([iv, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
      return {
        metadata: {
          [METADATA_ENCODING_KEY]: Buffer.from(ENCODING),
          [METADATA_KEY_ID]: Buffer.from(this.activeId),
        },
        data: body,
      };
    });
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((payload) => {
      const encoding = payload.metadata?.[METADATA_ENCODING_KEY];
      if (!encoding || Buffer.from(encoding).toString() !== ENCODING) return payload;
      const idBytes = payload.metadata?.[METADATA_KEY_ID];
      const id = idBytes ? Buffer.from(idBytes).toString() : '';
      const key = this.keys.get(id);
      if (!key) throw new CodecError(`no payload key with id ${id || '(missing)'}; configure it in BROKER_PAYLOAD_KEYS_RETIRED`);
      const data = Buffer.from(payload.data ?? new Uint8Array());
      if (data.length < IV_LENGTH + TAG_LENGTH) throw new CodecError('encrypted payload is truncated');
      const iv = data.subarray(0, IV_LENGTH);
      const tag = data.subarray(data.length - TAG_LENGTH);
      const decipher = createDecipheriv('aes-256-gcm', key, iv);
      decipher.setAuthTag(tag);
      let plain: Buffer;
      try {
        plain = Buffer.concat([decipher.update(data.subarray(IV_LENGTH, data.length - TAG_LENGTH)), decipher.final()]);
      } catch {
        throw new CodecError(`encrypted payload failed authentication with key ${id}: it was altered or encrypted with another key`);
      }
      return temporal.api.common.v1.Payload.decode(plain);
    });
  }
}
