import { AgentKeysError } from './errors';
import { SerdeNumberError, serdeNumberText } from './serde-number';

export class CanonicalJsonError extends AgentKeysError {
  override readonly code: string = 'ERR_CANONICAL_JSON';
  override name = 'CanonicalJsonError';
}

/**
 * Two canonical JSON forms: object keys sorted at every depth, no whitespace. Both are built
 * without recursion and refuse what is nested deeper than they allow, so no input can exhaust the
 * stack.
 *
 * - `canonicalJson(value)`: the broker's own form of a JavaScript value, keys by UTF-16 code unit,
 *   values as JSON.stringify writes them. The audit chain hashes rows in it (lib/audit-chain.ts,
 *   lib/audit-head.ts, lib/audit-merkle.ts): it must never change, or every stored chain stops
 *   verifying.
 * - `parseJsonTree` + `canonicalJsonTree`: AgentKeys' form of JSON text, byte for byte what its
 *   `canonicalize_json` makes of a body read into a `serde_json::Value` (litentry/agent-terrier
 *   5f79a9f, `crates/agentkeys-broker-server/src/handlers/mint.rs`): keys by UTF-8 byte (Rust's
 *   `String` order; it differs from UTF-16 order for keys that mix U+E000–U+FFFF with characters
 *   outside the BMP), strings as serde_json escapes them (as JSON.stringify does for well-formed
 *   text), numbers as serde_json reads and writes them (lib/serde-number.ts: `1.0` stays `1.0`).
 *   It works on the text, not on a parsed JavaScript value, because JSON.parse has already lost
 *   what decides the spelling (`1.0` and `1` are one number to it, and it rounds differently).
 *   Signed mint intents are signed in it (lib/mint-intent.ts).
 */

/** Nesting the value form allows: the broker's own values are shallow. */
export const CANONICAL_VALUE_MAX_DEPTH = 128;

/**
 * Nesting the text form allows: what serde_json reads (`remaining_depth: 128`, decremented per
 * array or object and refused at 0 — serde-rs/json `src/de.rs`), so upstream refuses the same.
 */
export const JSON_TEXT_MAX_DEPTH = 127;

/**
 * JSON with keys sorted (UTF-16 order) at every depth and no whitespace: the broker's own canonical
 * form of a value. It reads a value's own enumerable properties and never calls `toJSON`, where
 * JSON.stringify does: a Date, a Buffer or a class instance would hash as one text and be stored as
 * another. Values that are stored as JSON and hashed in this form must pass assertPlainJson first.
 */
export function canonicalJson(value: unknown): string {
  const out: string[] = [];
  // A work item is text to write, or a value to write at a depth.
  const work: ({ text: string } | { value: unknown; depth: number })[] = [{ value, depth: 0 }];
  for (let item = work.pop(); item !== undefined; item = work.pop()) {
    if ('text' in item) {
      out.push(item.text);
      continue;
    }
    const v = item.value;
    if (v === null || typeof v !== 'object') {
      out.push(JSON.stringify(v) ?? 'null');
      continue;
    }
    const depth = item.depth + 1;
    if (depth > CANONICAL_VALUE_MAX_DEPTH) throw new CanonicalJsonError(`nested deeper than ${CANONICAL_VALUE_MAX_DEPTH} levels`);
    if (Array.isArray(v)) {
      out.push('[');
      work.push({ text: ']' });
      for (let i = v.length - 1; i >= 0; i--) {
        work.push({ value: v[i] as unknown, depth });
        if (i > 0) work.push({ text: ',' });
      }
      continue;
    }
    const obj = v as Record<string, unknown>;
    const keys = Object.keys(obj)
      .filter((k) => obj[k] !== undefined)
      .sort();
    out.push('{');
    work.push({ text: '}' });
    for (let i = keys.length - 1; i >= 0; i--) {
      const k = keys[i] as string;
      work.push({ value: obj[k], depth }, { text: `${JSON.stringify(k)}:` });
      if (i > 0) work.push({ text: ',' });
    }
  }
  return out.join('');
}

