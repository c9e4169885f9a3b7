import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { readResourceFile } from '../../adapters/files/resource-files.ts';
import { loadRestrictedZip3 } from '../../engine/config/restricted-zip3.ts';
import { SAMPLE_DATA_DIR } from '../../testkit/data.ts';
import type { PseudonymKey } from '../anonymize/pseudonym.ts';
import { isJsonObject, type JsonObject } from '../fhir/resource.ts';
import type { CanonicalRecord, PatientProfile } from '../model/canonical.ts';
import { asSystemName } from '../model/ids.ts';
import {
  CANONICAL_TO_VEEVA_VERSION,
  canonicalToVeeva,
  sourceExternalId,
  type TargetWrite,
  type VeevaMappingConfig,
} from './canonical-to-veeva.ts';
import { type FhirMappingContext, fhirToCanonical } from './fhir-to-canonical.ts';

const CONFIG: VeevaMappingConfig = {
  recordTypes: { hcp: '0128d0000005HcPAAU', hco: '0128d0000005HcOAAU' },
  patientProfileObject: 'Patient_Profile__c',
  lineageField: 'Sluice_Lineage__c',
};
const NO_LINEAGE: VeevaMappingConfig = {
  recordTypes: CONFIG.recordTypes,
  patientProfileObject: 'Patient_Profile__c',
};

const KEY: PseudonymKey = { id: 'k1', secret: new Uint8Array(randomBytes(32)) };
const hhs = loadRestrictedZip3(['hhs-2000'], []);

function ctx(verifiedAt = '2025-06-01T00:00:00.000Z'): FhirMappingContext {
  return {
    system: asSystemName('epic'),
    verifiedAt,
    asOf: new Date('2025-06-01T00:00:00Z'),
    pseudonymKey: KEY,
    restrictedZip3: hhs,
  };
}

async function resources(file: string, type: string): Promise<JsonObject[]> {
  const out: JsonObject[] = [];
  for await (const item of readResourceFile(file)) {
    if (item.kind === 'resource' && item.resource.resourceType === type)
      out.push(item.resource as JsonObject);
  }
  return out;
}

function canonical(resource: JsonObject, context = ctx()): CanonicalRecord {
  const outcome = fhirToCanonical(resource, context);
  if (!outcome.ok) throw new Error(`mapping failed: ${outcome.code}`);
  return outcome.value;
}

/** Every string leaf of a JSON value (the PHI a patient resource carries, to scan the writes for). */
function strings(value: unknown, out: string[] = []): string[] {
  if (typeof value === 'string') out.push(value);
  else if (Array.isArray(value)) for (const v of value) strings(v, out);
  else if (isJsonObject(value)) for (const v of Object.values(value)) strings(v, out);
  return out;
}

/** The identifying values of a Patient: names, identifiers, telecom, address lines/city/ZIP, birth date, id. */
function patientPhi(patient: JsonObject): string[] {
  const phi = [String(patient.id), String(patient.birthDate)];
  for (const name of (patient.name as JsonObject[]) ?? []) {
    phi.push(...strings(name.given), ...strings(name.family), ...strings(name.prefix), ...strings(name.text));
  }
  for (const id of (patient.identifier as JsonObject[]) ?? []) phi.push(...strings(id.value));
  for (const t of (patient.telecom as JsonObject[]) ?? []) phi.push(...strings(t.value));
  for (const a of (patient.address as JsonObject[]) ?? []) {
    phi.push(...strings(a.line), ...strings(a.city), ...strings(a.postalCode));
  }
  if (typeof patient.deceasedDateTime === 'string') phi.push(patient.deceasedDateTime);
  return phi.filter((s) => s.trim().length >= 4);
}

