import { CanonicalJsonError, canonicalJson } from '../lib/canonical-json';
import { BrokerError } from '../lib/errors';
import { LAYOUT_CHARACTER } from '../lib/plain-text';
import { isAddressSpelling } from '../lib/evm-address';
import { EVM_ADDRESS_RE } from '../lib/wallet-message';
import type { FastifySchemaCompiler } from 'fastify';
import { validatorCompiler as zodValidatorCompiler } from 'fastify-type-provider-zod';
import { z } from 'zod';

/** Wire schemas shared by several surfaces (docs/contracts.md §4/§5). */

/**
 * Where the first NUL character (U+0000) sits in a parsed request part — in a string value or an
 * object key — as a path; undefined when there is none. Walks with its own stack (a body nested
 * thousands deep costs no recursion) and builds the path only for the hit.
 */
export function findNul(value: unknown): (string | number)[] | undefined {
  interface Node {
    v: unknown;
    key?: string | number;
    parent?: Node;
  }
  const pathOf = (n: Node | undefined, last?: string | number): (string | number)[] => {
    const path: (string | number)[] = last === undefined ? [] : [last];
    for (let at = n; at?.key !== undefined; at = at.parent) path.unshift(at.key);
    return path;
  };
  const stack: Node[] = [{ v: value }];
  for (let node = stack.pop(); node; node = stack.pop()) {
    const { v } = node;
    if (typeof v === 'string') {
      if (v.includes('\u0000')) return pathOf(node);
    } else if (Array.isArray(v)) {
      v.forEach((item: unknown, i) => stack.push({ v: item, key: i, parent: node }));
    } else if (v !== null && typeof v === 'object') {
      for (const [k, item] of Object.entries(v)) {
        if (k.includes('\u0000')) return pathOf(node, k);
        stack.push({ v: item, key: k, parent: node });
      }
    }
  }
  return undefined;
}

const nulFree = z.unknown().superRefine((value, ctx) => {
  const path = findNul(value);
  if (path) ctx.addIssue({ code: 'custom', path, message: 'must not contain a NUL character (\\u0000)' });
});

/**
 * The API's validator compiler: every request part a route declares a schema for (body, query,
 * params, headers) is first refused when any string or key in it holds a NUL character, then
 * checked by its zod schema. NUL has no business in an identity, an address, an intent or a key,
 * and Postgres text cannot store it: refused here, once, it is a 400 naming the field and nothing
 * is consumed or written (before, an intent carrying one spent its request_id and failed in the
 * audit write).
 */
export const validatorCompiler: FastifySchemaCompiler<z.ZodType> = (route) => {
  const refuseNul = zodValidatorCompiler({ ...route, schema: nulFree });
  const validate = zodValidatorCompiler(route);
  return (data) => {
    const nul = refuseNul(data);
    return nul && typeof nul === 'object' && 'error' in nul && nul.error ? nul : validate(data);
  };
};

/**
 * A refinement for free-form JSON a route passes on whole (into a workflow's input, whose payload
 * converter writes it with the recursive JSON.stringify): nesting past CANONICAL_VALUE_MAX_DEPTH
 * (128) is an issue on that field, a 400 before anything is started or written. The same bound and
 * the same walk, without recursion, as the canonical form that bounds signed mint intents
 * (lib/canonical-json.ts, docs/security.md "Second review, item 6").
 */
export function refuseDeepNesting(value: unknown, ctx: z.RefinementCtx): void {
  try {
    canonicalJson(value);
  } catch (e) {
    if (!(e instanceof CanonicalJsonError)) throw e;
    ctx.addIssue({ code: 'custom', message: `is ${e.message}` });
  }
}

/**
 * A refinement for a text another party reads in a terminal or a page (an agent's approval
 * `reason`): one line, none of lib/plain-text.ts's layout characters, refused with an issue naming
 * the first one and where it is.
 */