/**
 * Throws CanonicalJsonError, naming the path (`what` its root), unless `value` is plain JSON data:
 * null, booleans, numbers, strings, arrays and plain objects (prototype Object.prototype or null),
 * with no `toJSON` anywhere. On such data canonicalJson and JSON.stringify write the same value,
 * so what is stored (JSON.stringify) is what was hashed (canonicalJson). Refused: anything with a
 * `toJSON` (a Date, a Buffer), another prototype (a Map, a class instance, a boxed string), a
 * function, a symbol, a bigint. An undefined property is allowed (both leave it out), as are an
 * undefined array item and a number JSON cannot hold (both write null). Without recursion, like
 * canonicalJson, and refused deeper than CANONICAL_VALUE_MAX_DEPTH (so a cycle is refused too).
 */
export function assertPlainJson(value: unknown, what = 'value'): void {
  const work: { value: unknown; path: string; depth: number }[] = [{ value, path: what, depth: 0 }];
  for (let item = work.pop(); item !== undefined; item = work.pop()) {
    const { value: v, path } = item;
    const refuse = (is: string): never => {
      throw new CanonicalJsonError(
        `${path} is ${is}: only plain JSON values (null, booleans, numbers, strings, arrays, plain objects) are hashed and stored alike; convert it first (a Date with toISOString())`,
      );
    };
    if (v === undefined) continue; // left out of an object, null in an array: the same in both forms
    if (v === null || typeof v === 'boolean' || typeof v === 'number' || typeof v === 'string') continue;
    if (typeof v !== 'object') refuse(`a ${typeof v}`);
    const obj = v as Record<string, unknown>;
    const proto = Object.getPrototypeOf(obj) as unknown;
    const named = (obj.constructor as { name?: unknown } | undefined)?.name;
    const kind = typeof named === 'string' && named !== '' && named !== 'Object' ? `a ${named}` : 'an object';
    if (typeof obj.toJSON === 'function') refuse(`${kind} with a toJSON method`);
    const array = Array.isArray(obj);
    if (array ? proto !== Array.prototype : proto !== Object.prototype && proto !== null) refuse(`${kind} (not a plain ${array ? 'array' : 'object'})`);
    const depth = item.depth + 1;
    if (depth > CANONICAL_VALUE_MAX_DEPTH) throw new CanonicalJsonError(`${path} is nested deeper than ${CANONICAL_VALUE_MAX_DEPTH} levels`);
    if (array) {
      for (let i = (obj as unknown[]).length - 1; i >= 0; i--) work.push({ value: (obj as unknown[])[i], path: `${path}[${i}]`, depth });
    } else {
      for (const k of Object.keys(obj).reverse())
        work.push({ value: obj[k], path: /^[A-Za-z_$][\w$]*$/.test(k) ? `${path}.${k}` : `${path}[${JSON.stringify(k).slice(0, 80)}]`, depth });
    }
  }
}

/** JSON text read into a tree that keeps what its canonical spelling needs. */
export type JsonTree = JsonObject | JsonArray | { kind: 'literal'; text: string };
export interface JsonObject {
  kind: 'object';
  entries: [string, JsonTree][];
}
export interface JsonArray {
  kind: 'array';
  items: JsonTree[];
}

const NUMBER_RE = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const STRING_RE = /"(?:[^"\\\u0000-\u001f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"/y;
const LONE_SURROGATE_RE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Reads JSON text (RFC 8259) into a tree, as serde_json reads it into a `Value`, without recursion:
 * strings decoded (a lone surrogate, which serde_json refuses, is refused), numbers re-spelled as
 * serde_json writes them, nesting deeper than `maxDepth` refused. Unlike serde_json, a key repeated
 * within one object is refused (serde_json keeps the last, or refuses a repeated struct field): the
 * signed text would be ambiguous.
 */