describe('canonicalToVeeva: patient profiles', () => {
  const patients: JsonObject[] = [];
  beforeAll(async () => {
    const dir = join(SAMPLE_DATA_DIR, 'synthea');
    for (const file of readdirSync(dir).sort()) {
      patients.push(...(await resources(join(dir, file), 'Patient')));
    }
  });

  it('writes no name, identifier, telecom, address line, city, ZIP or exact date of any sample patient', () => {
    expect(patients.length).toBeGreaterThanOrEqual(9);
    for (const patient of patients) {
      const writes = canonicalToVeeva(canonical(patient), CONFIG);
      const text = JSON.stringify(writes);
      const phi = patientPhi(patient);
      expect(phi.length).toBeGreaterThan(8);
      for (const value of phi) expect(text, `a write contains ${patient.id} PHI`).not.toContain(value);
      // Birth date parts beyond the year.
      const birthDate = String(patient.birthDate);
      expect(text).not.toContain(birthDate.slice(0, 7));
    }
  });

  it('writes one profile keyed by the pseudonym with generalised fields only', () => {
    const patient = patients.find((p) => String(p.birthDate).startsWith('1956')) as JsonObject;
    const profile = canonical(patient) as PatientProfile;
    const writes = canonicalToVeeva(profile, CONFIG);
    expect(writes).toEqual([
      {
        object: 'Patient_Profile__c',
        externalIdField: 'External_ID__c',
        externalId: profile.pseudonym,
        rank: 0,
        fields: {
          Birth_Year__c: 1956,
          Age_Over_89__c: false,
          Zip3__c: '019',
          Gender__c: 'Male',
          Source_System__c: 'epic',
          Sluice_Lineage__c: `sluice;map=${CANONICAL_TO_VEEVA_VERSION};src=epic:Patient#${profile.pseudonym}`,
        },
      },
    ]);
  });

  it('writes null birth year and Age_Over_89__c true for a person born in 1913', () => {
    const patient = patients.find((p) => String(p.birthDate).startsWith('1913')) as JsonObject;
    const [write] = canonicalToVeeva(canonical(patient), CONFIG);
    expect(write?.fields.Birth_Year__c).toBeNull();
    expect(write?.fields.Age_Over_89__c).toBe(true);
    expect(JSON.stringify(write)).not.toContain('1913');
  });

  it('uses the configured profile object and maps unknown gender', () => {
    const patient = { ...(patients[0] as JsonObject), gender: 'unknown' };
    const [write] = canonicalToVeeva(canonical(patient), { ...CONFIG, patientProfileObject: 'PP__c' });
    expect(write?.object).toBe('PP__c');
    expect(write?.fields.Gender__c).toBe('Unknown');
  });
});

