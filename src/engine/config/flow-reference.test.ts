import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { REPO_ROOT } from '../../testkit/data.ts';
import { referenceRows, renderFlowFileReference, typeOf } from './flow-reference.ts';

/** Every key path of a parsed YAML document, maps of names and lists as the reference writes them. */
function keyPaths(value: unknown, path: string, mapsAt: ReadonlySet<string>, out: Set<string>): Set<string> {
  if (Array.isArray(value)) {
    for (const item of value) keyPaths(item, `${path}[]`, mapsAt, out);
  } else if (typeof value === 'object' && value !== null) {
    for (const [name, child] of Object.entries(value)) {
      const key = mapsAt.has(path) ? `${path}.<name>` : path === '' ? name : `${path}.${name}`;
      out.add(key);
      keyPaths(child, key, mapsAt, out);
    }
  }
  return out;
}

describe('flow-file reference', () => {
  const rows = referenceRows();
  const keys = new Set(rows.map((r) => r.key));

  it('describes every key the schema accepts', () => {
    expect(rows.length).toBeGreaterThan(80);
    expect(rows.filter((r) => r.description.trim() === '').map((r) => r.key)).toEqual([]);
    expect(keys).toContain('source.bulk.exportsAhead');
    expect(keys).toContain('target.throttle.windows.<name>[].timeZone');
    expect(keys).toContain('stages.withhold[].when');
  });

  it('documents every key the example flow uses', () => {
    const flow = parse(readFileSync(join(REPO_ROOT, 'examples', 'flows', 'epic-to-veeva.yaml'), 'utf8'));
    const maps = new Set(rows.filter((r) => r.type.startsWith('map of')).map((r) => r.key));
    const used = keyPaths(flow, '', maps, new Set());
    expect(used.size).toBeGreaterThan(30);
    expect([...used].filter((k) => !keys.has(k))).toEqual([]);
  });

  it('says types, limits and defaults in words', () => {
    const row = (key: string) => rows.find((r) => r.key === key);
    expect(row('source.pageSize')).toMatchObject({ type: 'integer ≥ 1, ≤ 1,000', presence: 'default `200`' });
    expect(row('source.auth')).toMatchObject({ type: 'object, by `kind`', presence: 'required' });
    expect(row('source.auth.privateKeyFile')?.when).toBe('kind `smart-backend-services`');
    expect(row('target.lineageField')?.type).toBe('text or `null`');
    expect(row('stages.consent')?.presence).toBe('optional');
    expect(typeOf({ type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1 })).toBe('number > 0, < 1');
    // Pipes inside cells are escaped, so the tables keep their columns.
    const text = renderFlowFileReference();
    for (const line of text.split('\n').filter((l) => l.startsWith('| `'))) {
      expect(line.replace(/\\\|/g, '').split('|').length, line).toBe(6);
    }
  });
});
