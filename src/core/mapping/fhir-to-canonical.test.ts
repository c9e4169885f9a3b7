import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { readResourceFile } from '../../adapters/files/resource-files.ts';
import { loadRestrictedZip3 } from '../../engine/config/restricted-zip3.ts';
import { SAMPLE_DATA_DIR } from '../../testkit/data.ts';
import type { PseudonymKey } from '../anonymize/pseudonym.ts';
import { NPI_SYSTEM } from '../fhir/npi.ts';
import type { JsonObject } from '../fhir/resource.ts';
import type { CanonicalRecord, Hcp, Organization, PatientProfile } from '../model/canonical.ts';
import { asSystemName } from '../model/ids.ts';
import { type FhirMappingContext, fhirToCanonical } from './fhir-to-canonical.ts';
import type { Outcome } from './outcome.ts';

const SYNTHEA_DIR = join(SAMPLE_DATA_DIR, 'synthea');
const DIRECTORY_DIR = join(SAMPLE_DATA_DIR, 'directory');

async function resources(file: string, type: string): Promise<JsonObject[]> {
  const out: JsonObject[] = [];
  for await (const item of readResourceFile(file)) {
    if (item.kind === 'resource' && item.resource.resourceType === type)
      out.push(item.resource as JsonObject);
  }
  return out;
}

async function synthPatient(prefix: string): Promise<JsonObject> {
  const name = readdirSync(SYNTHEA_DIR).find((f) => f.startsWith(prefix));
  if (!name) throw new Error(`no sample bundle ${prefix}`);
  const [patient] = await resources(join(SYNTHEA_DIR, name), 'Patient');
  if (!patient) throw new Error(`no Patient in ${name}`);
  return patient;
}

function key(id: string): PseudonymKey {
  return { id, secret: new Uint8Array(randomBytes(32)) };
}

const KEY = key('test-1');
const hhs = loadRestrictedZip3(['hhs-2000'], []);

function ctx(overrides: Partial<FhirMappingContext> = {}): FhirMappingContext {
  return {
    system: asSystemName('epic'),
    verifiedAt: '2025-06-01T00:00:00.000Z',
    asOf: new Date('2025-06-01T00:00:00Z'),
    pseudonymKey: KEY,
    restrictedZip3: hhs,
    ...overrides,
  };
}

function value<T>(outcome: Outcome<T>): T {
  if (!outcome.ok) throw new Error(`expected ok, got ${outcome.code}: ${JSON.stringify(outcome.issues)}`);
  return outcome.value;
}

function asKind<K extends CanonicalRecord['kind']>(
  record: CanonicalRecord,
  kind: K,
): Extract<CanonicalRecord, { kind: K }> {
  expect(record.kind).toBe(kind);
  return record as Extract<CanonicalRecord, { kind: K }>;
}

function clone(resource: JsonObject): JsonObject {
  return structuredClone(resource);
}