describe('canonicalToVeeva: HCP and HCO accounts', () => {
  let practitioners: JsonObject[] = [];
  let organizations: JsonObject[] = [];
  beforeAll(async () => {
    practitioners = await resources(
      join(SAMPLE_DATA_DIR, 'directory', 'Practitioner.ndjson.gz'),
      'Practitioner',
    );
    organizations = await resources(
      join(SAMPLE_DATA_DIR, 'directory', 'Organization.ndjson.gz'),
      'Organization',
    );
  });

  function checkAccountWithAddresses(writes: TargetWrite[], resource: JsonObject, recordType: string): void {
    const externalId = `epic:${resource.resourceType}/${resource.id}`;
    expect(externalId).toBe(sourceExternalId('epic', String(resource.resourceType), String(resource.id)));
    const [account, ...children] = writes;
    expect(account).toMatchObject({
      object: 'Account',
      externalIdField: 'External_ID_vod__c',
      externalId,
      rank: 0,
    });
    expect(account?.fields.RecordTypeId).toBe(recordType);
    const addresses = (resource.address as JsonObject[]) ?? [];
    expect(children).toHaveLength(addresses.length);
    children.forEach((child, index) => {
      expect(child).toMatchObject({
        object: 'Address_vod__c',
        externalIdField: 'External_ID_vod__c',
        externalId: `${externalId}#address/${index}`,
        rank: 1,
      });
      expect(child.fields.Account_vod__r).toEqual({ External_ID_vod__c: externalId });
      expect(child.fields.Primary_vod__c).toBe(index === 0);
      const address = addresses[index] as JsonObject;
      expect(child.fields.Name).toBe((address.line as string[])[0]);
      expect(child.fields.City_vod__c).toBe(address.city);
      expect(child.fields.State_vod__c).toBe(address.state);
      expect(child.fields.Zip_vod__c).toBe(address.postalCode);
      expect(child.fields.Country_vod__c).toBe(address.country);
    });
    // Parents before children.
    const ranks = writes.map((w) => w.rank);
    expect(ranks).toEqual([...ranks].sort((a, b) => a - b));
  }

  it('writes a person Account (rank 0) and its Address_vod__c children (rank 1) for every Practitioner', () => {
    for (const p of practitioners) {
      const writes = canonicalToVeeva(canonical(p), CONFIG);
      checkAccountWithAddresses(writes, p, CONFIG.recordTypes.hcp);
      const fields = writes[0]?.fields;
      const name = (p.name as { family: string; given: string[] }[])[0];
      expect(fields?.LastName).toBe(name?.family);
      expect(fields?.FirstName).toBe(name?.given.join(' '));
      expect(fields?.NPI_vod__c).toBe((p.identifier as { value: string }[])[0]?.value);
      expect(fields?.Gender_vod__c).toBe(p.gender === 'male' ? 'M' : 'F');
    }
  });

  it('writes a business Account and addresses for every Organization', () => {
    for (const o of organizations) {
      const writes = canonicalToVeeva(canonical(o), CONFIG);
      checkAccountWithAddresses(writes, o, CONFIG.recordTypes.hco);
      expect(writes[0]?.fields.Name).toBe(o.name);
      expect(writes[0]?.fields.NPI_vod__c).toBeNull();
    }
  });

  it('writes several addresses in order, the first primary, extra lines joined', () => {
    const p = structuredClone(practitioners[0] as JsonObject);
    p.address = [
      { line: ['1 Main St', 'Suite 2', 'Floor 3'], city: 'Boston', state: 'MA', postalCode: '02108' },
      { use: 'work', line: ['9 Elm St'], city: 'Salem', state: 'MA', postalCode: '01970' },
    ];
    const writes = canonicalToVeeva(canonical(p), CONFIG);
    expect(writes.map((w) => [w.object, w.rank, w.fields.Primary_vod__c ?? null])).toEqual([
      ['Account', 0, null],
      ['Address_vod__c', 1, true],
      ['Address_vod__c', 1, false],
    ]);
    expect(writes[1]?.fields.Address_line_2_vod__c).toBe('Suite 2, Floor 3');
    expect(writes[2]?.fields.Address_line_2_vod__c).toBeNull();
  });

  it('lineage is present, names the source and version, and is stable across mappings (no times)', () => {
    const p = structuredClone(practitioners[0] as JsonObject);
    p.meta = { versionId: '3' };
    const first = canonicalToVeeva(canonical(p, ctx('2025-06-01T00:00:00.000Z')), CONFIG);
    const second = canonicalToVeeva(canonical(structuredClone(p), ctx('2026-01-01T12:34:56.000Z')), CONFIG);
    expect(second).toEqual(first);
    const lineage = first[0]?.fields.Sluice_Lineage__c;
    expect(lineage).toBe(`sluice;map=${CANONICAL_TO_VEEVA_VERSION};src=epic:Practitioner/${p.id}/_history/3`);
    expect(first[1]?.fields.Sluice_Lineage__c).toBe(`${lineage}#address/0`);
    expect(JSON.stringify(first)).not.toMatch(/20\d\d-\d\d-\d\d/);
  });

  it('a new source version changes the lineage', () => {
    const p = structuredClone(practitioners[0] as JsonObject);
    p.meta = { versionId: '3' };
    const v3 = canonicalToVeeva(canonical(p), CONFIG);
    p.meta = { versionId: '4' };
    const v4 = canonicalToVeeva(canonical(p), CONFIG);
    expect(v4[0]?.fields.Sluice_Lineage__c).not.toBe(v3[0]?.fields.Sluice_Lineage__c);
  });

  it('omits the lineage field entirely when lineageField is undefined', () => {
    const all = [practitioners[0], organizations[0]].map((r) =>
      canonicalToVeeva(canonical(r as JsonObject), NO_LINEAGE),
    );
    const patientWrites = canonicalToVeeva(
      canonical({ resourceType: 'Patient', id: 'p1', birthDate: '1980-01-01', gender: 'female' }),
      NO_LINEAGE,
    );
    for (const writes of [...all, patientWrites]) {
      expect(writes.length).toBeGreaterThan(0);
      for (const write of writes) {
        expect(Object.keys(write.fields)).not.toContain('Sluice_Lineage__c');
        expect(JSON.stringify(write.fields)).not.toContain('sluice;map=');
      }
    }
  });
});
