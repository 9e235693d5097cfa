import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';

/**
 * Checks of the Phase 0 patch (tee-patch/) that need no Rust toolchain: the stored upstream texts
 * against the list in tee-patch/README.md, and every `use` path the patch adds resolved against the
 * stored crate sources the way rustc resolves it across crates (E0432 for a missing item, E0603 for
 * a private module on the path).
 */

// ---------------------------------------------------------------- stored files vs README

export interface StoredFile {
  path: string;
  commit: string;
  sha256: string;
}

/** README rows: | `tee-worker/omni-executor/…` | `<40-hex commit>` | `<64-hex sha256>` | … */
export function readmeStoredFiles(readme: string): StoredFile[] {
  const rows: StoredFile[] = [];
  for (const m of readme.matchAll(/^\| `([^`]+)` \| `([0-9a-f]{40})` \| `([0-9a-f]{64})` \|/gm)) {
    rows.push({ path: m[1] ?? '', commit: m[2] ?? '', sha256: m[3] ?? '' });
  }
  return rows;
}

export function listFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(relative(root, p).split(sep).join('/'));
    }
  };
  walk(root);
  return out.sort();
}

export const sha256File = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

/** Every problem between the stored texts under `root` and the README's list (empty: they agree). */
export function storedFileProblems(root: string, readme: string): string[] {
  const listed = readmeStoredFiles(readme);
  const problems: string[] = [];
  const byPath = new Map(listed.map((f) => [f.path, f]));
  if (byPath.size !== listed.length) problems.push('the README lists a file twice');
  const stored = listFiles(root);
  for (const path of stored) {
    const row = byPath.get(path);
    if (!row) {
      problems.push(`${path}: stored but not listed in the README`);
      continue;
    }
    const actual = sha256File(join(root, path));
    if (actual !== row.sha256) problems.push(`${path}: SHA-256 ${actual} differs from the README's ${row.sha256} (drifted)`);
  }
  for (const row of listed) if (!stored.includes(row.path)) problems.push(`${row.path}: listed in the README but not stored`);
  return problems;
}

// ---------------------------------------------------------------- patch: added lines

/** Per file of a unified diff: the line numbers (1-based, in the new file) of its added lines. */
export function addedLines(patch: string): Map<string, number[]> {
  const out = new Map<string, number[]>();
  let file: string | undefined;
  let line = 0;
  for (const text of patch.split('\n')) {
    const header = /^\+\+\+ b\/(.+)$/.exec(text);
    if (header) {
      file = header[1];
      if (file && !out.has(file)) out.set(file, []);
      continue;
    }
    const hunk = /^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@/.exec(text);
    if (hunk) {
      line = Number(hunk[1]);
      continue;
    }
    if (!file || text.startsWith('---') || text.startsWith('diff ') || text.startsWith('index ')) continue;
    if (text.startsWith('+')) {
      out.get(file)?.push(line);
      line++;
    } else if (text.startsWith(' ')) line++;
  }
  return out;
}

// ---------------------------------------------------------------- Rust source: items and use trees

/** Blanks comments, string and char literals (keeping offsets and newlines) so braces and `;` can be counted. */
export function stripRust(src: string): string {
  const out = src.split('');
  const blank = (from: number, to: number) => {
    for (let k = from; k < to && k < out.length; k++) if (out[k] !== '\n') out[k] = ' ';
  };
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    const next = src[i + 1];
    if (c === '/' && next === '/') {
      const end = src.indexOf('\n', i);
      const to = end === -1 ? src.length : end;
      blank(i, to);
      i = to;
    } else if (c === '/' && next === '*') {
      let depth = 1;
      let j = i + 2;
      while (j < src.length && depth > 0) {
        if (src[j] === '/' && src[j + 1] === '*') {
          depth++;
          j += 2;
        } else if (src[j] === '*' && src[j + 1] === '/') {
          depth--;
          j += 2;
        } else j++;
      }
      blank(i, j);
      i = j;
    } else if (c === 'r' && /^r#*"/.test(src.slice(i, i + 10)) && !/[A-Za-z0-9_]/.test(src[i - 1] ?? '')) {
      const hashes = (/^r(#*)"/.exec(src.slice(i)) ?? ['', ''])[1] ?? '';
      const close = `"${hashes}`;
      const end = src.indexOf(close, i + 2 + hashes.length);
      const to = end === -1 ? src.length : end + close.length;
      blank(i, to);
      i = to;
    } else if (c === '"') {
      let j = i + 1;
      while (j < src.length && src[j] !== '"') j += src[j] === '\\' ? 2 : 1;
      blank(i, j + 1);
      i = j + 1;
    } else if (c === "'" && /^'(?:[^'\\]|\\.|\\u\{[0-9a-fA-F]+\}|\\x[0-9a-fA-F]{2})'/.test(src.slice(i, i + 12))) {
      const m = /^'(?:[^'\\]|\\.|\\u\{[0-9a-fA-F]+\}|\\x[0-9a-fA-F]{2})'/.exec(src.slice(i, i + 12));
      const len = m?.[0].length ?? 1;
      blank(i, i + len);
      i += len;
    } else i++;
  }
  return out.join('');
}