export function oneLineText(field: string): (value: string, ctx: z.RefinementCtx) => void {
  return (value, ctx) => {
    const m = LAYOUT_CHARACTER.exec(value);
    if (!m) return;
    const code = (m[0].codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0');
    ctx.addIssue({
      code: 'custom',
      message: `${field} must be one line of plain text: U+${code} at character ${m.index + 1} is refused (no control characters — tab, CR and LF included — DEL, line separators or bidi controls)`,
    });
  };
}

export const errorBody = z.object({ error: z.string(), message: z.string() }).passthrough().describe('error');

// The session bodies are defined once, in lib/wire.ts (the CLI reads the same types).
export {
  identitySchema,
  loginSessionSchema,
  refreshedSessionSchema,
  refreshTokenSchema,
  type RefreshedSessionBody as RefreshedSession,
  type RefreshTokenBody as RefreshTokenAnswer,
  type SessionBody as LoginSession,
} from '../lib/wire';

/**
 * An EVM address as a caller may spell it (wallet login, grants, the kill switch): lower-case, upper-case or
 * correctly checksummed (EIP-55), answered lower-case. Mixed case with a broken checksum is a typo
 * (400), never another spelling of some address. `field` names it in the message.
 */
export function evmAddressSchema(field: string) {
  return z
    .string()
    .max(64, `${field} is too long`)
    .regex(EVM_ADDRESS_RE, `${field} must be 0x followed by 40 hex digits`)
    .refine(isAddressSpelling, `${field} has mixed case but not a valid EIP-55 checksum`)
    .transform((a) => a.toLowerCase());
}

/** A grant id as POST /v1/grants issues it (docs/contracts.md §6): `grt_` + 32 lower-case hex digits. */
export const grantIdSchema = z.string().regex(/^grt_[0-9a-f]{32}$/, 'grant_id is malformed (expected grt_ and 32 lower-case hex digits)');

/** Responses every route may give besides its success, for the OpenAPI page. */
/** An `Idempotency-Key` header's form (the grants, add_wallet and email routes). */
const idempotencyKeySchema = z.string().regex(/^[\w.:-]{1,128}$/, 'Idempotency-Key must be 1-128 characters of [A-Za-z0-9_.:-]');

/**
 * Who an `Idempotency-Key` is scoped to. `caller`: the route binds the key to the authenticated
 * account (grants, add_wallet), so another account's key of the same text is another key and any
 * key of the form will do. `anyone`: the key is bound only to something anyone may send (the email
 * routes bind it to an address anyone may type) and whoever repeats it joins the first request, so
 * the key itself must be unguessable: at least UNSCOPED_IDEMPOTENCY_KEY_MIN_LENGTH characters
 * carrying at least UNSCOPED_IDEMPOTENCY_KEY_MIN_BITS of estimated entropy (idempotencyKeyBits).
 */
export type IdempotencyKeyScope = 'caller' | 'anyone';

/** The least length of an Idempotency-Key that is not scoped to an authenticated caller. */
export const UNSCOPED_IDEMPOTENCY_KEY_MIN_LENGTH = 32;
/** The least estimated entropy of such a key (idempotencyKeyBits): below what a random UUID or 32 random hex digits carry. */
export const UNSCOPED_IDEMPOTENCY_KEY_MIN_BITS = 80;

/**
 * A conservative estimate of the entropy a key carries, in bits: its shortest period (a key that
 * repeats a shorter string says no more than that string) times the Shannon entropy of the
 * characters in it. `0`×32 → 0, `01`×16 → 2, `0123456789abcdef`×2 → 64. Of 1 000 000 random draws
 * the least was 104 for a UUID and 85 for 32 hex digits; 32 random decimal digits fall under 80
 * about once in 7 000 (send hex or a UUID). It cannot recognise every guessable
 * key (a counter, a word list); it refuses the ones that are plainly not random.
 */
export function idempotencyKeyBits(key: string): number {
  // Shortest period from the prefix function (Knuth–Morris–Pratt).
  const fail = new Array<number>(key.length).fill(0);
  for (let i = 1, k = 0; i < key.length; i += 1) {
    while (k > 0 && key[i] !== key[k]) k = fail[k - 1] ?? 0;
    if (key[i] === key[k]) k += 1;
    fail[i] = k;
  }
  const period = key.length - (fail[key.length - 1] ?? 0);
  const counts = new Map<string, number>();
  for (const c of key.slice(0, period)) counts.set(c, (counts.get(c) ?? 0) + 1);
  let bitsPerChar = 0;
  for (const n of counts.values()) bitsPerChar -= (n / period) * Math.log2(n / period);
  return bitsPerChar * period;
}

/** The request's `Idempotency-Key`, if it sent one; a malformed (or repeated) header, or one too guessable for its scope, is a 400. */
export function idempotencyKeyOf(
  request: { headers: Record<string, string | string[] | undefined> },
  scope: IdempotencyKeyScope = 'caller',
): string | undefined {
  const header = request.headers['idempotency-key'];
  if (header === undefined) return undefined;
  const parsed = idempotencyKeySchema.safeParse(header);
  if (!parsed.success) throw new BrokerError('bad_request', parsed.error.issues[0]?.message ?? 'bad Idempotency-Key');
  if (scope === 'caller') return parsed.data;
  if (parsed.data.length < UNSCOPED_IDEMPOTENCY_KEY_MIN_LENGTH) {
    throw new BrokerError(
      'bad_request',
      `Idempotency-Key must be at least ${UNSCOPED_IDEMPOTENCY_KEY_MIN_LENGTH} characters here (a random value such as a UUID): a shorter one could be guessed`,
    );
  }
  if (idempotencyKeyBits(parsed.data) < UNSCOPED_IDEMPOTENCY_KEY_MIN_BITS) {
    throw new BrokerError(
      'bad_request',
      'Idempotency-Key is not random enough here (repeated characters or a short repeating pattern): send a random value such as a UUID, which anyone repeating it could not guess',
    );
  }
  return parsed.data;
}

export const commonErrors = { 400: errorBody, 401: errorBody, 429: errorBody, 500: errorBody, 503: errorBody };
