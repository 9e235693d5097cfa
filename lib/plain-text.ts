/**
 * The characters that change how text shown to a person is laid out, rather than what it says: C0
 * controls (U+0000–U+001F: ESC, CR, LF and TAB included), DEL (U+007F), C1 controls (U+0080–U+009F,
 * among them CSI, which some terminals read as ESC [), the Unicode line and paragraph separators
 * (U+2028, U+2029) and the invisible bidi characters: embeddings and overrides (U+202A–U+202E),
 * isolates (U+2066–U+2069), which reorder what is shown after them, and marks (U+061C, U+200E,
 * U+200F). The API refuses them in one-line text another party reads (api/schemas.ts oneLineText);
 * the CLI escapes them in what it shows (cli/terminal-text.ts).
 */
export const LAYOUT_CHARACTER = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;
