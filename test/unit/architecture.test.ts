import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The import rules of docs/ARCHITECTURE.md are the law: this test reads the table there and checks every import in
 * src/ against it, and that every folder under src/ is in the table, so the document and the code cannot drift.
 */
const root = join(import.meta.dirname, '..', '..');
const src = join(root, 'src');

function allowedImports(): Map<string, Set<string>> {
  const doc = readFileSync(join(root, 'docs', 'ARCHITECTURE.md'), 'utf8');
  const rules = new Map<string, Set<string>>();
  for (const line of doc.split('\n')) {
    const m = /^\| `([a-z]+)` \| [^|]+ \| ([^|]+) \|$/.exec(line.trim());
    if (!m) continue;
    const allowed = (m[2] as string).includes('(nothing)') ? [] : (m[2] as string).split(',').map((s) => s.trim());
    rules.set(m[1] as string, new Set(allowed));
  }
  return rules;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) return sourceFiles(full);
    return full.endsWith('.ts') ? [full] : [];
  });
}

const componentOf = (file: string) => relative(src, file).split(sep)[0] as string;

describe('architecture', () => {
  const rules = allowedImports();

  it('documents every component folder', () => {
    const folders = readdirSync(src).filter((n) => statSync(join(src, n)).isDirectory());
    expect(rules.size).toBeGreaterThan(5);
    expect([...rules.keys()].sort()).toEqual(folders.sort());
  });

  it('gives every component folder a README saying what it owns', () => {
    for (const folder of rules.keys()) expect(statSync(join(src, folder, 'README.md')).isFile()).toBe(true);
  });

  it('has no import that the table does not allow (lower layers never import higher ones)', () => {
    const violations: string[] = [];
    for (const file of sourceFiles(src)) {
      const from = componentOf(file);
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'(\.[^']+)'/g)) {
        const target = join(file, '..', m[1] as string);
        const to = componentOf(target);
        if (to === from || relative(src, target).startsWith('..')) continue;
        if (!rules.get(from)?.has(to)) violations.push(`${relative(root, file)} imports ${to} (${m[1]})`);
      }
    }
    expect(violations).toEqual([]);
  });
});