export type Visibility = 'pub' | 'restricted' | 'private';

export interface UseLeaf {
  /** The path as written, segment by segment (`*` for a glob). */
  path: string[];
  /** The name it binds (the last segment, or its `as` alias); undefined for a glob. */
  name?: string;
}

export interface UseDecl {
  visibility: Visibility;
  leaves: UseLeaf[];
  /** Offsets of the declaration in the source. */
  start: number;
  end: number;
}

export interface ModDecl {
  name: string;
  visibility: Visibility;
  /** The body of an inline module (`mod x { … }`), else undefined (`mod x;`: a file). */
  inlineBody?: string;
}

export interface ModuleItems {
  mods: ModDecl[];
  uses: UseDecl[];
  /** Named items (fn, struct, enum, trait, const, static, type, union, macro) and their visibility. */
  items: Map<string, Visibility>;
}

const visibilityOf = (v: string | undefined): Visibility => (!v ? 'private' : v.trim() === 'pub' ? 'pub' : 'restricted');

/** Splits a use tree (`a::{b, c::d as e, f::*}`) into its leaves. */
export function expandUseTree(tree: string): UseLeaf[] {
  const text = tree.replace(/\s+/g, ' ').trim();
  const leaves: UseLeaf[] = [];
  const walk = (prefix: string[], src: string) => {
    src = src.trim();
    if (!src) return;
    // Split a top-level group: prefix::{…}
    const brace = topLevelBrace(src);
    if (brace !== -1) {
      const head = src
        .slice(0, brace)
        .replace(/::\s*$/, '')
        .trim();
      const inner = src.slice(brace + 1, matchingBrace(src, brace)).trim();
      const base = [...prefix, ...segments(head)];
      for (const part of splitTopLevel(inner)) {
        if (part.trim() === 'self') leaves.push({ path: base, name: base[base.length - 1] });
        else walk(base, part);
      }
      return;
    }
    const alias = /^(.*?)\s+as\s+([A-Za-z_][A-Za-z0-9_]*)$/.exec(src);
    const path = [...prefix, ...segments(alias ? (alias[1] ?? '') : src)];
    const last = path[path.length - 1];
    if (last === '*') leaves.push({ path });
    else if (last === 'self') {
      const mod = path.slice(0, -1);
      leaves.push({ path: mod, name: alias?.[2] ?? mod[mod.length - 1] });
    } else leaves.push({ path, name: alias?.[2] ?? last });
  };
  walk([], text.replace(/^::/, ''));
  return leaves;
}

const segments = (s: string): string[] =>
  s
    .split('::')
    .map((x) => x.trim())
    .filter((x) => x.length > 0);

function topLevelBrace(s: string): number {
  return s.indexOf('{');
}

function matchingBrace(s: string, open: number): number {
  let depth = 0;
  for (let i = open; i < s.length; i++) {
    if (s[i] === '{') depth++;
    else if (s[i] === '}' && --depth === 0) return i;
  }
  throw new Error(`unbalanced braces in use tree: ${s}`);
}

function splitTopLevel(s: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let from = 0;
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '{') depth++;
    else if (s[i] === '}') depth--;
    else if (s[i] === ',' && depth === 0) {
      parts.push(s.slice(from, i));
      from = i + 1;
    }
  }
  parts.push(s.slice(from));
  return parts.filter((p) => p.trim().length > 0);
}

