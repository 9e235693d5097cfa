/**
 * Text from elsewhere (an agent's reason, a request's target and services, the broker's error
 * messages, addresses) shown to a person at a terminal: control characters and Unicode direction
 * overrides would let it move the cursor, rewrite a line already printed (the `asks` line a holder
 * reads before approving) or reorder what is shown, so every such character is written as a
 * visible escape instead: `\n`, `\r`, `\t`, `\x1b`, `\u202e`. JSON output needs none of this
 * (JSON.stringify escapes C0; `shownJson` escapes the rest where JSON is shown to a person).
 */

/**
 * C0 and DEL, C1, and the invisible characters that change how a line is laid out: the bidi
 * embeddings and overrides (U+202A–U+202E), isolates (U+2066–U+2069), marks (U+200E, U+200F,
 * U+061C) and the line and paragraph separators (U+2028, U+2029).
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const UNSAFE_BUT_NEWLINE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
/** What JSON.stringify leaves as it is of the above (it escapes C0 itself). */
const UNSAFE_IN_JSON = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function escape(c: string): string {
  const named = NAMED[c];
  if (named) return named;
  const n = c.charCodeAt(0);
  return n <= 0xff ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
}

/** One line of text for a terminal: every control or direction character escaped, newlines too. */
export function shown(text: string): string {
  return text.replace(UNSAFE, escape);
}

/** Text whose lines are meant (a message to sign): newlines kept, everything else as `shown`. */
export function shownLines(text: string): string {
  return text.replace(UNSAFE_BUT_NEWLINE, escape);
}

/** JSON for a person to read: JSON.stringify, with DEL, C1 and the direction characters as \u escapes (still valid JSON). */
export function shownJson(value: unknown, indent?: number): string {
  return JSON.stringify(value, null, indent).replace(UNSAFE_IN_JSON, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