describe('fhirToCanonical: Practitioner → HCP', () => {
  let practitioners: JsonObject[] = [];
  beforeAll(async () => {
    practitioners = await resources(join(DIRECTORY_DIR, 'Practitioner.ndjson.gz'), 'Practitioner');
  });

  it('maps every directory Practitioner with its NPI, names and addresses', () => {
    expect(practitioners.length).toBeGreaterThan(200);
    for (const p of practitioners) {
      const hcp = asKind(value(fhirToCanonical(p, ctx())), 'HCP');
      const npi = (p.identifier as { system: string; value: string }[]).find((i) => i.system === NPI_SYSTEM);
      const name = (p.name as { family: string; given: string[] }[])[0];
      const address = (p.address as { line: string[]; city: string; state: string; postalCode: string }[])[0];
      expect(hcp.npi).toBe(npi?.value);
      expect(hcp.lastName).toBe(name?.family);
      expect(hcp.firstName).toBe(name?.given.join(' '));
      expect(hcp.source).toMatchObject({ system: 'epic', resourceType: 'Practitioner', id: p.id });
      expect(hcp.addresses).toHaveLength(1);
      expect(hcp.addresses[0]).toMatchObject({
        lines: address?.line,
        city: address?.city,
        state: address?.state,
        postalCode: address?.postalCode,
      });
      expect(hcp.gender).toBe(p.gender);
      expect(hcp.active).toBe(true);
    }
  });

  it('records source version and lastUpdated when present, and verifiedAt from the context', () => {
    const p = clone(practitioners[0] as JsonObject);
    p.meta = { versionId: '4', lastUpdated: '2024-01-02T03:04:05Z' };
    const hcp = value(fhirToCanonical(p, ctx({ verifiedAt: '2025-07-07T07:07:07.000Z' })));
    expect(hcp.source).toMatchObject({
      versionId: '4',
      lastUpdated: '2024-01-02T03:04:05Z',
      verifiedAt: '2025-07-07T07:07:07.000Z',
    });
  });

  it('refuses an NPI with a wrong check digit as MAP_INVALID_IDENTIFIER without quoting it', () => {
    const p = clone(practitioners[0] as JsonObject);
    const good = (p.identifier as { value: string }[])[0]?.value as string;
    const bad = `${good.slice(0, 9)}${(Number(good[9]) + 1) % 10}`;
    p.identifier = [{ system: NPI_SYSTEM, value: bad }];
    const outcome = fhirToCanonical(p, ctx());
    expect(outcome.ok).toBe(false);
    if (outcome.ok) return;
    expect(outcome.code).toBe('MAP_INVALID_IDENTIFIER');
    expect(outcome.issues[0]?.path).toContain('identifier');
    expect(JSON.stringify(outcome.issues)).not.toContain(bad);
  });

  it('refuses a malformed NPI (letters, nine digits)', () => {
    for (const bad of ['12345678AB', '123456789']) {
      const p = clone(practitioners[0] as JsonObject);
      p.identifier = [{ system: NPI_SYSTEM, value: bad }];
      const outcome = fhirToCanonical(p, ctx());
      expect(outcome.ok ? 'ok' : outcome.code).toBe('MAP_INVALID_IDENTIFIER');
    }
  });

  it('refuses two different NPIs, but accepts the same NPI repeated', () => {
    const p = clone(practitioners[0] as JsonObject);
    const other = ((practitioners[1] as JsonObject).identifier as { value: string }[])[0]?.value as string;
    const own = (p.identifier as { value: string }[])[0]?.value as string;
    expect(other).not.toBe(own);
    p.identifier = [
      { system: NPI_SYSTEM, value: own },
      { system: NPI_SYSTEM, value: other },
    ];
    const outcome = fhirToCanonical(p, ctx());
    expect(outcome.ok ? 'ok' : outcome.code).toBe('MAP_INVALID_IDENTIFIER');
    if (!outcome.ok) {
      expect(JSON.stringify(outcome.issues)).not.toContain(own);
      expect(JSON.stringify(outcome.issues)).not.toContain(other);
    }

    p.identifier = [
      { system: NPI_SYSTEM, value: own },
      { system: NPI_SYSTEM, value: ` ${own} ` },
    ];
    expect(asKind(value(fhirToCanonical(p, ctx())), 'HCP').npi).toBe(own);
  });

  it('maps a Practitioner without NPI with a MAP_NO_NPI warning', () => {
    const p = clone(practitioners[0] as JsonObject);
    delete p.identifier;
    const outcome = fhirToCanonical(p, ctx());
    expect(outcome.ok).toBe(true);
    if (!outcome.ok) return;
    expect((outcome.value as Hcp).npi).toBeUndefined();
    expect(outcome.warnings.map((w) => w.code)).toEqual(['MAP_NO_NPI']);
  });

  it('requires a family name (MAP_REQUIRED_MISSING)', () => {
    const p = clone(practitioners[0] as JsonObject);
    p.name = [{ given: ['Only'] }];
    const outcome = fhirToCanonical(p, ctx());
    expect(outcome.ok ? 'ok' : outcome.code).toBe('MAP_REQUIRED_MISSING');
  });

  it('prefers the official name, drops old addresses, reads inactive and credentials', () => {
    const p = clone(practitioners[0] as JsonObject);
    p.name = [
      { use: 'old', family: 'Former', given: ['Ann'] },
      { use: 'official', family: 'Current', given: ['Ann', 'Marie'] },
    ];
    p.address = [
      { use: 'old', line: ['1 Old Rd'], city: 'Oldtown', postalCode: '01000' },
      { use: 'work', line: ['2 New St', 'Floor 3'], city: 'Newton', postalCode: '02458' },
    ];
    p.active = false;
    p.qualification = [{ code: { coding: [{ system: 'http://example.org', code: 'MD' }] } }];
    const hcp = asKind(value(fhirToCanonical(p, ctx())), 'HCP');
    expect(hcp.lastName).toBe('Current');
    expect(hcp.firstName).toBe('Ann Marie');
    expect(hcp.addresses).toEqual([
      { use: 'work', lines: ['2 New St', 'Floor 3'], city: 'Newton', postalCode: '02458' },
    ]);
    expect(hcp.active).toBe(false);
    expect(hcp.credentials).toBe('MD');
  });
});

