import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isSluiceError, type SluiceError } from '../errors/index.ts';
import { anonymizeContextFromEnv } from './env-context.ts';
import { compileProfile, loadProfile, PROFILE_DIR, PROFILE_NAMES } from './profile.ts';

function errorOf(fn: () => unknown): SluiceError {
  try {
    fn();
  } catch (err) {
    if (isSluiceError(err)) return err;
    throw err;
  }
  throw new Error('expected a SluiceError');
}

function problemsOf(err: SluiceError): string[] {
  return err.details.problems as string[];
}

const KEY = 'ab'.repeat(32);

describe('shipped profiles', () => {
  it('load by name and by file path to the same rule set', () => {
    for (const name of PROFILE_NAMES) {
      const byName = loadProfile(name);
      const byFile = loadProfile(join(PROFILE_DIR, `${name}.yaml`));
      expect(byName.name).toBe(name);
      expect(byFile.ruleSet.rules.map((r) => r.path)).toEqual(byName.ruleSet.rules.map((r) => r.path));
      expect(byName.restrictedZip3).toEqual(['hhs-2000']);
    }
  });

  it('safe-harbor cuts dates to the year and never shifts or pseudonymises', () => {
    const p = loadProfile('safe-harbor');
    const methods = new Set(
      [...Object.values(p.ruleSet.defaults), ...p.ruleSet.rules.map((r) => r.spec)].map((s) => s.method),
    );
    expect(methods.has('dateshift')).toBe(false);
    expect(methods.has('pseudonymize')).toBe(false);
    expect(methods.has('perturb')).toBe(false);
    expect(p.ruleSet.defaults.direct).toEqual({ method: 'redact' });
    for (const type of ['@date', '@dateTime', '@instant']) {
      expect(p.ruleSet.rules.find((r) => r.path === type)?.spec).toMatchObject({
        method: 'generalize',
        params: { granularity: 'year' },
      });
    }
  });

  it('crm-follow-up declares its release check, analytics its aggregate tables', () => {
    expect(loadProfile('crm-follow-up').risk).toMatchObject({
      resourceType: 'Patient',
      thresholds: { minK: 11, maxProsecutorRisk: 0.09 },
    });
    const analytics = loadProfile('analytics');
    expect(analytics.aggregation?.k).toBe(11);
    expect(analytics.aggregation?.dimensions.birthDecade).toEqual({
      path: 'Patient.birthDate',
      bandWidth: 10,
    });
  });

  it('an unknown name that is no file is ANON_PROFILE_NOT_FOUND', () => {
    const err = errorOf(() => loadProfile('safe-harbour'));
    expect(err.code).toBe('ANON_PROFILE_NOT_FOUND');
    expect(err.details.known).toEqual([...PROFILE_NAMES]);
  });
});

