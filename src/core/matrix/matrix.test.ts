import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SAMPLE_DATA_DIR } from '../../testkit/data.ts';
import { isSluiceError } from '../errors/sluice-error.ts';
import type { JsonObject } from '../fhir/resource.ts';
import type { Affiliation, CareEvent, Interaction, Person } from '../model/entities.ts';
import { createMatrixEngine } from './engine.ts';
import {
  CONCEPT_MAPS_FILE,
  checkMatrix,
  compileMatrix,
  DEFAULT_MATRIX_DIR,
  type MatrixSource,
} from './load.ts';
import { matrixJsonSchema } from './schema.ts';
import { epicContext, r4Examples, readResources, syntheaPatients, veevaContext } from './testing.ts';

const engine = createMatrixEngine();
const conceptMaps: MatrixSource = {
  name: CONCEPT_MAPS_FILE,
  text: readFileSync(join(DEFAULT_MATRIX_DIR, CONCEPT_MAPS_FILE), 'utf8'),
};

function matrixWith(fields: string): MatrixSource[] {
  return [
    conceptMaps,
    {
      name: 'test.yaml',
      text: `id: t
version: 1.0.0
direction: fhir-r4->canonical
owner: o
description: d
mappings:
  - source: Patient
    target: PatientProfile
    identity: { rule: id, onMissing: MAP_REQUIRED_MISSING, owner: o }
    fields:
${fields}`,
    },
  ];
}

describe('matrix governance', () => {
  it('loads the shipped matrix and publishes a JSON Schema', () => {
    expect(engine.versions()).toEqual({
      'canonical->fhir-r4': 'canonical-to-fhir-r4@1.0.0',
      'canonical->veeva': 'canonical-to-veeva@1.1.0',
      'fhir-r4->canonical': 'fhir-r4-to-canonical@1.2.0',
      'veeva->canonical': 'veeva-to-canonical@1.0.0',
    });
    expect(JSON.stringify(matrixJsonSchema())).toContain('"drives"');
  });

  it('rejects a field that drives PHI without owner, validation rule or compliance note, naming each key', () => {
    const { problems } = checkMatrix(
      matrixWith(`      - { target: pseudonym, rule: id, cardinality: '1..1', drives: [phi] }
      - { target: gender, rule: gender, cardinality: '1..1', conceptMap: no-such-map }
      - { target: zip3, rule: 'address.(', cardinality: '0..1' }
      - { target: birthYear, rule: birthDate, constant: 1, cardinality: '0..1', transform: nope }
      - { target: birthYear, rule: birthDate, cardinality: 'many' }`),
    );
    const keys = problems.map((p) => `${p.file}:${p.key}`);
    expect(keys).toEqual(expect.arrayContaining(['test.yaml:mappings[0].fields[4].cardinality']));
    // Schema errors stop before governance; fix the schema error and check governance.
    const second = checkMatrix(
      matrixWith(`      - { target: pseudonym, rule: id, cardinality: '1..1', drives: [phi] }
      - { target: gender, rule: gender, cardinality: '1..1', conceptMap: no-such-map }
      - { target: zip3, rule: 'address.(', cardinality: '0..1' }
      - { target: birthYear, rule: birthDate, constant: 1, cardinality: '0..1', transform: nope }
      - { target: birthYear, rule: birthDate, cardinality: '0..1' }`),
    ).problems.map((p) => p.key);
    expect(second).toEqual(
      expect.arrayContaining([
        'mappings[0].fields[0].owner',
        'mappings[0].fields[0].validate',
        'mappings[0].fields[0].compliance',
        'mappings[0].fields[1].conceptMap',
        'mappings[0].fields[2].rule',
        'mappings[0].fields[3]',
        'mappings[0].fields[3].transform',
        'mappings[0].fields[4].target',
      ]),
    );
    expect(() =>
      compileMatrix(
        matrixWith(`      - { target: pseudonym, rule: id, cardinality: '1..1', drives: [phi] }`),
      ),
    ).toThrow(expect.objectContaining({ code: 'MATRIX_INVALID' }));
    try {
      compileMatrix(
        matrixWith(`      - { target: pseudonym, rule: id, cardinality: '1..1', drives: [phi] }`),
      );
    } catch (err) {
      expect(isSluiceError(err) && err.details.errors).toEqual(
        expect.arrayContaining([
          'test.yaml: mappings[0].fields[0].owner: field pseudonym drives phi and names no owner',
        ]),
      );
    }
  });

  it('accepts the governed field once owner, rule and note are named', () => {
    const { problems } = checkMatrix(
      matrixWith(
        `      - { target: pseudonym, rule: id, cardinality: '1..1', transform: pseudonym, drives: [phi], owner: p, validate: external-id, compliance: c }`,
      ),
    );
    expect(problems).toEqual([]);
  });

  it('rejects a file that is not YAML or misses the concept maps', () => {
    expect(checkMatrix([{ name: 'x.yaml', text: 'a: [' }]).problems.map((p) => p.key)).toEqual(
      expect.arrayContaining(['(file)', '(yaml)']),
    );
  });
});

