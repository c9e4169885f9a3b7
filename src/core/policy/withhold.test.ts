import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readResourceFile } from '../../adapters/files/resource-files.ts';
import { SAMPLE_DATA_DIR, sharedDataDir } from '../../testkit/data.ts';
import { compileWithholdPolicy, type WithholdRuleSpec } from './withhold.ts';

const DECEASED: WithholdRuleSpec = {
  resourceType: 'Patient',
  when: 'deceased.exists() and deceased != false',
  reason: 'deceased',
};
const INACTIVE: WithholdRuleSpec = {
  resourceType: 'Practitioner',
  when: 'active = false',
  reason: 'inactive',
};

async function samplePatient(prefix: string): Promise<Record<string, unknown>> {
  const dir = join(SAMPLE_DATA_DIR, 'synthea');
  const file = readdirSync(dir).find((f) => f.startsWith(prefix)) as string;
  for await (const item of readResourceFile(join(dir, file))) {
    if (item.kind === 'resource' && item.resource.resourceType === 'Patient') return item.resource;
  }
  throw new Error(`no Patient in ${prefix}`);
}

describe('compileWithholdPolicy', () => {
  const policy = compileWithholdPolicy([DECEASED, INACTIVE]);

  it('withholds a deceased Synthea patient (deceasedDateTime) and lets a living one through', async () => {
    const dead = await samplePatient('Cathryn_Windler');
    expect(dead.deceasedDateTime).toBeTypeOf('string');
    expect(policy.decide('Patient', dead)).toEqual({ withheld: true, rule: DECEASED });
    const alive = await samplePatient('Abdul_Koepp');
    expect(alive.deceasedDateTime).toBeUndefined();
    expect(policy.decide('Patient', alive)).toBeUndefined();
  });

  it('withholds deceasedBoolean true and deceasedDateTime, not deceasedBoolean false', () => {
    expect(policy.decide('Patient', { resourceType: 'Patient', deceasedBoolean: true })?.rule.reason).toBe(
      'deceased',
    );
    expect(
      policy.decide('Patient', { resourceType: 'Patient', deceasedDateTime: '2015-02-14T13:42:00+10:00' }),
    ).toBeDefined();
    expect(policy.decide('Patient', { resourceType: 'Patient', deceasedBoolean: false })).toBeUndefined();
    expect(policy.decide('Patient', { resourceType: 'Patient' })).toBeUndefined();
  });

  const shared = sharedDataDir();
  it.skipIf(shared === undefined)('decides the official R4 example patients by their deceased[x]', () => {
    const examples = join(shared as string, 'fhir-r4-examples');
    const read = (name: string): object => JSON.parse(readFileSync(join(examples, name), 'utf8')) as object;
    expect(policy.decide('Patient', read('Patient-pat3.json'))).toBeDefined(); // deceasedDateTime
    expect(policy.decide('Patient', read('Patient-pat4.json'))).toBeDefined(); // deceasedBoolean true
    for (const alive of ['Patient-example.json', 'Patient-f001.json', 'Patient-proband.json']) {
      expect(policy.decide('Patient', read(alive)), alive).toBeUndefined(); // deceasedBoolean false
    }
  });

  it('applies a rule only to its resource type', () => {
    const deadPractitioner = { resourceType: 'Practitioner', deceasedBoolean: true, active: true };
    expect(policy.decide('Practitioner', deadPractitioner)).toBeUndefined();
    const inactivePatient = { resourceType: 'Patient', active: false };
    expect(policy.decide('Patient', inactivePatient)).toBeUndefined();
    expect(policy.decide('Practitioner', { resourceType: 'Practitioner', active: false })).toEqual({
      withheld: true,
      rule: INACTIVE,
    });
    expect(policy.decide('Organization', { resourceType: 'Organization', active: false })).toBeUndefined();
  });

  it('returns the first matching rule', () => {
    const second: WithholdRuleSpec = { resourceType: 'Patient', when: "gender = 'male'", reason: 'male' };
    const ordered = compileWithholdPolicy([second, DECEASED]);
    const both = { resourceType: 'Patient', gender: 'male', deceasedBoolean: true };
    expect(ordered.decide('Patient', both)?.rule.reason).toBe('male');
    expect(compileWithholdPolicy([DECEASED, second]).decide('Patient', both)?.rule.reason).toBe('deceased');
  });

  it('does not withhold when the expression yields a non-boolean or several values', () => {
    const p = compileWithholdPolicy([
      { resourceType: 'Patient', when: 'name.given', reason: 'names' },
      { resourceType: 'Patient', when: 'name.exists() and name.use', reason: 'multi' },
    ]);
    expect(p.decide('Patient', { resourceType: 'Patient', name: [{ given: ['A', 'B'] }] })).toBeUndefined();
  });

  it('fails at compile time on an invalid FHIRPath rule', () => {
    expect(() =>
      compileWithholdPolicy([DECEASED, { resourceType: 'Patient', when: 'deceased.exists(', reason: 'x' }]),
    ).toThrow();
  });
});