describe('profile validation', () => {
  it('lists every problem of an invalid profile, each with its dotted key', () => {
    const err = errorOf(() =>
      compileProfile({
        id: 'Bad Id',
        destination: 'x',
        purpose: 'y',
        restrictedZip3: ['hhs-2000', 'nope'],
        defaults: { direct: 'scramble' },
        rules: [
          { path: 'Patient.nmae', method: 'redact' },
          { path: 'Patient.birthDate', method: 'generalize', params: { granularity: 'decade' } },
          { path: 'Patient.gender', method: 'keep', extra: 1 },
        ],
        risk: {
          resourceType: 'Patient',
          quasiIdentifiers: { zip: 'Patient.address.(' },
          thresholds: { minK: 0 },
        },
        aggregation: {
          resourceType: 'Patient',
          dimensions: { g: 'Patient.gender' },
          tables: [{ rows: 'nope' }],
        },
      }),
    );
    expect(err.code).toBe('ANON_RULES_INVALID');
    const keys = problemsOf(err).map((p) => p.split(':')[0]);
    expect(keys).toEqual(
      expect.arrayContaining([
        'id',
        'defaults.direct',
        'rules[2]',
        'rules[0].path',
        'rules[1].params.granularity',
        'restrictedZip3[1]',
        'risk.thresholds.minK',
        'risk.quasiIdentifiers.zip',
        'aggregation.tables[0].rows',
      ]),
    );
    // The message names them too, and no problem is reported twice.
    expect(err.message).toContain('rules[0].path');
    expect(new Set(problemsOf(err)).size).toBe(problemsOf(err).length);
  });

  it('requires the restricted ZIP3 list when the profile generalises', () => {
    const err = errorOf(() =>
      compileProfile({
        id: 'zipless',
        destination: 'x',
        purpose: 'y',
        rules: [{ path: 'Patient.address', method: 'generalize' }],
      }),
    );
    expect(problemsOf(err)).toEqual([expect.stringMatching(/^restrictedZip3: required/)]);
  });

  it('refuses a file that is not YAML, and a YAML that is not a mapping', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-profile-'));
    writeFileSync(join(dir, 'broken.yaml'), 'id: [unclosed\n');
    writeFileSync(join(dir, 'list.yaml'), '- a\n- b\n');
    expect(errorOf(() => loadProfile(join(dir, 'broken.yaml'))).code).toBe('ANON_RULES_INVALID');
    expect(problemsOf(errorOf(() => loadProfile(join(dir, 'list.yaml'))))).toEqual([
      '(root): a profile is a mapping of keys',
    ]);
  });

  it('accepts a custom profile file with risk and aggregation sections', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-profile-'));
    const file = join(dir, 'mine.json');
    writeFileSync(
      file,
      JSON.stringify({
        id: 'mine',
        destination: 'reviewers',
        purpose: 'review',
        resourceTypes: ['Patient'],
        restrictedZip3: ['hhs-2000', 'hrsa-2020'],
        rules: [{ path: 'Patient.gender', method: 'keep' }],
        risk: { resourceType: 'Patient', quasiIdentifiers: { gender: 'Patient.gender' } },
      }),
    );
    const p = loadProfile(file);
    expect(p.source).toBe(file);
    expect(p.risk?.thresholds).toEqual({});
    expect(p.restrictedZip3).toEqual(['hhs-2000', 'hrsa-2020']);
  });
});

describe('keys from the environment', () => {
  const profile = loadProfile('analytics');

  it('builds the context from SLUICE_PSEUDONYM_KEY with the profile ZIP3 lists', () => {
    const ctx = anonymizeContextFromEnv(profile, {
      SLUICE_PSEUDONYM_KEY: KEY,
      SLUICE_PSEUDONYM_KEY_ID: 'k9',
    });
    expect(ctx.keyring?.currentKeyId).toBe('k9');
    expect(ctx.restrictedZip3?.listIds).toEqual(['hhs-2000']);
    expect(ctx.restrictedZip3?.prefixes.has('036')).toBe(true);
    expect(ctx.system).toBe('epic');
  });

  it('refuses a missing, short or malformed key with a coded error naming the variable, not the value', () => {
    const missing = errorOf(() => anonymizeContextFromEnv(profile, {}));
    expect(missing.code).toBe('ANON_CONTEXT_INVALID');
    expect(missing.message).toContain('SLUICE_PSEUDONYM_KEY');
    const short = errorOf(() => anonymizeContextFromEnv(profile, { SLUICE_PSEUDONYM_KEY: 'abcd' }));
    expect(short.code).toBe('CFG_KEY_INVALID');
    expect(short.details).toMatchObject({ variable: 'SLUICE_PSEUDONYM_KEY', bytes: 2 });
    const bad = errorOf(() => anonymizeContextFromEnv(profile, { SLUICE_PSEUDONYM_KEY: 'not a key!' }));
    expect(bad.code).toBe('CFG_KEY_INVALID');
    expect(bad.message).not.toContain('not a key!');
  });

  it('needs no key for safe-harbor, which pseudonymises nothing', () => {
    const ctx = anonymizeContextFromEnv(loadProfile('safe-harbor'), {});
    expect(ctx.keyring).toBeUndefined();
  });
});