export function parseJsonTree(text: string, maxDepth = JSON_TEXT_MAX_DEPTH): JsonTree {
  let pos = 0;
  const fail = (what: string): never => {
    throw new CanonicalJsonError(`${what} at offset ${pos}`);
  };
  const skipSpace = (): void => {
    while (pos < text.length && ' \t\n\r'.includes(text.charAt(pos))) pos++;
  };
  const readString = (): string => {
    STRING_RE.lastIndex = pos;
    const m = STRING_RE.exec(text);
    if (!m) return fail('invalid string');
    const decoded = JSON.parse(m[0]) as string;
    if (LONE_SURROGATE_RE.test(decoded)) fail('a string with an unpaired surrogate');
    pos += m[0].length;
    return decoded;
  };
  const readLiteral = (): string => {
    const c = text.charAt(pos);
    if (c === '"') return JSON.stringify(readString());
    for (const word of ['true', 'false', 'null']) {
      if (text.startsWith(word, pos)) {
        pos += word.length;
        return word;
      }
    }
    NUMBER_RE.lastIndex = pos;
    const m = NUMBER_RE.exec(text);
    if (!m) return fail('unexpected character');
    try {
      const spelled = serdeNumberText(m[0]);
      pos += m[0].length;
      return spelled;
    } catch (e) {
      if (e instanceof SerdeNumberError) return fail(`${e.message} (${m[0].slice(0, 40)})`);
      throw e;
    }
  };

  interface Frame {
    node: JsonObject | JsonArray;
    keys?: Set<string>;
    key?: string;
  }
  const stack: Frame[] = [];
  let root: JsonTree | undefined;
  const attach = (node: JsonTree): void => {
    const top = stack[stack.length - 1];
    if (!top) root = node;
    else if (top.node.kind === 'array') top.node.items.push(node);
    else top.node.entries.push([top.key as string, node]);
  };
  const readKey = (frame: Frame): void => {
    skipSpace();
    if (text.charAt(pos) !== '"') fail('expected a key');
    const key = readString();
    if (frame.keys?.has(key)) fail(`key ${JSON.stringify(key).slice(0, 80)} appears twice in one object`);
    frame.keys?.add(key);
    skipSpace();
    if (text.charAt(pos) !== ':') fail("expected ':'");
    pos++;
    frame.key = key;
  };

  for (;;) {
    // A value starts here.
    skipSpace();
    const c = text.charAt(pos);
    if (c === '{' || c === '[') {
      if (stack.length >= maxDepth) fail(`nested deeper than ${maxDepth} levels`);
      pos++;
      const frame: Frame = c === '{' ? { node: { kind: 'object', entries: [] }, keys: new Set() } : { node: { kind: 'array', items: [] } };
      attach(frame.node);
      stack.push(frame);
      skipSpace();
      if (text.charAt(pos) === (c === '{' ? '}' : ']')) {
        pos++;
        stack.pop();
      } else {
        if (c === '{') readKey(frame);
        continue;
      }
    } else {
      attach({ kind: 'literal', text: readLiteral() });
    }
    // After a value: close what ends here, then the next value or the end.
    for (;;) {
      skipSpace();
      const top = stack[stack.length - 1];
      if (!top) {
        if (pos !== text.length) fail('text after the value');
        return root as JsonTree;
      }
      const ch = text.charAt(pos);
      if (ch === ',') {
        pos++;
        if (top.node.kind === 'object') readKey(top);
        break;
      }
      if (ch !== (top.node.kind === 'object' ? '}' : ']')) fail(`expected ',' or '${top.node.kind === 'object' ? '}' : ']'}'`);
      pos++;
      stack.pop();
    }
  }
}

/** A tree as AgentKeys' `canonicalize_json` writes it: keys in UTF-8 byte order, no whitespace. */
export function canonicalJsonTree(tree: JsonTree): string {
  const out: string[] = [];
  const work: (JsonTree | string)[] = [tree];
  for (let item = work.pop(); item !== undefined; item = work.pop()) {
    if (typeof item === 'string') out.push(item);
    else if (item.kind === 'literal') out.push(item.text);
    else if (item.kind === 'array') {
      out.push('[');
      work.push(']');
      for (let i = item.items.length - 1; i >= 0; i--) {
        work.push(item.items[i] as JsonTree);
        if (i > 0) work.push(',');
      }
    } else {
      const entries = item.entries.map(([key, value]) => ({ key, value, bytes: Buffer.from(key, 'utf8') })).sort((a, b) => Buffer.compare(a.bytes, b.bytes));
      out.push('{');
      work.push('}');
      for (let i = entries.length - 1; i >= 0; i--) {
        const e = entries[i] as (typeof entries)[number];
        work.push(e.value, `${JSON.stringify(e.key)}:`);
        if (i > 0) work.push(',');
      }
    }
  }
  return out.join('');
}
