import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isValidNpi } from '../fhir/npi.ts';
import type { JsonObject } from '../fhir/resource.ts';
import type { Hcp, Organization, PostalAddress } from '../model/canonical.ts';
import type { Affiliation, AnyCanonicalRecord, Interaction } from '../model/entities.ts';
import { asSourceId, asSystemName, type Npi } from '../model/ids.ts';
import { hasErrors, validateFast } from '../validate/compiled/validate.ts';
import { createMatrixEngine } from './engine.ts';
import { epicContext, veevaContext } from './testing.ts';

const engine = createMatrixEngine();
const VERIFIED = epicContext().verifiedAt;

/** Nine random digits completed with the NPI check digit. */
const npiArb: fc.Arbitrary<Npi> = fc
  .array(fc.integer({ min: 0, max: 9 }), { minLength: 9, maxLength: 9 })
  .map((digits) => {
    const stem = digits.join('');
    for (let d = 0; d <= 9; d++) if (isValidNpi(`${stem}${d}`)) return `${stem}${d}` as Npi;
    throw new Error('unreachable');
  });
const word = fc.stringMatching(/^[A-Z][a-z]{1,9}$/);
const name = fc
  .tuple(word, fc.option(word, { nil: undefined }))
  .map(([a, b]) => (b === undefined ? a : `${a} ${b}`));
const line = fc.stringMatching(/^[1-9][0-9]{0,3} [A-Z][a-z]{2,8} (St|Ave|Rd)$/);
const id = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9.-]{0,20}$/);

function addressArb(
  withUse: boolean,
  uses: readonly string[] = ['home', 'work', 'temp', 'billing'],
): fc.Arbitrary<PostalAddress> {
  return fc
    .record(
      {
        use: withUse ? fc.constantFrom(...uses) : fc.constant(undefined),
        lines: fc.array(line, { minLength: 1, maxLength: 2 }),
        city: word,
        state: fc.stringMatching(/^[A-Z]{2}$/),
        postalCode: fc.stringMatching(/^\d{5}$/),
        country: fc.constantFrom('US', 'us'),
      },
      { requiredKeys: ['lines'] },
    )
    .map(
      (a) =>
        Object.fromEntries(Object.entries(a).filter(([, v]) => v !== undefined)) as unknown as PostalAddress,
    );
}

function source(resourceType: string) {
  return id.map((value) => ({
    system: asSystemName('epic'),
    resourceType,
    id: asSourceId(value),
    verifiedAt: VERIFIED,
  }));
}

function hcpArb(
  genders: readonly ('male' | 'female' | 'other')[],
  withUse: boolean,
  anyActive: boolean,
): fc.Arbitrary<Hcp> {
  return fc
    .record(
      {
        kind: fc.constant('HCP' as const),
        source: source('Practitioner'),
        npi: npiArb,
        firstName: name,
        lastName: word,
        gender: fc.constantFrom(...genders),
        credentials: fc.constantFrom('MD', 'DO', 'NP', 'PA'),
        active: anyActive ? fc.boolean() : fc.constant(true),
        addresses: fc.array(addressArb(withUse), { maxLength: 3 }),
      },
      { requiredKeys: ['kind', 'source', 'lastName', 'active', 'addresses'] },
    )
    .map((h) => h as Hcp);
}

function orgArb(withUse: boolean, anyActive: boolean): fc.Arbitrary<Organization> {
  return fc
    .record(
      {
        kind: fc.constant('Organization' as const),
        source: source('Organization'),
        npi: npiArb,
        name: name,
        active: anyActive ? fc.boolean() : fc.constant(true),
        addresses: fc.array(addressArb(withUse, ['work', 'temp', 'billing']), { maxLength: 3 }),
      },
      { requiredKeys: ['kind', 'source', 'name', 'active', 'addresses'] },
    )
    .map((o) => o as Organization);
}

const key = (resourceType: string) =>
  id.map((v) => ({ system: asSystemName('epic'), resourceType, id: asSourceId(v) }));

function withoutSource(record: AnyCanonicalRecord): Record<string, unknown> {
  const { source: _s, ...rest } = record as unknown as Record<string, unknown>;
  return rest;
}