describe('fhirToCanonical: Organization', () => {
  it('maps every directory Organization with its name and address', async () => {
    const orgs = await resources(join(DIRECTORY_DIR, 'Organization.ndjson.gz'), 'Organization');
    expect(orgs.length).toBeGreaterThan(200);
    for (const o of orgs) {
      const org = asKind(value(fhirToCanonical(o, ctx())), 'Organization');
      expect(org.name).toBe(o.name);
      expect(org.addresses[0]?.city).toBe((o.address as { city: string }[])[0]?.city);
      expect(org.npi).toBeUndefined();
    }
  });

  it('requires a name and validates an NPI', async () => {
    const [first] = await resources(join(DIRECTORY_DIR, 'Organization.ndjson.gz'), 'Organization');
    const unnamed = clone(first as JsonObject);
    delete unnamed.name;
    const a = fhirToCanonical(unnamed, ctx());
    expect(a.ok ? 'ok' : a.code).toBe('MAP_REQUIRED_MISSING');

    const badNpi = clone(first as JsonObject);
    badNpi.identifier = [{ system: NPI_SYSTEM, value: '1234567890' }];
    const b = fhirToCanonical(badNpi, ctx());
    expect(b.ok ? 'ok' : b.code).toBe('MAP_INVALID_IDENTIFIER');

    const goodNpi = clone(first as JsonObject);
    goodNpi.identifier = [{ system: NPI_SYSTEM, value: '1234567893' }];
    expect((value(fhirToCanonical(goodNpi, ctx())) as Organization).npi).toBe('1234567893');
  });
});