describe('FHIR R4 → canonical on real data', () => {
  it('maps every Synthea patient to a profile and a person without error', async () => {
    const patients = await syntheaPatients();
    expect(patients.length).toBeGreaterThanOrEqual(9);
    for (const patient of patients) {
      const profile = engine.fhirToCanonical(patient, epicContext());
      expect(profile.ok, String(patient.id)).toBe(true);
      const person = engine.fhirToCanonical(patient, epicContext(), 'Person');
      if (!person.ok) throw new Error(`${String(patient.id)}: ${JSON.stringify(person.issues)}`);
      const p = person.value as Person;
      expect(p.kind).toBe('Person');
      expect(p.mrns.length).toBeGreaterThan(0);
      expect(p.birthDate).toBe(patient.birthDate);
      for (const phone of p.phones) expect(phone).toMatch(/^\+1\d{10}$/);
    }
  });

  it('maps the official R4 examples the matrix covers; display-only subjects are refused, not guessed', () => {
    const types = [
      'Patient',
      'Practitioner',
      'PractitionerRole',
      'Organization',
      'Encounter',
      'Appointment',
      'ServiceRequest',
      'Consent',
    ];
    const examples = r4Examples(types);
    const refused = new Map<string, string>();
    const seen = new Set<string>();
    for (const { name, resource } of examples) {
      const outcome = engine.fhirToCanonical(resource, epicContext());
      seen.add(String(resource.resourceType));
      if (!outcome.ok) refused.set(name, `${outcome.code} ${outcome.issues[0]?.path}`);
      else expect(outcome.value.source.mapping).toBe('fhir-r4-to-canonical@1.2.0');
    }
    if (examples.length === 0) return; // no shared data on this machine
    expect([...seen].sort()).toEqual([...types].sort());
    // These four name their subject by display text or on a foreign server only.
    expect(Object.fromEntries(refused)).toEqual({
      'ServiceRequest-appendectomy-narrative.json':
        "MAP_REQUIRED_MISSING subject.where(reference.startsWith('Patient/'))",
      'ServiceRequest-education.json': "MAP_REQUIRED_MISSING subject.where(reference.startsWith('Patient/'))",
      'ServiceRequest-myringotomy.json':
        "MAP_REQUIRED_MISSING subject.where(reference.startsWith('Patient/'))",
      'ServiceRequest-ob.json': "MAP_REQUIRED_MISSING subject.where(reference.startsWith('Patient/'))",
    });
  });

  it('maps PractitionerRole, Encounter and Appointment examples to the expected canonical facts', () => {
    const [role] = r4Examples(['PractitionerRole']);
    if (role === undefined) return;
    const affiliation = engine.fhirToCanonical(role.resource, epicContext());
    expect(affiliation.ok && (affiliation.value as Affiliation)).toMatchObject({
      hcp: { system: 'epic', resourceType: 'Practitioner', id: 'example' },
      organization: { resourceType: 'Organization', id: 'f001' },
      specialties: ['208D00000X'],
    });
    const encounter = r4Examples(['Encounter']).find((e) => e.name === 'Encounter-f001.json');
    const event = encounter && engine.fhirToCanonical(encounter.resource, epicContext());
    expect(event?.ok && (event.value as CareEvent)).toMatchObject({
      eventType: 'encounter',
      subject: { resourceType: 'Patient' },
    });
  });
});

describe('NPIs over time', () => {
  it('reads the current NPI of a real directory practitioner and leaves one whose use is old', async () => {
    const [practitioner] = (
      await readResources(join(SAMPLE_DATA_DIR, 'directory', 'Practitioner.ndjson.gz'))
    ).slice(0, 1) as [JsonObject];
    const npis = (practitioner.identifier as { system?: string; value?: string }[]).filter(
      (i) => i.system === 'http://hl7.org/fhir/sid/us-npi',
    );
    expect(npis).toHaveLength(1);
    const old = { system: 'http://hl7.org/fhir/sid/us-npi', value: '1245319599', use: 'old' };
    const withOld = { ...practitioner, identifier: [...(practitioner.identifier as JsonObject[]), old] };
    expect(engine.fhirToCanonical(withOld, epicContext())).toMatchObject({
      ok: true,
      value: { npi: npis[0]?.value },
    });
    // Two current NPIs: which one is meant cannot be told; nothing is guessed.
    const { use: _use, ...current } = old;
    const withTwo = { ...practitioner, identifier: [...(practitioner.identifier as JsonObject[]), current] };
    expect(engine.fhirToCanonical(withTwo, epicContext())).toMatchObject({
      ok: false,
      code: 'MAP_INVALID_IDENTIFIER',
    });
  });
});