function viaFhir(record: AnyCanonicalRecord): AnyCanonicalRecord {
  const out = engine.canonicalToFhir(record, epicContext());
  if (!out.ok) throw new Error(`to FHIR: ${JSON.stringify(out.issues)}`);
  expect(out.value.mapping).toBe('canonical-to-fhir-r4@1.0.0');
  expect(hasErrors(validateFast(out.value.resource))).toBe(false);
  const back = engine.fhirToCanonical(out.value.resource, epicContext());
  if (!back.ok) throw new Error(`from FHIR: ${JSON.stringify(back.issues)}`);
  return back.value;
}

/** Turns CRM writes into the records a SOQL query would return (Account with its Address_vod__r). */
function asQueried(
  writes: readonly {
    object: string;
    externalIdField: string;
    externalId: string;
    fields: Readonly<Record<string, unknown>>;
  }[],
): JsonObject {
  const [parent, ...children] = writes;
  if (parent === undefined) throw new Error('no writes');
  const record: Record<string, unknown> = {
    attributes: { type: parent.object },
    [parent.externalIdField]: parent.externalId,
    ...parent.fields,
  };
  if (parent.object === 'Account') record.IsPersonAccount = 'LastName' in parent.fields;
  for (const [field, value] of Object.entries(parent.fields)) {
    // A lookup written by external id comes back as the relationship object.
    if (field.endsWith('__r')) record[field] = value;
  }
  if (children.length > 0) record.Address_vod__r = { records: children.map((c) => ({ ...c.fields })) };
  return JSON.parse(JSON.stringify(record)) as JsonObject;
}

function viaVeeva(record: AnyCanonicalRecord): AnyCanonicalRecord {
  const out = engine.canonicalToVeeva(record, veevaContext());
  if (!out.ok) throw new Error(`to Veeva: ${JSON.stringify(out.issues)}`);
  const back = engine.veevaToCanonical(asQueried(out.value.writes), veevaContext());
  if (!back.ok) throw new Error(`from Veeva: ${JSON.stringify(back.issues)}`);
  return back.value;
}

