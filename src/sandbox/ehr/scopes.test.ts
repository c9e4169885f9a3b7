import { describe, expect, it } from 'vitest';
import { describeRequired, findScope, formatScope, grantScopes, parseScope, parseScopes } from './scopes.ts';

const perms = (text: string) => [...(parseScope(text)?.permissions ?? [])].sort().join('');

describe('parseScope', () => {
  it('reads SMART v1 and v2 system scopes', () => {
    expect(perms('system/*.read')).toBe('rs');
    expect(perms('system/Patient.write')).toBe('cdu');
    expect(perms('system/Patient.*')).toBe('cdrsu');
    expect(perms('system/Observation.rs')).toBe('rs');
    expect(perms('system/*.cruds')).toBe('cdrsu');
    expect(perms('system/Patient.r')).toBe('r');
    expect(parseScope('system/Patient.rs')?.resourceType).toBe('Patient');
    expect(parseScope('system/*.rs')?.syntax).toBe('v2');
    expect(parseScope('system/*.read')?.syntax).toBe('v1');
  });

  it('refuses what is not a plain system scope', () => {
    for (const text of [
      'patient/*.read',
      'user/Patient.read',
      'system/Patient.sr', // v2 letters must be in cruds order
      'system/Patient.rr',
      'system/Patient.',
      'system/patient.read',
      'system/Patient.rs?category=vital-signs',
      'system/*.readwrite',
      'launch',
      'openid',
      '',
    ]) {
      expect(parseScope(text), text).toBeUndefined();
    }
  });

  it('splits a scope string and lists the words it could not read', () => {
    const { scopes, invalid } = parseScopes('  system/Patient.read   launch/patient system/*.rs ');
    expect(scopes.map((s) => s.text)).toEqual(['system/Patient.read', 'system/*.rs']);
    expect(invalid).toEqual(['launch/patient']);
  });
});

describe('grantScopes', () => {
  const demo = parseScopes('system/*.read system/*.rs').scopes;

  it('grants requested scopes inside the allowed ones, in the syntax asked for', () => {
    expect(grantScopes('system/Patient.read', demo).map((s) => s.text)).toEqual(['system/Patient.read']);
    expect(grantScopes('system/Patient.rs', demo).map((s) => s.text)).toEqual(['system/Patient.rs']);
    expect(grantScopes('system/*.read', demo).map((s) => s.text)).toEqual(['system/*.read']);
  });

  it('narrows a wider request to what is allowed', () => {
    expect(grantScopes('system/*.cruds', demo).map((s) => s.text)).toEqual(['system/*.rs']);
    expect(grantScopes('system/*.*', demo).map((s) => s.text)).toEqual(['system/*.read']);
    const patientOnly = parseScopes('system/Patient.rs').scopes;
    expect(grantScopes('system/*.read', patientOnly).map((s) => s.text)).toEqual(['system/Patient.read']);
  });

  it('grants nothing for writes to a read-only client, or for unknown words', () => {
    expect(grantScopes('system/*.write', demo)).toEqual([]);
    expect(grantScopes('system/Patient.cud', demo)).toEqual([]);
    expect(grantScopes('patient/*.read openid', demo)).toEqual([]);
  });

  it('keeps the allowed part of a mixed request', () => {
    expect(grantScopes('system/Patient.read system/*.write', demo).map((s) => s.text)).toEqual([
      'system/Patient.read',
    ]);
  });

  it('grants everything allowed when no scope is requested', () => {
    expect(grantScopes(undefined, demo).map((s) => s.text)).toEqual(['system/*.read', 'system/*.rs']);
    expect(grantScopes('  ', demo)).toHaveLength(2);
  });

  it('never grants more than was asked or allowed (exhaustive over small sets)', () => {
    const words = [
      'system/*.read',
      'system/*.write',
      'system/Patient.r',
      'system/Patient.cruds',
      'system/*.s',
    ];
    for (const allowedWord of words) {
      for (const wanted of words) {
        const allowed = parseScopes(allowedWord).scopes;
        for (const granted of grantScopes(wanted, allowed)) {
          for (const permission of granted.permissions) {
            expect(
              findScope(
                allowed,
                granted.resourceType === '*' ? 'Anything' : granted.resourceType,
                permission,
              ),
            ).toBeDefined();
            expect(
              findScope(
                parseScopes(wanted).scopes,
                granted.resourceType === '*' ? 'Anything' : granted.resourceType,
                permission,
              ),
            ).toBeDefined();
          }
        }
      }
    }
  });
});

describe('findScope', () => {
  const scopes = parseScopes('system/Patient.read system/Observation.r').scopes;

  it('returns the scope that allows the interaction', () => {
    expect(findScope(scopes, 'Patient', 's')?.text).toBe('system/Patient.read');
    expect(findScope(scopes, 'Observation', 'r')?.text).toBe('system/Observation.r');
  });

  it('returns undefined when no scope covers it', () => {
    expect(findScope(scopes, 'Observation', 's')).toBeUndefined();
    expect(findScope(scopes, 'Practitioner', 'r')).toBeUndefined();
    expect(findScope(scopes, 'Patient', 'u')).toBeUndefined();
  });

  it('names what would have been needed', () => {
    expect(describeRequired('Practitioner', 's')).toBe('system/Practitioner.read or system/Practitioner.s');
    expect(describeRequired('Patient', 'u')).toBe('system/Patient.write or system/Patient.u');
    expect(formatScope('Patient', new Set(['r']), 'v1')).toBe('system/Patient.r');
  });
});