describe('fhirToCanonical: Patient → PatientProfile', () => {
  it('gives a keyed pseudonym: same key and id → same, other key → other, other id → other', async () => {
    const patient = await synthPatient('Abdul_Koepp');
    const a = asKind(value(fhirToCanonical(patient, ctx())), 'PatientProfile');
    const b = asKind(value(fhirToCanonical(clone(patient), ctx())), 'PatientProfile');
    const sameKeyCopy = { id: KEY.id, secret: new Uint8Array(KEY.secret) };
    const c = asKind(value(fhirToCanonical(patient, ctx({ pseudonymKey: sameKeyCopy }))), 'PatientProfile');
    const other = asKind(
      value(fhirToCanonical(patient, ctx({ pseudonymKey: key('test-2') }))),
      'PatientProfile',
    );
    const otherId = asKind(value(fhirToCanonical({ ...patient, id: 'another' }, ctx())), 'PatientProfile');
    const otherSystem = asKind(
      value(fhirToCanonical(patient, ctx({ system: asSystemName('cerner') }))),
      'PatientProfile',
    );
    expect(a.pseudonym).toMatch(/^p[a-z2-7]{32}$/);
    expect(b.pseudonym).toBe(a.pseudonym);
    expect(c.pseudonym).toBe(a.pseudonym);
    expect(other.pseudonym).not.toBe(a.pseudonym);
    expect(otherId.pseudonym).not.toBe(a.pseudonym);
    expect(otherSystem.pseudonym).not.toBe(a.pseudonym);
    expect(a.pseudonym).not.toContain(String(patient.id));
  });

  it('keeps birth year, ZIP3 and gender of a real patient', async () => {
    const patient = await synthPatient('Abdul_Koepp'); // born 1956-08-03, ZIP 01940, male
    const profile = asKind(value(fhirToCanonical(patient, ctx())), 'PatientProfile');
    expect(profile).toMatchObject({
      kind: 'PatientProfile',
      birthYear: 1956,
      ageOver89: false,
      zip3: '019',
      gender: 'male',
    });
    expect(profile.source).toMatchObject({ system: 'epic', resourceType: 'Patient' });
  });

  it('suppresses the birth year of a person born in 1913 (age over 89)', async () => {
    const patient = await synthPatient('Trey_Berge');
    expect(patient.birthDate).toMatch(/^1913-/);
    const profile = asKind(value(fhirToCanonical(patient, ctx())), 'PatientProfile');
    expect(profile.ageOver89).toBe(true);
    expect(profile.birthYear).toBeUndefined();
    expect('birthYear' in profile).toBe(false);
  });

  it('reports a restricted ZIP3 prefix as 000', async () => {
    const patient = clone(await synthPatient('Carin_Kerluke'));
    (patient.address as JsonObject[])[0] = { ...(patient.address as JsonObject[])[0], postalCode: '03601' };
    expect(asKind(value(fhirToCanonical(patient, ctx())), 'PatientProfile').zip3).toBe('000');
    // The same real ZIP (020..) is kept under the standard list, and becomes 000 when a list restricts it.
    const real = await synthPatient('Carin_Kerluke');
    expect(asKind(value(fhirToCanonical(real, ctx())), 'PatientProfile').zip3).toBe('020');
    const restricted = asKind(
      value(fhirToCanonical(real, ctx({ restrictedZip3: new Set(['020']) }))),
      'PatientProfile',
    );
    expect(restricted.zip3).toBe('000');
  });

  it('omits ZIP3 for a non-US or malformed postal code', async () => {
    const patient = clone(await synthPatient('Carin_Kerluke'));
    patient.address = [{ line: ['1 Rue X'], city: 'Paris', postalCode: '75001', country: 'FR' }];
    expect('zip3' in value(fhirToCanonical(patient, ctx()))).toBe(false);
    patient.address = [{ city: 'Boston', postalCode: 'ABCDE', country: 'US' }];
    expect('zip3' in value(fhirToCanonical(patient, ctx()))).toBe(false);
  });

  it('maps gender codes, anything else to unknown', async () => {
    const patient = await synthPatient('Carin_Kerluke');
    const gender = (g: unknown): string =>
      (value(fhirToCanonical({ ...patient, gender: g } as JsonObject, ctx())) as PatientProfile).gender;
    expect(gender('female')).toBe('female');
    expect(gender('male')).toBe('male');
    expect(gender('other')).toBe('other');
    expect(gender('unknown')).toBe('unknown');
    expect(gender('F')).toBe('unknown');
    expect(gender(undefined)).toBe('unknown');
  });

  it('carries nothing identifying of the patient in the profile except its source id', async () => {
    const patient = await synthPatient('Reyna_Ziemann');
    const profile = value(fhirToCanonical(patient, ctx())) as PatientProfile;
    const { source, ...rest } = profile;
    expect(Object.keys(rest).sort()).toEqual([
      'ageOver89',
      'birthYear',
      'gender',
      'kind',
      'pseudonym',
      'zip3',
    ]);
    expect(source.id).toBe(patient.id);
  });
});

describe('fhirToCanonical: other types', () => {
  it('refuses an unmapped type as REC_UNSUPPORTED_TYPE', () => {
    const outcome = fhirToCanonical({ resourceType: 'Observation', id: 'x' }, ctx());
    expect(outcome.ok ? 'ok' : outcome.code).toBe('REC_UNSUPPORTED_TYPE');
  });
});
