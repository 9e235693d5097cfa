/**
 * Text from elsewhere (an agent's reason, a request's target and services, the broker's error
 * messages, addresses) shown to a person at a terminal: control characters and Unicode direction
 * overrides would let it move the cursor, rewrite a line already printed (the `asks` line a holder
 * reads before approving) or reorder what is shown, so every such character is written as a
 * visible escape instead: `\n`, `\r`, `\t`, `\x1b`, `\u202e`. JSON output needs none of this
 * (JSON.stringify escapes C0; `shownJson` escapes the rest where JSON is shown to a person).
 */
import { LAYOUT_CHARACTER } from '../lib/plain-text';

/** lib/plain-text.ts's layout characters: C0, DEL, C1, line separators, bidi controls. */
const UNSAFE = new RegExp(LAYOUT_CHARACTER.source, 'g');

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
  return text.split('\n').map(shown).join('\n');
}

/** JSON for a person to read: JSON.stringify, with DEL, C1 and the direction characters as \u escapes (still valid JSON). */
export function shownJson(value: unknown, indent?: number): string {
  // Line by line: the only raw C0 in JSON.stringify's output is the newline of its indentation.
  return JSON.stringify(value, null, indent)
    .split('\n')
    .map((line) => line.replace(UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`))
    .join('\n');
}
