/**
 * docs/security.md's table of limits names every request limit the API sets, by the name its 429s
 * and its metric (`broker_rate_limit_refusals_total{limit}`) carry, and no limit that is gone: a
 * new limit without a row, or a row for a renamed one, fails here.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';

const ROOT = join(__dirname, '..');

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** The names given to app.requestLimit in api/, and how many calls there are (a name not written as a literal would not be counted). */
function limitsInCode(): { names: string[]; calls: number } {
  let calls = 0;
  const names: string[] = [];
  for (const file of sources('api')) {
    const text = readFileSync(join(ROOT, file), 'utf8');
    calls += [...text.matchAll(/\.requestLimit\(/g)].length;
    names.push(...[...text.matchAll(/\.requestLimit\(\{\s*name:\s*'([^']+)'/g)].map((m) => m[1] ?? ''));
  }
  return { names, calls };
}

/** The limit names in backticks in the limits table of docs/security.md (those with a colon: the code's form). */
function limitsInDoc(): string[] {
  const doc = readFileSync(join(ROOT, 'docs', 'security.md'), 'utf8');
  const start = doc.indexOf('| limit | key | default | protects |');
  assert.ok(start >= 0, 'docs/security.md has no limits table');
  const table = doc.slice(start).split('\n\n')[0] ?? '';
  return [...new Set([...table.matchAll(/`([a-z_-]+(?::[a-z_-]+)+)`/g)].map((m) => m[1] ?? ''))];
}

void describe('docs/security.md and the request limits', () => {
  void test('every request limit in the code has its row, and every row names a limit the code sets', () => {
    const { names, calls } = limitsInCode();
    assert.equal(names.length, calls, 'a requestLimit call whose name is not a literal');
    assert.ok(names.length >= 20, `only ${names.length} limits found`);
    const doc = limitsInDoc();
    assert.deepEqual(
      names.filter((n) => !doc.includes(n)),
      [],
      'limits without a row',
    );
    assert.deepEqual(
      doc.filter((n) => !names.includes(n)),
      [],
      'rows for limits the code does not set',
    );
  });
});