describe('birth dates as FHIR writes them', () => {
  /** The profile of a real Synthea patient born on `birthDate`, mapped as of 2026-05-15. */
  async function profileBornOn(birthDate: string) {
    const [patient] = await syntheaPatients();
    const ctx = { ...epicContext(), asOf: new Date('2026-05-15T12:00:00Z') };
    return engine.fhirToCanonical({ ...(patient as JsonObject), birthDate }, ctx);
  }

  it('maps a year or a year and month, judging the age by the oldest the person can be', async () => {
    expect(await profileBornOn('1970')).toMatchObject({
      ok: true,
      value: { birthYear: 1970, ageOver89: false },
    });
    expect(await profileBornOn('1970-05')).toMatchObject({
      ok: true,
      value: { birthYear: 1970, ageOver89: false },
    });
    // Born in May 1936 may already be 90 on 15 May 2026: aggregated, no year.
    const may = await profileBornOn('1936-05');
    expect(may).toMatchObject({ ok: true, value: { ageOver89: true } });
    expect(may.ok && 'birthYear' in may.value ? may.value.birthYear : undefined).toBeUndefined();
    // Born in June 1936 is 89 at most.
    expect(await profileBornOn('1936-06')).toMatchObject({
      ok: true,
      value: { birthYear: 1936, ageOver89: false },
    });
  });

  it('refuses a date that does not exist or lies after the run started (a day of grace for time zones)', async () => {
    for (const bad of ['1970-13', '2023-02-29', '1970-5', '19700']) {
      expect(await profileBornOn(bad), bad).toMatchObject({
        ok: false,
        code: 'MAP_INVALID_VALUE',
        issues: [{ path: 'Patient.birthDate' }, { path: 'Patient.birthDate' }],
      });
    }
    expect(await profileBornOn('2024-02-29')).toMatchObject({ ok: true, value: { birthYear: 2024 } });
    expect(await profileBornOn('2026-05-16')).toMatchObject({ ok: true, value: { birthYear: 2026 } });
    const future = await profileBornOn('2026-05-17');
    expect(future).toMatchObject({ ok: false, code: 'MAP_INVALID_VALUE' });
    expect(JSON.stringify(future)).not.toContain('2026-05-17');
    expect(await profileBornOn('2027')).toMatchObject({ ok: false, code: 'MAP_INVALID_VALUE' });
  });
});