describe('round trips keep every mapped field', () => {
  it('HCP → FHIR Practitioner → HCP', () => {
    fc.assert(
      fc.property(hcpArb(['male', 'female', 'other'], true, true), (hcp) => {
        const back = viaFhir(hcp);
        expect(withoutSource(back)).toEqual(withoutSource(hcp));
        expect(back.source).toMatchObject({
          system: 'epic',
          resourceType: 'Practitioner',
          id: hcp.source.id,
        });
      }),
      { numRuns: 150 },
    );
  });

  it('Organization → FHIR Organization → Organization', () => {
    fc.assert(
      fc.property(orgArb(true, true), (org) => {
        expect(withoutSource(viaFhir(org))).toEqual(withoutSource(org));
      }),
      { numRuns: 100 },
    );
  });

  it('Affiliation → FHIR PractitionerRole → Affiliation (PractitionerRole has no primary flag)', () => {
    const arb = fc.record({
      kind: fc.constant('Affiliation' as const),
      source: source('PractitionerRole'),
      hcp: key('Practitioner'),
      organization: key('Organization'),
      primary: fc.constant(false),
      active: fc.boolean(),
      specialties: fc.uniqueArray(fc.constantFrom('208D00000X', '207RC0000X', '207Q00000X'), {
        maxLength: 2,
      }),
    });
    fc.assert(
      fc.property(arb, (a) => {
        expect(withoutSource(viaFhir(a as Affiliation))).toEqual(withoutSource(a as Affiliation));
      }),
    );
  });

  it('HCP → Veeva Account + Address_vod__c → HCP (Veeva keeps no address use, no "other" gender, no active flag)', () => {
    fc.assert(
      fc.property(hcpArb(['male', 'female'], false, false), (hcp) => {
        const back = viaVeeva(hcp);
        expect(withoutSource(back)).toEqual(withoutSource(hcp));
        expect(back.source).toMatchObject({
          system: 'veeva',
          resourceType: 'Account',
          id: `epic:Practitioner/${hcp.source.id}`,
        });
      }),
      { numRuns: 150 },
    );
  });

  it('Organization → Veeva Account → Organization', () => {
    fc.assert(
      fc.property(orgArb(false, false), (org) => {
        expect(withoutSource(viaVeeva(org))).toEqual(withoutSource(org));
      }),
    );
  });

  it('Affiliation → Child_Account_vod__c → Affiliation and Interaction → Call2_vod__c → Interaction', () => {
    const affiliation = fc.record({
      kind: fc.constant('Affiliation' as const),
      source: source('PractitionerRole'),
      hcp: key('Practitioner'),
      organization: key('Organization'),
      primary: fc.boolean(),
      active: fc.constant(true),
      specialties: fc.constant([]),
    });
    fc.assert(
      fc.property(affiliation, (a) => {
        expect(withoutSource(viaVeeva(a as Affiliation))).toEqual(withoutSource(a as Affiliation));
      }),
    );
    const interaction = fc.record(
      {
        kind: fc.constant('Interaction' as const),
        source: source('Communication'),
        hcp: key('Practitioner'),
        channel: fc.constantFrom('in-person', 'phone', 'video', 'email'),
        status: fc.constantFrom('planned', 'saved', 'submitted'),
        occurredAt: fc
          .date({ min: new Date('2000-01-01'), max: new Date('2030-01-01'), noInvalidDate: true })
          .map((d) => d.toISOString()),
      },
      { requiredKeys: ['kind', 'source', 'hcp', 'channel', 'status'] },
    );
    fc.assert(
      fc.property(interaction, (i) => {
        expect(withoutSource(viaVeeva(i as Interaction))).toEqual(withoutSource(i as Interaction));
      }),
    );
  });

  it('an interaction on a channel Veeva has no picklist value for is refused, not guessed', () => {
    const out = engine.canonicalToVeeva(
      {
        kind: 'Interaction',
        source: {
          system: asSystemName('epic'),
          resourceType: 'Communication',
          id: asSourceId('c'),
          verifiedAt: VERIFIED,
        },
        hcp: { system: asSystemName('epic'), resourceType: 'Practitioner', id: asSourceId('p') },
        channel: 'chat',
        status: 'submitted',
      },
      veevaContext(),
    );
    expect(out).toMatchObject({ ok: false, code: 'MAP_UNKNOWN_CODE' });
  });

  it('programme enrolments and interactions become valid FHIR Task and Communication', () => {
    const subject = { system: asSystemName('veeva'), resourceType: 'Account', id: asSourceId('a1') };
    const src = {
      system: asSystemName('veeva'),
      resourceType: 'Enrollment__c',
      id: asSourceId('e1'),
      verifiedAt: VERIFIED,
    };
    const task = engine.canonicalToFhir(
      {
        kind: 'ProgramEnrollment',
        source: src,
        subject,
        program: 'Copay support',
        status: 'active',
        enrolledOn: '2025-02-01',
      },
      epicContext(),
    );
    if (!task.ok) throw new Error(JSON.stringify(task.issues));
    expect(task.value.resource).toMatchObject({
      resourceType: 'Task',
      status: 'in-progress',
      intent: 'plan',
      for: { reference: 'Account/a1' },
    });
    expect(hasErrors(validateFast(task.value.resource))).toBe(false);
    const communication = engine.canonicalToFhir(
      {
        kind: 'Interaction',
        source: { ...src, id: asSourceId('c1') },
        hcp: subject,
        channel: 'chat',
        status: 'submitted',
      },
      epicContext(),
    );
    if (!communication.ok) throw new Error(JSON.stringify(communication.issues));
    expect(communication.value.resource).toMatchObject({
      resourceType: 'Communication',
      status: 'completed',
      medium: [{ coding: [{ code: 'ONLINEWRIT' }] }],
    });
    expect(hasErrors(validateFast(communication.value.resource))).toBe(false);
    expect(
      engine.canonicalToFhir(
        { kind: 'PatientProfile', source: src, pseudonym: 'x' as never, ageOver89: false, gender: 'male' },
        epicContext(),
      ),
    ).toMatchObject({
      ok: false,
      code: 'MAP_NO_MATRIX_ENTRY',
    });
  });
});
