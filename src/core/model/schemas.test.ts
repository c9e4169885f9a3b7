import { describe, expect, it } from 'vitest';
import { asSourceId, asSystemName } from './ids.ts';
import { CANONICAL_SCHEMAS, validateCanonical } from './schemas.ts';

const source = {
  system: asSystemName('epic'),
  resourceType: 'Practitioner',
  id: asSourceId('p1'),
  verifiedAt: '2025-06-01T00:00:00Z',
};

describe('canonical schemas', () => {
  it('has one schema per canonical kind', () => {
    expect(Object.keys(CANONICAL_SCHEMAS).sort()).toEqual(
      [
        'Affiliation',
        'CareEvent',
        'Consent',
        'HCP',
        'Interaction',
        'Organization',
        'PatientProfile',
        'Person',
        'ProgramEnrollment',
      ].sort(),
    );
  });

  it('accepts a valid HCP and rejects a bad NPI, an unknown key and a missing source, by path', () => {
    const hcp = { kind: 'HCP', source, lastName: 'Doe', npi: '1234567893', active: true, addresses: [] };
    expect(validateCanonical(hcp).ok).toBe(true);
    const bad = validateCanonical({
      ...hcp,
      npi: '1234567890',
      extra: 1,
      source: { ...source, verifiedAt: undefined },
    });
    expect(bad.ok).toBe(false);
    if (bad.ok) return;
    expect(bad.code).toBe('MAP_CANONICAL_INVALID');
    expect(bad.issues.map((i) => i.path).sort()).toEqual(
      ['', 'npi', 'source.verifiedAt'].sort().map((p) => p || 'HCP'),
    );
    // Issues never quote the value.
    expect(JSON.stringify(bad)).not.toContain('1234567890');
  });

  it('keeps patient data in the shapes it belongs to', () => {
    const profile = {
      kind: 'PatientProfile',
      source,
      pseudonym: 'ps1',
      ageOver89: false,
      gender: 'female',
      zip3: '021',
    };
    expect(validateCanonical(profile).ok).toBe(true);
    expect(validateCanonical({ ...profile, zip3: '02139' }).ok).toBe(false);
    expect(validateCanonical({ ...profile, birthDate: '1980-01-01' }).ok).toBe(false);
    const person = {
      kind: 'Person',
      source,
      mrns: [{ system: 'urn:x', value: '1' }],
      givenNames: ['A'],
      gender: 'unknown',
      emails: [],
      phones: ['617-555-0100'],
      addresses: [],
      deceased: false,
    };
    expect(validateCanonical(person)).toMatchObject({ ok: false, issues: [{ path: 'phones.0' }] });
    expect(validateCanonical({ ...person, phones: ['+16175550100'] }).ok).toBe(true);
    expect(validateCanonical({ kind: 'Nope' })).toMatchObject({ ok: false, issues: [{ path: 'kind' }] });
  });
});
