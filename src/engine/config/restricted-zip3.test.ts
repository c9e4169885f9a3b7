import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, sharedDataDir } from '../../testkit/data.ts';
import { loadRestrictedZip3, restrictedZip3ListNames } from './restricted-zip3.ts';

type Issue = { key: string; message: string };

describe('restricted ZIP3 lists', () => {
  it('ships the HHS 2000 and HRSA 2020 lists', () => {
    expect(restrictedZip3ListNames()).toEqual(expect.arrayContaining(['hhs-2000', 'hrsa-2020']));
  });

  it('loads the 17 HHS prefixes of the 2000 census', () => {
    const issues: Issue[] = [];
    const set = loadRestrictedZip3(['hhs-2000'], issues);
    expect(issues).toEqual([]);
    expect([...set].sort()).toEqual([
      '036',
      '059',
      '063',
      '102',
      '203',
      '556',
      '692',
      '790',
      '821',
      '823',
      '830',
      '831',
      '878',
      '879',
      '884',
      '890',
      '893',
    ]);
  });

  const shared = sharedDataDir();
  it.skipIf(shared === undefined)('hhs-2000 equals the shared public data set', () => {
    const file = JSON.parse(
      readFileSync(join(shared as string, 'safe-harbor-restricted-zip3.json'), 'utf8'),
    ) as {
      restrictedZip3: string[];
    };
    expect([...loadRestrictedZip3(['hhs-2000'], [])].sort()).toEqual([...file.restrictedZip3].sort());
  });

  it('unions several lists', () => {
    const hhs = loadRestrictedZip3(['hhs-2000'], []);
    const hrsa = loadRestrictedZip3(['hrsa-2020'], []);
    const both = loadRestrictedZip3(['hhs-2000', 'hrsa-2020'], []);
    expect(both.size).toBe(new Set([...hhs, ...hrsa]).size);
    for (const p of [...hhs, ...hrsa]) expect(both.has(p)).toBe(true);
    expect(hrsa.has('202')).toBe(true);
    expect(hhs.has('202')).toBe(false);
  });

  it('reports an unknown list name as an issue with its index, and still loads the known ones', () => {
    const issues: Issue[] = [];
    const set = loadRestrictedZip3(['hhs-2000', 'hhs-2001', 'HHS-2000'], issues);
    expect(issues.map((i) => i.key)).toEqual([
      'stages.pseudonymize.restrictedZip3[1]',
      'stages.pseudonymize.restrictedZip3[2]',
    ]);
    expect(issues[0]?.message).toContain('unknown list hhs-2001');
    expect(issues[0]?.message).toContain('hhs-2000');
    expect(set.has('036')).toBe(true);
  });

  it('an empty selection restricts nothing', () => {
    const issues: Issue[] = [];
    expect(loadRestrictedZip3([], issues).size).toBe(0);
    expect(issues).toEqual([]);
  });

  it('every shipped prefix is three digits', () => {
    const raw = JSON.parse(readFileSync(join(REPO_ROOT, 'config', 'restricted-zip3.json'), 'utf8')) as {
      lists: Record<string, { prefixes: string[] }>;
    };
    for (const [name, list] of Object.entries(raw.lists)) {
      expect(list.prefixes.length, name).toBeGreaterThan(0);
      for (const p of loadRestrictedZip3([name], [])) expect(p).toMatch(/^\d{3}$/);
    }
  });
});