const ITEM_RE =
  /^(?:#\[[^\]]*\]\s*)*(pub(?:\s*\([^)]*\))?\s+)?(?:(?:const|async|unsafe|extern(?:\s+"[^"]*")?|default)\s+)*(fn|struct|enum|trait|const|static|type|union|macro_rules!|mod|use)\s+(.*)$/s;

/** The top-level declarations of a module's source (items nested in blocks, impls and inline modules excluded). */
export function moduleItems(src: string): ModuleItems {
  const clean = stripRust(src);
  const result: ModuleItems = { mods: [], uses: [], items: new Map() };
  let depth = 0;
  let stmtStart = 0;
  let i = 0;
  const take = (end: number, body?: { open: number; close: number }) => {
    const text = clean.slice(stmtStart, end).trim();
    const m = ITEM_RE.exec(text.replace(/^(?:#!?\[[^\]]*\]\s*)+/, ''));
    if (m) {
      const vis = visibilityOf(m[1]);
      const kind = m[2];
      const rest = m[3] ?? '';
      if (kind === 'use') {
        const tree = rest.replace(/;\s*$/, '');
        result.uses.push({ visibility: vis, leaves: expandUseTree(tree), start: stmtStart, end });
      } else if (kind === 'mod') {
        const name = /^([A-Za-z_][A-Za-z0-9_]*)/.exec(rest)?.[1];
        if (name) result.mods.push({ name, visibility: vis, inlineBody: body ? src.slice(body.open + 1, body.close) : undefined });
      } else {
        const name = /^([A-Za-z_][A-Za-z0-9_]*)/.exec(rest)?.[1];
        if (name && !result.items.has(name)) result.items.set(name, vis);
      }
    }
    stmtStart = end;
  };
  while (i < clean.length) {
    const c = clean[i];
    if (c === '{') {
      if (depth === 0) {
        const open = i;
        let d = 0;
        let j = i;
        for (; j < clean.length; j++) {
          if (clean[j] === '{') d++;
          else if (clean[j] === '}' && --d === 0) break;
        }
        // A braced item ends at its closing brace unless a `;` follows directly (e.g. `struct A {..};` is not Rust, but `use a::{b};` is).
        const after = clean.slice(j + 1).match(/^\s*;/);
        if (/^\s*(?:pub(?:\s*\([^)]*\))?\s+)?use\b/.test(clean.slice(stmtStart, open).replace(/^\s*(?:#!?\[[^\]]*\]\s*)+/, ''))) {
          i = j + 1;
          continue; // a use group: the statement ends at its `;`
        }
        const end = after ? j + 1 + (after[0]?.length ?? 0) : j + 1;
        take(end, { open, close: j });
        i = end;
        continue;
      }
      depth++;
    } else if (c === '}') depth--;
    else if (c === ';' && depth === 0) {
      take(i + 1);
    }
    i++;
  }
  return result;
}

// ---------------------------------------------------------------- crates from Cargo.toml

export interface Dependency {
  /** The name the code uses (the dependency key, `-` → `_`). */
  ident: string;
  /** The package it names (`package = "…"`, else the key). */
  pkg: string;
  /** Listed in the manifest's "# Local dependencies" part, or with a `path`: a crate of this workspace. */
  local: boolean;
}

export interface CrateInfo {
  pkg: string;
  /** Directory of the Cargo.toml, relative to the stored root. */
  dir: string;
  deps: Dependency[];
}

/** [package] name and [dependencies] of a Cargo.toml (the subset of TOML these manifests use). */
export function parseManifest(text: string, dir: string): CrateInfo {
  let section = '';
  let localPart = false;
  let pkg = '';
  const deps: Dependency[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const header = /^\[([^\]]+)\]$/.exec(line);
    if (header) {
      section = header[1] ?? '';
      localPart = false;
      continue;
    }
    if (/^#\s*local dependencies/i.test(line)) localPart = true;
    if (!line || line.startsWith('#')) continue;
    const kv = /^([A-Za-z0-9_-]+)\s*=\s*(.+)$/.exec(line);
    if (!kv) continue;
    const key = kv[1] ?? '';
    const value = kv[2] ?? '';
    if (section === 'package' && key === 'name') pkg = JSON.parse(value) as string;
    if (section === 'dependencies') {
      const renamed = /package\s*=\s*"([^"]+)"/.exec(value)?.[1];
      deps.push({ ident: key.replace(/-/g, '_'), pkg: renamed ?? key, local: localPart || /\bpath\s*=/.test(value) });
    }
  }
  return { pkg, dir, deps };
}

// ---------------------------------------------------------------- resolution

export interface UseCheck {
  file: string;
  line: number;
  path: string;
  /** `ok`: resolved in stored sources; `external`: a registry or std crate, not checked; else the failure. */
  outcome: 'ok' | 'external' | 'failed';
  detail: string;
  /** On a failure this reader could not judge: the path leads into a source that is not stored, or the `use` is below module level. */
  unchecked?: 'not stored' | 'below module level';
}

const STD_CRATES = new Set(['std', 'core', 'alloc']);

interface Module {
  /** File holding the module (for inline modules: the file that holds them). */
  file: string;
  /** Source of the module's body. */
  src: string;
  /** Directory where its `mod x;` children live. */
  childDir: string;
  crate: CrateInfo;
  /** Module path inside the crate (for messages). */
  modPath: string[];
  /** A module whose own source is not stored (a parent reached by `super`): children are found by file layout only. */
  unstored?: boolean;
}

class ResolveError extends Error {}
/** The path leads into a source that is not stored: neither right nor wrong as far as this reader can tell. */
class NotStoredError extends ResolveError {}

export class StoredSources {
  private readonly crates: CrateInfo[];

  constructor(private readonly root: string) {
    this.crates = listFiles(root)
      .filter((p) => p.endsWith('Cargo.toml'))
      .map((p) => parseManifest(readFileSync(join(root, p), 'utf8'), dirname(p)));
  }

  /** The crate (stored Cargo.toml) a stored file belongs to: the nearest manifest above it. */
  crateOf(file: string): CrateInfo | undefined {
    return this.crates.filter((c) => file.startsWith(`${c.dir}/`)).sort((a, b) => b.dir.length - a.dir.length)[0];
  }

  private read(file: string): string | undefined {
    const p = join(this.root, file);
    return existsSync(p) ? readFileSync(p, 'utf8') : undefined;
  }

  private rootModule(crate: CrateInfo): Module {
    const file = `${crate.dir}/src/lib.rs`;
    const src = this.read(file);
    if (src === undefined) throw new NotStoredError(`the lib.rs of crate ${crate.pkg} is not stored (${file})`);
    return { file, src, childDir: `${crate.dir}/src`, crate, modPath: [] };
  }

  /** The module a (stored) source file is, by the file-layout convention. */
  private fileModule(file: string): Module {
    const crate = this.crateOf(file);
    if (!crate) throw new ResolveError(`${file} belongs to no stored crate`);
    const src = this.read(file);
    if (src === undefined) throw new NotStoredError(`${file} is not stored`);
    const inSrc = file.slice(`${crate.dir}/src/`.length).replace(/\.rs$/, '');
    const parts = inSrc.split('/');
    const last = parts[parts.length - 1];
    const modPath = last === 'lib' || last === 'main' || last === 'mod' ? parts.slice(0, -1) : parts;
    const childDir = last === 'lib' || last === 'main' || last === 'mod' ? dirname(file) : file.replace(/\.rs$/, '');
    return { file, src, childDir, crate, modPath: modPath.filter((p) => p !== 'lib' && p !== 'main') };
  }

  private childModule(parent: Module, decl: ModDecl): Module {
    const modPath = [...parent.modPath, decl.name];
    if (decl.inlineBody !== undefined)
      return { file: parent.file, src: decl.inlineBody, childDir: `${parent.childDir}/${decl.name}`, crate: parent.crate, modPath };
    for (const file of [`${parent.childDir}/${decl.name}.rs`, `${parent.childDir}/${decl.name}/mod.rs`]) {
      const src = this.read(file);
      if (src !== undefined) return { file, src, childDir: file.endsWith('/mod.rs') ? dirname(file) : file.replace(/\.rs$/, ''), crate: parent.crate, modPath };
    }
    throw new NotStoredError(`the source of module ${parent.crate.pkg}::${modPath.join('::')} is not stored (${parent.childDir}/${decl.name}.rs)`);
  }

  /** The parent of a module given by file (for `super`); only by file layout. */
  private parentModule(m: Module): Module {
    if (m.modPath.length === 0) throw new ResolveError(`\`super\` of the crate root of ${m.crate.pkg}`);
    const parentPath = m.modPath.slice(0, -1);
    const base = `${m.crate.dir}/src`;
    const candidates =
      parentPath.length === 0 ? [`${base}/lib.rs`, `${base}/main.rs`] : [`${base}/${parentPath.join('/')}.rs`, `${base}/${parentPath.join('/')}/mod.rs`];
    for (const file of candidates) if (this.read(file) !== undefined) return this.fileModule(file);
    // Not stored: a module known only by its directory; its children are found by file layout.
    return {
      file: `${base}/${parentPath.join('/')}/mod.rs`,
      src: '',
      childDir: `${base}/${parentPath.join('/')}`,
      crate: m.crate,
      modPath: parentPath,
      unstored: true,
    };
  }

  /**
   * Resolves the `use` paths declared on the given lines of a stored (patched) file. Paths into
   * another crate must be public at every step (`pub mod`, `pub use`, a public item); paths inside
   * the same crate (`crate::`, `super::`, `self::`) may cross private modules but must end at an
   * item visible outside its module (`pub`, `pub(crate)`, …).
   */
  checkUses(file: string, lines: number[]): UseCheck[] {
    const src = this.read(file);
    if (src === undefined) throw new Error(`${file} is not stored`);
    const lineStarts = [0];
    for (let i = 0; i < src.length; i++) if (src[i] === '\n') lineStarts.push(i + 1);
    const lineOf = (offset: number) => {
      let lo = 0;
      while (lo + 1 < lineStarts.length && (lineStarts[lo + 1] ?? Infinity) <= offset) lo++;
      return lo + 1;
    };
    const wanted = new Set(lines);
    const clean = stripRust(src);
    const module = this.fileModule(file);
    const checks: UseCheck[] = [];
    const covered = new Set<number>();
    for (const decl of moduleItems(src).uses) {
      const text = clean.slice(decl.start, decl.end);
      const first = lineOf(decl.start + (text.length - text.trimStart().length));
      const last = lineOf(decl.end - 1);
      let touched = false;
      for (let l = first; l <= last; l++) {
        covered.add(l);
        if (wanted.has(l)) touched = true;
      }
      if (!touched) continue;
      for (const leaf of decl.leaves) {
        const path = leaf.path.join('::');
        try {
          const outcome = this.resolveUse(module, leaf.path);
          checks.push({ file, line: first, path, outcome: outcome === 'external' ? 'external' : 'ok', detail: outcome });
        } catch (e) {
          if (!(e instanceof ResolveError)) throw e;
          checks.push({
            file,
            line: first,
            path,
            outcome: 'failed',
            detail: e.message,
            ...(e instanceof NotStoredError && { unchecked: 'not stored' as const }),
          });
        }
      }
    }
    // A `use` this reader cannot place (inside a function or an inline module) is not passed unchecked.
    const srcLines = clean.split('\n');
    for (const line of lines) {
      if (!covered.has(line) && /^\s*(?:pub(?:\s*\([^)]*\))?\s+)?use\s/.test(srcLines[line - 1] ?? '')) {
        checks.push({
          file,
          line,
          path: (srcLines[line - 1] ?? '').trim(),
          outcome: 'failed',
          detail: 'a use declaration below module level: not checked by this reader',
          unchecked: 'below module level',
        });
      }
    }
    return checks;
  }

  /** Resolves a use path as if written in the stored file `file`. */
  resolveUseIn(file: string, path: string[]): string {
    return this.resolveUse(this.fileModule(file), path);
  }

  /** Resolves one use path written in module `from`; returns 'external' or a description of what it reached. */
  resolveUse(from: Module, path: string[]): string {
    const [head, ...rest] = path;
    if (head === undefined) throw new ResolveError('empty path');
    if (STD_CRATES.has(head)) return 'external';
    if (head === 'crate') return this.walk(this.rootModule(from.crate), rest, 'in-crate', path);
    if (head === 'self') return this.walk(from, rest, 'in-crate', path);
    if (head === 'super') {
      let m = this.parentModule(from);
      let tail = rest;
      while (tail[0] === 'super') {
        m = this.parentModule(m);
        tail = tail.slice(1);
      }
      return this.walk(m, tail, 'in-crate', path);
    }
    // A name in the module itself (2018 uniform paths) before an extern crate.
    const own = moduleItems(from.src);
    if (own.mods.some((d) => d.name === head)) return this.walk(from, path, 'in-crate', path);
    const dep = from.crate.deps.find((d) => d.ident === head);
    if (!dep) throw new ResolveError(`\`${head}\` is not a crate ${from.crate.pkg} depends on (its Cargo.toml [dependencies]) nor an item of ${from.file}`);
    const crate = this.crates.find((c) => c.pkg === dep.pkg);
    if (!crate) {
      if (dep.local) throw new NotStoredError(`the source of workspace crate ${dep.pkg} (\`${head}\`) is not stored`);
      return 'external';
    }
    return this.walk(this.rootModule(crate), rest, 'extern', path);
  }

  private walk(start: Module, rest: string[], mode: 'extern' | 'in-crate', full: string[], seen = new Set<string>()): string {
    let m = start;
    for (let k = 0; k < rest.length; k++) {
      const seg = rest[k] ?? '';
      const isLast = k === rest.length - 1;
      if (seg === '*') {
        if (!isLast) throw new ResolveError(`misplaced glob in ${full.join('::')}`);
        return `glob of ${m.crate.pkg}::${m.modPath.join('::')}`;
      }
      const found = this.lookup(m, seg, mode, full, seen);
      if (isLast)
        return found.kind === 'module' ? `module ${found.module.crate.pkg}::${found.module.modPath.join('::')}` : `${found.kind} ${seg} in ${found.where}`;
      if (found.kind === 'external') throw new NotStoredError(`\`${seg}\` in ${full.join('::')} is in a crate whose source is not stored`);
      if (found.kind !== 'module') throw new ResolveError(`\`${seg}\` in ${full.join('::')} is not a module`);
      m = found.module;
    }
    return `module ${m.crate.pkg}::${m.modPath.join('::')}`;
  }

  /** Finds `name` in module `m` as a module, an item or a re-export visible under `mode`. */
  private lookup(
    m: Module,
    name: string,
    mode: 'extern' | 'in-crate',
    full: string[],
    seen: Set<string>,
  ): { kind: 'module'; module: Module } | { kind: 'item' | 'external'; where: string } {
    const key = `${m.file}#${m.modPath.join('::')}#${name}#${mode}`;
    if (seen.has(key)) throw new ResolveError(`cyclic re-export of ${name}`);
    seen.add(key);
    const items = moduleItems(m.src);
    const where = `${m.crate.pkg}::${m.modPath.join('::') || '(root)'} (${m.file})`;
    if (m.unstored) {
      // Only the children's files are known: a module found there is taken as declared (in-crate paths only).
      if (mode === 'extern') throw new NotStoredError(`the source of ${where} is not stored`);
      return { kind: 'module', module: this.childModule(m, { name, visibility: 'private' }) };
    }
    const mod = items.mods.find((d) => d.name === name);
    if (mod) {
      if (mode === 'extern' && mod.visibility !== 'pub') {
        throw new ResolveError(
          `module \`${name}\` is private: ${where} declares \`mod ${name}\`, so ${full.join('::')} cannot be named from another crate (E0603)`,
        );
      }
      return { kind: 'module', module: this.childModule(m, mod) };
    }
    const vis = items.items.get(name);
    if (vis !== undefined) {
      const visible = mode === 'extern' ? vis === 'pub' : vis !== 'private';
      if (!visible) throw new ResolveError(`\`${name}\` is private in ${where}`);
      return { kind: 'item', where };
    }
    // Re-exports: named first, then globs.
    const acceptable = (v: Visibility) => (mode === 'extern' ? v === 'pub' : v !== 'private');
    for (const use of items.uses.filter((u) => acceptable(u.visibility))) {
      for (const leaf of use.leaves) {
        if (leaf.name === name) return this.follow(m, leaf.path, full, seen);
      }
    }
    for (const use of items.uses.filter((u) => acceptable(u.visibility))) {
      for (const leaf of use.leaves) {
        if (leaf.name !== undefined) continue;
        const target = this.follow(m, leaf.path.slice(0, -1), full, seen);
        if (target.kind !== 'module') continue;
        try {
          return this.lookup(target.module, name, 'extern', full, seen);
        } catch (e) {
          if (!(e instanceof ResolveError) || !/ is not (?:found|declared)/.test(e.message)) throw e;
        }
      }
    }
    throw new ResolveError(`\`${name}\` is not declared in ${where}${mode === 'extern' ? ' nor re-exported by it' : ''} (${full.join('::')})`);
  }

  /** Follows a re-exported path written inside module `m` (uniform paths: own modules first, then crates). */
  private follow(
    m: Module,
    path: string[],
    full: string[],
    seen: Set<string>,
  ): { kind: 'module'; module: Module } | { kind: 'item' | 'external'; where: string } {
    const [head, ...rest] = path;
    if (head === undefined) return { kind: 'module', module: m };
    let start: Module;
    let tail = rest;
    if (head === 'crate') start = this.rootModule(m.crate);
    else if (head === 'self') start = m;
    else if (head === 'super') start = this.parentModule(m);
    else if (moduleItems(m.src).mods.some((d) => d.name === head)) {
      start = m;
      tail = path;
    } else {
      const dep = m.crate.deps.find((d) => d.ident === head);
      const crate = dep && this.crates.find((c) => c.pkg === dep.pkg);
      if (!dep) throw new ResolveError(`re-export \`${path.join('::')}\` in ${m.file} names neither a module nor a dependency`);
      if (!crate) return { kind: 'external', where: dep.pkg };
      start = this.rootModule(crate);
    }
    let cur: Module = start;
    for (let k = 0; k < tail.length; k++) {
      const seg = tail[k] ?? '';
      const found = this.lookup(cur, seg, cur.crate === m.crate ? 'in-crate' : 'extern', full, seen);
      if (k === tail.length - 1) return found;
      if (found.kind !== 'module') throw new ResolveError(`\`${seg}\` in re-export ${path.join('::')} is not a module`);
      cur = found.module;
    }
    return { kind: 'module', module: cur };
  }
}

/** Every use path on the patch's added lines, checked against the (patched) stored sources under `root`. */
export function checkPatchImports(root: string, patch: string): UseCheck[] {
  const sources = new StoredSources(root);
  const checks: UseCheck[] = [];
  for (const [file, lines] of addedLines(patch)) {
    if (!file.endsWith('.rs') || lines.length === 0) continue;
    checks.push(...sources.checkUses(file, lines));
  }
  return checks;
}

/**
 * Every module-level `use` in the stored (patched) `files`, context lines included: the paths that
 * fail for a reason this reader can judge (a crate the file's crate does not depend on, a name its
 * stored module does not declare, a private module). A path into a source that is not stored is
 * not one of them. Empty when the stored texts are one layout.
 */
export function layoutProblems(root: string, files: string[]): UseCheck[] {
  const sources = new StoredSources(root);
  return files.flatMap((file) => {
    const lineCount = readFileSync(join(root, file), 'utf8').split('\n').length;
    const all = Array.from({ length: lineCount }, (_, i) => i + 1);
    return sources.checkUses(file, all).filter((c) => c.outcome === 'failed' && c.unchecked === undefined);
  });
}

/** Checks one `use` statement (`use a::{b, c};`) as if written in the stored file `file`. */
export function checkUseStatement(root: string, file: string, statement: string): UseCheck[] {
  const sources = new StoredSources(root);
  const decl = moduleItems(statement).uses[0];
  if (!decl) throw new Error(`not a use statement: ${statement}`);
  return decl.leaves.map((leaf) => {
    const path = leaf.path.join('::');
    try {
      const outcome = sources.resolveUseIn(file, leaf.path);
      return { file, line: 0, path, outcome: outcome === 'external' ? 'external' : 'ok', detail: outcome };
    } catch (e) {
      if (!(e instanceof ResolveError)) throw e;
      return { file, line: 0, path, outcome: 'failed', detail: e.message, ...(e instanceof NotStoredError && { unchecked: 'not stored' as const }) };
    }
  });
}
