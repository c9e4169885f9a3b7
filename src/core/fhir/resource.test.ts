import { describe, expect, it } from 'vitest';
import { asArray, identifierValues, isJsonObject, type JsonObject, parseReference, str } from './resource.ts';

const SYSTEM = 'http://hl7.org/fhir/sid/us-npi';

describe('identifierValues', () => {
  it('returns the trimmed values of the requested system only, in order', () => {
    const resource: JsonObject = {
      resourceType: 'Practitioner',
      identifier: [
        { system: SYSTEM, value: ' 1234567893 ' },
        { system: 'urn:oid:1.2.3', value: 'other' },
        { system: SYSTEM, value: '9999992198' },
      ],
    };
    expect(identifierValues(resource, SYSTEM)).toEqual(['1234567893', '9999992198']);
    expect(identifierValues(resource, 'urn:oid:1.2.3')).toEqual(['other']);
    expect(identifierValues(resource, 'urn:none')).toEqual([]);
  });

  it('skips blank, missing and non-string values and malformed entries', () => {
    const resource: JsonObject = {
      resourceType: 'Practitioner',
      identifier: [
        { system: SYSTEM, value: '   ' },
        { system: SYSTEM },
        { system: SYSTEM, value: 1234567893 },
        null,
        'not-an-identifier',
        [{ system: SYSTEM, value: 'nested' }],
        { value: '1234567893' },
      ],
    };
    expect(identifierValues(resource, SYSTEM)).toEqual([]);
  });

  it('reads a single identifier object (not an array) and a resource without identifiers', () => {
    expect(identifierValues({ identifier: { system: SYSTEM, value: '1' } }, SYSTEM)).toEqual(['1']);
    expect(identifierValues({ resourceType: 'Patient' }, SYSTEM)).toEqual([]);
    expect(identifierValues({ identifier: null }, SYSTEM)).toEqual([]);
  });
});

describe('parseReference', () => {
  it('parses relative references', () => {
    expect(parseReference('Patient/123')).toEqual({ resourceType: 'Patient', id: '123' });
    expect(parseReference('Practitioner/a-b.c')).toEqual({ resourceType: 'Practitioner', id: 'a-b.c' });
  });

  it('parses absolute URLs to their last Type/id', () => {
    expect(parseReference('https://fhir.example.org/api/FHIR/R4/Organization/e1.abc-9')).toEqual({
      resourceType: 'Organization',
      id: 'e1.abc-9',
    });
  });

  it('drops the version of a versioned reference', () => {
    expect(parseReference('Patient/123/_history/7')).toEqual({ resourceType: 'Patient', id: '123' });
    expect(parseReference('http://x.org/fhir/Patient/123/_history/2')).toEqual({
      resourceType: 'Patient',
      id: '123',
    });
  });

  it('does not read urn:uuid references (they name bundle entries, not Type/id)', () => {
    expect(parseReference('urn:uuid:018f428e-34f6-4707-8009-5ad742f901e7')).toBeUndefined();
    expect(parseReference('urn:oid:1.2.3.4')).toBeUndefined();
  });

  it('rejects garbage', () => {
    for (const bad of [
      undefined,
      null,
      42,
      { reference: 'Patient/1' },
      '',
      'Patient',
      'Patient/',
      '/123',
      'patient/123',
      '#contained-1',
      'Patient/123/',
      'Patient/has space',
      `Patient/${'x'.repeat(257)}`,
      'Patient/123/_history/',
      'Patient/1?x=y',
    ]) {
      expect(parseReference(bad), JSON.stringify(bad)).toBeUndefined();
    }
  });

  it('accepts the longest id FHIR allows in this parser (256 characters)', () => {
    const id = 'a'.repeat(256);
    expect(parseReference(`Patient/${id}`)).toEqual({ resourceType: 'Patient', id });
  });
});

describe('small readers', () => {
  it('isJsonObject accepts plain objects only', () => {
    expect(isJsonObject({})).toBe(true);
    expect(isJsonObject([])).toBe(false);
    expect(isJsonObject(null)).toBe(false);
    expect(isJsonObject('x')).toBe(false);
  });

  it('asArray wraps single values and drops null/undefined', () => {
    expect(asArray(undefined)).toEqual([]);
    expect(asArray(null)).toEqual([]);
    expect(asArray(1)).toEqual([1]);
    expect(asArray([1, 2])).toEqual([1, 2]);
  });

  it('str returns non-blank strings only', () => {
    expect(str('a')).toBe('a');
    expect(str('  ')).toBeUndefined();
    expect(str(3)).toBeUndefined();
  });
});
