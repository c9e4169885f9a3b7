import { describe, expect, it } from 'vitest';
import { compileFhirPath, isTrue } from './fhirpath.ts';

describe('compileFhirPath', () => {
  it('resolves choice types against the R4 model', () => {
    const fn = compileFhirPath('deceased');
    expect(fn({ resourceType: 'Patient', deceasedBoolean: true })).toEqual([true]);
    expect(fn({ resourceType: 'Patient', deceasedDateTime: '2020-01-01' }).map(String)).toEqual([
      '2020-01-01',
    ]);
    expect(fn({ resourceType: 'Patient' })).toEqual([]);
  });

  it('evaluates against plain JSON without mutating it', () => {
    const resource = { resourceType: 'Practitioner', active: false, name: [{ family: 'X' }] };
    const copy = structuredClone(resource);
    expect(compileFhirPath('active = false')(resource)).toEqual([true]);
    expect(compileFhirPath('name.family')(resource)).toEqual(['X']);
    expect(resource).toEqual(copy);
  });

  it('throws at compile time on an invalid expression', () => {
    for (const bad of ['deceased.exists( and', 'name.where(', "active = 'x", '))']) {
      expect(() => compileFhirPath(bad), bad).toThrow();
    }
  });

  it('isTrue accepts exactly [true]', () => {
    expect(isTrue([true])).toBe(true);
    expect(isTrue([])).toBe(false);
    expect(isTrue([false])).toBe(false);
    expect(isTrue([true, true])).toBe(false);
    expect(isTrue(['true'])).toBe(false);
    expect(isTrue([1])).toBe(false);
  });
});