describe('bad input fails with a specific issue and path', () => {
  const account: JsonObject = {
    attributes: { type: 'Account' },
    IsPersonAccount: true,
    External_ID_vod__c: 'epic:Practitioner/1',
    LastName: 'Doe',
    NPI_vod__c: '1234567893',
  };

  it('a Veeva record without external id', () => {
    const { External_ID_vod__c: _x, ...noId } = account;
    const outcome = engine.veevaToCanonical(noId, veevaContext());
    expect(outcome).toMatchObject({
      ok: false,
      code: 'MAP_MISSING_EXTERNAL_ID',
      issues: [{ path: 'External_ID_vod__c' }],
    });
    const call = engine.veevaToCanonical(
      {
        attributes: { type: 'Call2_vod__c' },
        External_ID_vod__c: 'c1',
        Call_Channel_vod__c: 'Phone_vod',
        Status_vod__c: 'Saved_vod',
        Account_vod__r: {},
      },
      veevaContext(),
    );
    expect(call).toMatchObject({
      ok: false,
      code: 'MAP_MISSING_EXTERNAL_ID',
      issues: [{ path: 'Account_vod__c' }],
    });
  });

  it('an unknown code names the concept map and the path', () => {
    const outcome = engine.veevaToCanonical({ ...account, Gender_vod__c: 'X' }, veevaContext());
    expect(outcome).toMatchObject({
      ok: false,
      code: 'MAP_UNKNOWN_CODE',
      issues: [{ path: 'Gender_vod__c' }],
    });
    expect(JSON.stringify(outcome)).toContain('veeva-account-gender');
    const call = engine.veevaToCanonical(
      {
        attributes: { type: 'Call2_vod__c' },
        External_ID_vod__c: 'c1',
        Call_Channel_vod__c: 'Carrier_Pigeon',
        Status_vod__c: 'Saved_vod',
        Account_vod__r: { External_ID_vod__c: 'epic:Practitioner/1' },
      },
      veevaContext(),
    );
    expect(call).toMatchObject({
      ok: false,
      code: 'MAP_UNKNOWN_CODE',
      issues: [{ path: 'Call_Channel_vod__c' }],
    });
  });

  it('a malformed NPI, conflicting NPIs and an MRN without its system', () => {
    expect(engine.veevaToCanonical({ ...account, NPI_vod__c: '1234567890' }, veevaContext())).toMatchObject({
      ok: false,
      code: 'MAP_INVALID_IDENTIFIER',
    });
    const person = engine.fhirToCanonical(
      {
        resourceType: 'Patient',
        id: 'x',
        identifier: [{ type: { coding: [{ code: 'MR' }] }, value: '123' }],
      },
      epicContext(),
      'Person',
    );
    expect(person).toMatchObject({ ok: false, code: 'MAP_INVALID_IDENTIFIER' });
  });

  it('one NPI given twice is one NPI; two current ones conflict; a blank one is absent', () => {
    const practitioner = (...values: string[]): JsonObject => ({
      resourceType: 'Practitioner',
      id: 'p1',
      name: [{ family: 'Doe', given: ['Jo'] }],
      identifier: values.map((value) => ({ system: 'http://hl7.org/fhir/sid/us-npi', value })),
    });
    const twice = engine.fhirToCanonical(practitioner('1234567893', ' 1234567893 '), epicContext());
    expect(twice).toMatchObject({ ok: true, value: { npi: '1234567893' } });
    expect(engine.fhirToCanonical(practitioner('1234567893', '1245319599'), epicContext())).toMatchObject({
      ok: false,
      code: 'MAP_INVALID_IDENTIFIER',
      issues: [{ message: expect.stringContaining('2 different values for npi') }],
    });
    const blank = engine.fhirToCanonical(practitioner('   '), epicContext());
    if (!blank.ok) throw new Error(`a blank NPI failed the mapping: ${blank.code}`);
    expect((blank.value as { npi?: string }).npi).toBeUndefined();
    expect(blank.warnings.map((w) => w.code)).toContain('MAP_NO_NPI');
  });

  it('maps a Veeva call and an unknown type fails closed', () => {
    const call = engine.veevaToCanonical(
      {
        attributes: { type: 'Call2_vod__c' },
        External_ID_vod__c: 'crm-call-9',
        Call_Channel_vod__c: 'Video_vod',
        Status_vod__c: 'Submitted_vod',
        Call_Date_vod__c: '2025-03-04',
        Account_vod__r: { External_ID_vod__c: 'epic:Practitioner/1' },
      },
      veevaContext(),
    );
    expect(call.ok && (call.value as Interaction)).toMatchObject({
      channel: 'video',
      status: 'submitted',
      occurredAt: '2025-03-04',
      hcp: { system: 'epic', resourceType: 'Practitioner', id: '1' },
    });
    expect(engine.veevaToCanonical({ attributes: { type: 'Opportunity' } }, veevaContext())).toMatchObject({
      ok: false,
      code: 'MAP_NO_MATRIX_ENTRY',
    });
    expect(engine.fhirToCanonical({ resourceType: 'Observation', id: 'o' }, epicContext())).toMatchObject({
      ok: false,
      code: 'MAP_NO_MATRIX_ENTRY',
    });
  });

  it('builds consent records through the consent importers, with the mapping version', () => {
    const consent = engine.veevaToCanonical(
      {
        attributes: { type: 'Multichannel_Consent_vod__c' },
        Id: 'a3x000000000001AAA',
        Account_vod__c: '001A000001HCP0001',
        RecordType: { DeveloperName: 'Approved_Email_vod' },
        Consent_Type_vod__c: 'a3y000000000001AAA',
        Channel_Value_vod__c: 'dr.someone@example.org',
        Opt_Type_vod__c: 'Opt_In_vod',
        Capture_Datetime_vod__c: '2024-03-01T10:15:00.000+0000',
        Opt_Expiration_Date_vod__c: '2025-03-01',
      },
      veevaContext(),
    );
    expect(consent).toMatchObject({
      ok: true,
      value: {
        kind: 'Consent',
        source: { mapping: 'veeva-to-canonical@1.0.0' },
        consent: { status: 'active' },
      },
    });
    expect(JSON.stringify(consent)).not.toContain('001A000001HCP0001');
    const broken = engine.veevaToCanonical(
      { attributes: { type: 'Multichannel_Consent_vod__c' }, Id: 'a3x1', Opt_Type_vod__c: 'Maybe' },
      veevaContext(),
    );
    expect(broken.ok).toBe(false);
  });
});
