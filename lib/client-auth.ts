import { hmacHex } from './digest';
import { AgentKeysError } from './errors';

/**
 * The TEE's ClientAuth (docs/contracts.md §3, `{"type": <variant>, "value": {...}}`) as the broker keeps
 * it: the known upstream fields, their secrets replaced by keyed digests, and nothing else raw.
 *
 * - Nesting deeper than MAX_CLIENT_AUTH_DEPTH is refused (the upstream variants are two levels
 *   deep), so no walk over it can exhaust the stack.
 * - Known variants keep their known fields: plain values as sent (a bounded string, a number, a
 *   boolean), secrets (`google_code`, `invite_code`, `signature`) as `hmac:<digest>`.
 * - Anything else — an unknown field (`otp`, `pin`, `mnemonic`, `api_key`, `jwt`, …), the value of
 *   an unknown variant, a known field of an unexpected shape — is kept only as `hmac:<digest>` of
 *   its JSON, under its name when the name is a plain identifier; other names are dropped.
 */

export type ClientAuthJson = string | number | boolean | null | ClientAuthJson[] | { [key: string]: ClientAuthJson };

/** Deepest nesting accepted ({} is 1, {"value": {}} is 2). */
export const MAX_CLIENT_AUTH_DEPTH = 16;
const MAX_PLAIN_STRING = 2048;
const FIELD_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

type FieldRule = 'plain' | 'secret';

/** The variants seen upstream and their fields. */
export const CLIENT_AUTH_VARIANTS: Readonly<Record<string, Readonly<Record<string, FieldRule>>>> = {
  wildmeta: { google_code: 'secret', invite_code: 'secret' },
  wildmeta_hl: { agent_address: 'plain', main_address: 'plain', business_json: 'plain', login_type: 'plain', signature: 'secret' },
  wildmeta_backend: { signature: 'secret' },
};

export class ClientAuthError extends AgentKeysError {
  override readonly code: string = 'ERR_CLIENT_AUTH_TOO_DEEP';
  override name = 'ClientAuthError';
}

/** The nesting depth of a JSON value, counted without recursion; stops counting past `limit`. */
export function jsonDepth(value: unknown, limit: number): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, d] = stack.pop() as [unknown, number];
    if (v === null || typeof v !== 'object') continue;
    const depth = d + 1;
    if (depth > deepest) deepest = depth;
    if (deepest > limit) return deepest;
    for (const child of Object.values(v)) stack.push([child, depth]);
  }
  return deepest;
}

function isPlain(v: unknown): v is string | number | boolean | null {
  return v === null || typeof v === 'number' || typeof v === 'boolean' || (typeof v === 'string' && v.length <= MAX_PLAIN_STRING);
}

/** Applies `rules` to the fields of `value` (an object); an unknown field is digested, a bad name dropped. */
function keepFields(
  secret: Uint8Array,
  scope: string,
  value: Record<string, unknown>,
  rules: Readonly<Record<string, FieldRule>>,
): Record<string, ClientAuthJson> {
  const digest = (name: string, v: unknown): string => `hmac:${hmacHex(secret, 'client-auth', scope, name, JSON.stringify(v) ?? 'null').slice(0, 32)}`;
  const out: Record<string, ClientAuthJson> = {};
  for (const [name, v] of Object.entries(value)) {
    if (!FIELD_NAME.test(name) || name === '__proto__') continue;
    const rule = Object.hasOwn(rules, name) ? rules[name] : undefined;
    if (rule === 'plain' && isPlain(v)) out[name] = v;
    else if (rule === 'secret' && v === null) out[name] = null;
    else out[name] = digest(name, v);
  }
  return out;
}

/** The ClientAuth to store; throws ClientAuthError when it is nested too deep. */
export function sanitizeClientAuth(secret: Uint8Array, clientAuth: { type: string; [key: string]: unknown } | null | undefined): ClientAuthJson {
  if (clientAuth === null || clientAuth === undefined) return null;
  if (jsonDepth(clientAuth, MAX_CLIENT_AUTH_DEPTH) > MAX_CLIENT_AUTH_DEPTH) {
    throw new ClientAuthError(`clientAuth is nested deeper than ${MAX_CLIENT_AUTH_DEPTH} levels`);
  }
  const { type, value, ...rest } = clientAuth;
  const variant = Object.hasOwn(CLIENT_AUTH_VARIANTS, type) ? CLIENT_AUTH_VARIANTS[type] : undefined;
  const out: Record<string, ClientAuthJson> = { type };
  if (value === null) out.value = null;
  else if (typeof value === 'object' && !Array.isArray(value)) out.value = keepFields(secret, type, value as Record<string, unknown>, variant ?? {});
  else if (value !== undefined) out.value = keepFields(secret, type, { value }, {}).value ?? null;
  // Fields beside type and value are no part of any variant: digests only.
  Object.assign(out, keepFields(secret, `${type}:outer`, rest, {}));
  return out;
}
