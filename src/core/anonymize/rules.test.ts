import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isSluiceError, type SluiceError } from '../errors/index.ts';
import { compileRuleSet, FAIL_CLOSED_DEFAULTS, loadRuleSetFile } from './rules.ts';
import { exampleRuleSet } from './testing.ts';

const dir = mkdtempSync(join(tmpdir(), 'sluice-anon-rules-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function errorOf(fn: () => unknown): SluiceError {
  try {
    fn();
  } catch (err) {
    if (isSluiceError(err)) return err;
    throw err;
  }
  throw new Error('expected a SluiceError');
}

const base = { id: 'test', destination: 'somewhere', purpose: 'testing' };

describe('rule sets', () => {
  it('loads the two example rule sets', () => {
    const crm = exampleRuleSet('crm-follow-up');
    expect(crm.resourceTypes).toEqual(new Set(['Patient']));
    expect(crm.rules.map((r) => r.spec.method)).toEqual(['pseudonymize', 'generalize', 'generalize', 'keep']);
    const analytics = exampleRuleSet('analytics');
    expect(analytics.defaults.quasi).toEqual({
      method: 'generalize',
      params: { granularity: 'year', addressKeep: ['state', 'country'] },
    });
    expect(analytics.rules.find((r) => r.path === '@dateTime')?.spec).toEqual({
      method: 'dateshift',
      params: { maxDays: 180 },
    });
    expect(analytics.rules.find((r) => r.path === 'Patient.extension')?.whereText).toContain('us-core-race');
  });

  it('fills unspecified class defaults fail-closed', () => {
    const rs = compileRuleSet({ ...base, defaults: { other: 'redact' } });
    expect(rs.defaults).toEqual({ ...FAIL_CLOSED_DEFAULTS, other: { method: 'redact' } });
    expect(rs.securityLabels).toBe(true);
  });

  it('accepts every selector form', () => {
    const paths = [
      '*.id',
      '*.meta.lastUpdated',
      '@HumanName',
      '@date',
      '@Address.postalCode',
      'Observation.value[x]',
      'Observation.value',
      'Observation.valueQuantity.value',
      'Patient.deceased[x]',
      'Patient.deceasedDateTime',
      'Patient',
      'Consent.provision.actor.reference',
    ];
    const rs = compileRuleSet({ ...base, rules: paths.map((path) => ({ path, method: 'redact' })) });
    expect(rs.rules.map((r) => r.index)).toEqual(paths.map((_, i) => i));
  });

  it('rejects an unknown method by name', () => {
    const err = errorOf(() =>
      compileRuleSet({ ...base, rules: [{ path: 'Patient.name', method: 'scramble' }] }),
    );
    expect(err.code).toBe('ANON_RULES_INVALID');
    expect((err.details.problems as readonly string[])[0]).toMatch(/^rules\[0\]\.method: /);
  });

  it('rejects misspelt paths, bad params and bad FHIRPath, listing every problem at once', () => {
    const err = errorOf(() =>
      compileRuleSet({
        ...base,
        rules: [
          { path: 'Patient.adress.line', method: 'redact' },
          { path: '@date', method: 'dateshift' },
          {
            path: 'Observation.valueQuantity.value',
            method: 'perturb',
            params: { maxDelta: 1, maxRatio: 0.1 },
          },
          { path: 'Patient.extension', where: "url = 'x' and (", method: 'keep' },
          { path: 'Patiente.name', method: 'redact' },
          { path: '@Nonsense', method: 'redact' },
          { path: 'Patient.name', method: 'redact', params: { surprise: true } },
          { path: 'patient name', method: 'redact' },
        ],
      }),
    );
    expect(err.code).toBe('ANON_RULES_INVALID');
    const list = err.details.problems as readonly string[];
    expect(list).toHaveLength(8);
    expect(list[0]).toMatch(/^rules\[0\]\.path: .*names no element at adress/);
    expect(list.some((p) => p.startsWith('rules[1].params.maxDays'))).toBe(true);
    expect(list.some((p) => p.includes('exactly one of maxDelta or maxRatio'))).toBe(true);
    expect(list.some((p) => p.startsWith('rules[3].where'))).toBe(true);
    expect(list.some((p) => p.includes('Patiente is not an R4 resource type'))).toBe(true);
    expect(list.some((p) => p.includes('Nonsense is not an R4 data type'))).toBe(true);
    expect(list.some((p) => p.startsWith('rules[6].params'))).toBe(true);
    expect(list.some((p) => p.startsWith('rules[7].path'))).toBe(true);
  });

  it('rejects unknown resource types in resourceTypes and unknown top-level keys', () => {
    const err = errorOf(() => compileRuleSet({ ...base, resourceTypes: ['Patient', 'Patients'] }));
    expect(err.details.problems).toEqual(['resourceTypes: Patients is not an R4 resource type']);
    expect(errorOf(() => compileRuleSet({ ...base, rulez: [] })).code).toBe('ANON_RULES_INVALID');
  });

  it('reports YAML syntax errors and missing files with their own codes', () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'id: x\nrules: [\n  - path: a\n');
    expect(errorOf(() => loadRuleSetFile(bad)).code).toBe('ANON_RULES_INVALID');
    expect(errorOf(() => loadRuleSetFile(join(dir, 'missing.yaml'))).code).toBe('CFG_FILE_MISSING');
  });
});
