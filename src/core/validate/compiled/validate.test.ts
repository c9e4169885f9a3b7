import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isErrorCode } from '../../errors/index.ts';
import type { Issue } from '../../mapping/outcome.ts';
import { compiledCount, resourceSpec, typeSpec } from './compile.ts';
import { hasErrors, validateFast } from './validate.ts';

const patient = (extra: Record<string, unknown> = {}) => ({ resourceType: 'Patient', id: 'p1', ...extra });
const obs = (extra: Record<string, unknown> = {}) => ({
  resourceType: 'Observation',
  status: 'final',
  code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] },
  ...extra,
});

/** `code path` of every error, for compact assertions. */
function errs(resource: unknown, options?: Parameters<typeof validateFast>[1]): string[] {
  return validateFast(resource, options)
    .filter((i) => i.severity === 'error')
    .map((i) => `${i.code} ${i.path}`);
}

describe('validateFast: structure', () => {
  it('accepts a minimal valid resource and a rich one', () => {
    expect(validateFast(patient())).toEqual([]);
    const rich = patient({
      name: [
        { use: 'official', family: 'Doe', given: ['Jo', 'Ann'], _given: [null, { id: 'g2', extension: [] }] },
      ],
    });
    // `extension: []` is empty: the only problem in an otherwise valid primitive extension.
    expect(errs(rich)).toEqual(['VAL_EMPTY Patient.name[0].given[1].extension']);
  });

  it('rejects anything that is not a resource object', () => {
    expect(errs(null)).toEqual(['VAL_NOT_A_RESOURCE ']);
    expect(errs([patient()])).toEqual(['VAL_NOT_A_RESOURCE ']);
    expect(errs({ id: 'x' })).toEqual(['VAL_NOT_A_RESOURCE Resource']);
    expect(errs({ resourceType: 'Patientt' })).toEqual(['VAL_NOT_A_RESOURCE Patientt']);
    expect(errs({ resourceType: 'DomainResource' })).toEqual(['VAL_NOT_A_RESOURCE DomainResource']);
    // A resourceType that is not shaped like a type name is not echoed into the path.
    expect(errs({ resourceType: 'Jane Doe 1970' })).toEqual(['VAL_NOT_A_RESOURCE Resource']);
  });

  it('reports unknown elements, including resourceType inside a datatype and a choice type the element lacks', () => {
    expect(errs(patient({ foo: 1 }))).toEqual(['VAL_UNKNOWN_ELEMENT Patient.foo']);
    expect(errs(patient({ name: [{ family: 'x', resourceType: 'HumanName' }] }))).toEqual([
      'VAL_UNKNOWN_ELEMENT Patient.name[0].resourceType',
    ]);
    expect(errs(obs({ effectiveString: 'yesterday', effectiveDateTime: '2020-01-01' }))).toEqual([
      'VAL_UNKNOWN_ELEMENT Observation.effectiveString',
    ]);
    // `_name` is not allowed: only primitives have a `_` partner.
    expect(errs(patient({ _name: { id: 'x' } }))).toEqual(['VAL_UNKNOWN_ELEMENT Patient._name']);
  });

  it('checks cardinality: required elements, arrays vs single values, prohibited elements', () => {
    expect(errs({ resourceType: 'Observation' })).toEqual([
      'VAL_CARDINALITY Observation.status',
      'VAL_CARDINALITY Observation.code',
    ]);
    expect(errs(patient({ name: { family: 'x' } }))).toEqual(['VAL_CARDINALITY Patient.name']);
    expect(errs(patient({ gender: ['male'] }))).toEqual(['VAL_CARDINALITY Patient.gender']);
    // A required primitive may be given by its extension alone (data-absent-reason).
    const absent = {
      extension: [
        { url: 'http://hl7.org/fhir/StructureDefinition/data-absent-reason', valueCode: 'unknown' },
      ],
    };
    expect(errs(obs({ status: undefined, _status: absent }))).toEqual([]);
    // SimpleQuantity prohibits comparator (max 0) and sqty-1 says so too.
    const dose = { value: 1, comparator: '<', unit: 'mg' };
    const med = {
      resourceType: 'MedicationAdministration',
      status: 'completed',
      medicationCodeableConcept: { text: 'x' },
      subject: { reference: 'Patient/p1' },
      effectiveDateTime: '2020-01-01T10:00:00Z',
      dosage: { dose },
    };
    expect(errs(med)).toContain('VAL_CARDINALITY MedicationAdministration.dosage.dose.comparator');
  });

  it('rejects empty strings, objects and arrays, nulls and id-only elements (medplum drops them)', () => {
    expect(errs(patient({ gender: '' }))).toEqual(['VAL_EMPTY Patient.gender']);
    expect(errs(patient({ name: [{ family: '   ' }] }))).toEqual(['VAL_EMPTY Patient.name[0].family']);
    expect(errs(patient({ name: [] }))).toEqual(['VAL_EMPTY Patient.name']);
    expect(errs(patient({ name: [{}] }))).toEqual(['VAL_EMPTY Patient.name[0]']);
    expect(errs(patient({ maritalStatus: null }))).toEqual(['VAL_EMPTY Patient.maritalStatus']);
    expect(errs(patient({ name: [{ given: ['a', null] }] }))).toEqual(['VAL_EMPTY Patient.name[0].given[1]']);
    expect(errs(patient({ _gender: { id: 'g' } }))).toEqual(['VAL_EMPTY Patient.gender']);
  });

  it('aligns repeating primitives with their extensions', () => {
    const ext = { extension: [{ url: 'http://example.org/x', valueString: 'v' }] };
    expect(errs(patient({ name: [{ given: ['a', null], _given: [null, ext] }] }))).toEqual([]);
    expect(errs(patient({ name: [{ given: ['a'], _given: [null, ext] }] }))).toEqual([
      'VAL_CARDINALITY Patient.name[0].given',
    ]);
    expect(errs(patient({ name: [{ given: ['a', 'b'], _given: [null, null] }] }))).toEqual([]);
    expect(errs(patient({ name: [{ _given: [null] }] }))).toEqual(['VAL_EMPTY Patient.name[0].given[0]']);
  });

  it('allows exactly one type of a choice element, and its extension must match it', () => {
    expect(errs(patient({ deceasedBoolean: false, deceasedDateTime: '2020-01-01' }))).toEqual([
      'VAL_CHOICE Patient.deceased[x]',
    ]);
    expect(
      errs(obs({ valueString: 'a', _valueString: { id: 'x', extension: [{ url: 'u:x', valueCode: 'y' }] } })),
    ).toEqual([]);
    expect(
      errs(obs({ valueString: 'a', _valueBoolean: { extension: [{ url: 'u:x', valueCode: 'y' }] } })),
    ).toEqual(['VAL_CHOICE Observation.value[x]']);
  });

  it('stops at maxIssues', () => {
    const bad = patient(Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`x${i}`, 1])));
    expect(validateFast(bad)).toHaveLength(50);
    expect(validateFast(bad, { maxIssues: 5 })).toHaveLength(5);
  });
});

describe('validateFast: primitives, ids and codes', () => {
  it('checks primitive formats with FHIR-like paths', () => {
    expect(errs(patient({ birthDate: '1970-02-30' }))).toEqual(['VAL_FORMAT Patient.birthDate']);
    expect(errs(patient({ birthDate: 19700101 }))).toEqual(['VAL_TYPE Patient.birthDate']);
    expect(errs(patient({ multipleBirthInteger: 2.5 }))).toEqual(['VAL_FORMAT Patient.multipleBirthInteger']);
    expect(errs(patient({ active: 'true' }))).toEqual(['VAL_TYPE Patient.active']);
    expect(errs(patient({ photo: [{ contentType: 'image/png', data: 'abc' }] }))).toEqual([
      'VAL_FORMAT Patient.photo[0].data',
    ]);
    expect(
      errs(patient({ telecom: [{ system: 'url', value: 'x', period: { start: '2020-01-01T10:00' } }] })),
    ).toEqual(['VAL_FORMAT Patient.telecom[0].period.start']);
    expect(errs(patient({ text: { status: 'generated', div: '<p>hi</p>' } }))).toEqual([
      'VAL_FORMAT Patient.text.div',
    ]);
  });

  it('rejects malformed ids; allowLongIds turns an over-long (but well-formed) id into a warning', () => {
    expect(errs(patient({ id: 'a b' }))).toEqual(['VAL_ID Patient.id']);
    expect(errs(patient({ id: 'é' }))).toEqual(['VAL_ID Patient.id']);
    const epic = patient({ id: `e${'A1.-'.repeat(22)}` }); // 89 characters, like captured Epic ids
    expect(errs(epic)).toEqual(['VAL_ID Patient.id']);
    const allowed = validateFast(epic, { allowLongIds: true });
    expect(allowed.map((i) => `${i.severity} ${i.code}`)).toEqual(['warning VAL_ID']);
    expect(hasErrors(allowed)).toBe(false);
    // The allowance is about length only.
    expect(errs(patient({ id: `a b${'x'.repeat(70)}` }), { allowLongIds: true })).toEqual([
      'VAL_ID Patient.id',
    ]);
  });

  it('checks codes of required bindings (medplum does not)', () => {
    expect(errs(patient({ gender: 'mal' }))).toEqual(['VAL_CODE Patient.gender']);
    expect(errs(obs({ status: 'done' }))).toEqual(['VAL_CODE Observation.status']);
    expect(errs({ resourceType: 'Bundle', type: 'bag' })).toEqual(['VAL_CODE Bundle.type']);
    expect(errs(patient({ name: [{ use: 'nick', family: 'x' }] }))).toEqual(['VAL_CODE Patient.name[0].use']);
    // CodeableConcept under a required binding: one coding from the value set is enough.
    const cond = (clinicalStatus: unknown) => ({
      resourceType: 'Condition',
      subject: { reference: 'Patient/p1' },
      clinicalStatus,
    });
    const sys = 'http://terminology.hl7.org/CodeSystem/condition-clinical';
    expect(errs(cond({ coding: [{ system: sys, code: 'active' }] }))).toEqual([]);
    expect(errs(cond({ coding: [{ system: sys, code: 'gone' }] }))).toEqual([
      'VAL_CODE Condition.clinicalStatus',
    ]);
    expect(
      errs(
        cond({
          coding: [
            { system: 'http://x', code: 'a' },
            { system: sys, code: 'active' },
          ],
        }),
      ),
    ).toEqual([]);
    expect(errs(cond({ text: 'active' }))).toEqual([]);
    // Unenumerable value sets (MIME types) are not checked.
    expect(errs(patient({ photo: [{ contentType: 'application/x-anything' }] }))).toEqual([]);
  });
});

describe('validateFast: invariants and nested resources', () => {
  it('evaluates invariants, including datatype ones on nested values (medplum only checks the root)', () => {
    expect(errs(patient({ contact: [{ gender: 'female' }] }))).toEqual(['VAL_INVARIANT Patient.contact[0]']);
    const enc = { resourceType: 'Encounter', status: 'finished', class: { code: 'AMB' } };
    expect(errs({ ...enc, period: { start: '2021-01-02', end: '2021-01-01' } })).toEqual([
      'VAL_INVARIANT Encounter.period',
    ]);
    expect(errs({ ...enc, period: { start: '2021-01-01', end: '2021-01-01T10:00:00Z' } })).toEqual([]);
    expect(errs(patient({ extension: [{ url: 'http://x' }] }))).toEqual([
      'VAL_INVARIANT Patient.extension[0]',
    ]);
    expect(errs(patient({ telecom: [{ value: '555' }] }))).toEqual(['VAL_INVARIANT Patient.telecom[0]']);
    const ap = {
      resourceType: 'Appointment',
      status: 'booked',
      participant: [{ status: 'accepted', type: [{ text: 'x' }] }],
    };
    // app-3: a booked appointment needs start and end; app-2: both or neither.
    expect(errs(ap)).toEqual(['VAL_INVARIANT Appointment']);
    expect(errs({ ...ap, start: '2020-01-01T10:00:00Z' })).toEqual([
      'VAL_INVARIANT Appointment',
      'VAL_INVARIANT Appointment',
    ]);
    expect(errs({ ...ap, start: '2020-01-01T10:00:00Z', end: '2020-01-01T10:30:00Z' })).toEqual([]);
  });

  it('ctm-1: onBehalfOf only for a Practitioner member', () => {
    const team = (member: string) => ({
      resourceType: 'CareTeam',
      participant: [{ member: { reference: member }, onBehalfOf: { reference: 'Organization/o1' } }],
    });
    expect(errs(team('Practitioner/1'))).toEqual([]);
    expect(errs(team('https://ehr.example/fhir/Practitioner/1'))).toEqual([]);
    expect(errs(team('Patient/1'))).toEqual(['VAL_INVARIANT CareTeam.participant[0]']);
  });

  it('evaluates long-tail invariants through FHIRPath (Questionnaire que-1)', () => {
    const q = { resourceType: 'Questionnaire', status: 'draft', item: [{ linkId: '1', type: 'group' }] };
    const issues = validateFast(q);
    expect(issues.map((i) => `${i.code} ${i.path}`)).toEqual(['VAL_INVARIANT Questionnaire.item[0]']);
    expect(issues[0]?.message).toMatch(/^que-1: /);
    q.item[0] = {
      linkId: '1',
      type: 'group',
      item: [{ linkId: '1.1', type: 'string' }],
    } as (typeof q.item)[0];
    expect(errs(q)).toEqual([]);
  });

  it('validates contained resources: ref-1, dom-2, dom-3, dom-4', () => {
    const org = { resourceType: 'Organization', id: 'o1', name: 'Acme' };
    expect(errs(patient({ contained: [org], managingOrganization: { reference: '#o1' } }))).toEqual([]);
    expect(errs(patient({ contained: [org], managingOrganization: { reference: '#o2' } }))).toEqual([
      'VAL_INVARIANT Patient.managingOrganization.reference',
      'VAL_INVARIANT Patient.contained[0]',
    ]);
    expect(errs(patient({ contained: [org] }))).toEqual(['VAL_INVARIANT Patient.contained[0]']);
    const nested = {
      ...org,
      contained: [{ resourceType: 'Organization', id: 'o3', name: 'x' }],
      meta: { versionId: '1' },
    };
    // dom-2 forbids the nested one outright; it is still validated as a resource.
    expect(errs(patient({ contained: [nested], managingOrganization: { reference: '#o1' } }))).toEqual([
      'VAL_INVARIANT Patient.contained[0].contained',
      'VAL_INVARIANT Patient.contained[0].meta',
    ]);
    // Contained resources are validated with their own type.
    expect(
      errs(patient({ contained: [{ ...org, active: 'yes' }], managingOrganization: { reference: '#o1' } })),
    ).toEqual(['VAL_TYPE Patient.contained[0].active']);
  });

  it('validates Bundle entries recursively, each entry its own frame for local references', () => {
    const bundle = {
      resourceType: 'Bundle',
      type: 'collection',
      entry: [
        { fullUrl: 'urn:uuid:1', resource: patient({ gender: 'mal' }) },
        { fullUrl: 'urn:uuid:2', resource: { resourceType: 'Nope' } },
        { fullUrl: 'urn:uuid:3', resource: obs({ subject: { reference: '#p' } }) },
      ],
    };
    expect(errs(bundle)).toEqual([
      'VAL_CODE Bundle.entry[0].resource.gender',
      'VAL_NOT_A_RESOURCE Bundle.entry[1].resource',
      'VAL_INVARIANT Bundle.entry[2].resource.subject.reference',
    ]);
    // bdl-3: a transaction needs entry.request.
    expect(errs({ resourceType: 'Bundle', type: 'transaction', entry: [{ resource: patient() }] })).toEqual([
      'VAL_INVARIANT Bundle',
    ]);
  });

  it('warns (only) when a literal reference targets a type the element does not allow', () => {
    const issues = validateFast(patient({ managingOrganization: { reference: 'Practitioner/1' } }));
    expect(issues.map((i) => `${i.severity} ${i.code} ${i.path}`)).toEqual([
      'warning VAL_REFERENCE Patient.managingOrganization.reference',
    ]);
    expect(validateFast(patient({ managingOrganization: { reference: 'urn:uuid:0a1b' } }))).toEqual([]);
  });
});

describe('validateFast: no record content in issues', () => {
  const SECRET = 'ZQXJ-Doe-1970';
  it('never quotes values or odd keys, whatever the mutation (property)', () => {
    const holders: ((s: string) => Record<string, unknown>)[] = [
      (s) => patient({ gender: s }),
      (s) => patient({ birthDate: s }),
      (s) => patient({ id: `${s} ` }),
      (s) => patient({ [s]: 1 }),
      (s) => patient({ name: [{ family: 1, given: [s, ''] }], [`_${s}`]: {} }),
      (s) => ({ resourceType: s }),
      (s) => patient({ telecom: [{ value: s }] }),
      (s) => patient({ managingOrganization: { reference: `Practitioner/${s}`, display: '' } }),
      (s) => patient({ text: { status: 'generated', div: s } }),
    ];
    fc.assert(
      fc.property(fc.constantFrom(...holders), fc.string({ minLength: 0, maxLength: 8 }), (make, noise) => {
        const secret = `${SECRET}${noise.replace(/\s/g, '')}`;
        const issues: Issue[] = validateFast(make(secret));
        expect(issues.length).toBeGreaterThan(0);
        for (const i of issues) {
          expect(i.message).not.toContain(SECRET);
          expect(i.path).not.toContain(SECRET);
        }
      }),
      { numRuns: 200, seed: 3 },
    );
  });

  it('uses only catalogued error codes', () => {
    const bad = patient({
      gender: 'x',
      id: 'a b',
      foo: 1,
      name: [],
      birthDate: 1,
      deceasedBoolean: true,
      deceasedDateTime: 'x',
    });
    const issues = validateFast(bad);
    expect(issues.length).toBeGreaterThanOrEqual(6);
    for (const i of issues) expect(isErrorCode(String(i.code))).toBe(true);
  });
});

describe('compilation', () => {
  it('compiles lazily and caches per type', () => {
    const before = compiledCount();
    const spec = resourceSpec('Linkage');
    expect(spec).toBeDefined();
    expect(resourceSpec('Linkage')).toBe(spec);
    expect(compiledCount().resources).toBeGreaterThanOrEqual(before.resources);
    expect(resourceSpec('Nope')).toBeUndefined();
  });

  it('finds a definition for every datatype any element refers to', async () => {
    const { r4Definitions } = await import('./definitions.ts');
    const defs = r4Definitions();
    const missing = new Set<string>();
    for (const sd of [...defs.types.values(), ...defs.resources.values()]) {
      for (const el of sd.snapshot?.element ?? []) {
        for (const t of el.type ?? []) {
          const code = t.code ?? '';
          if (code.startsWith('http://') || ['BackboneElement', 'Element', 'Resource'].includes(code))
            continue;
          if (!defs.types.has(code) && !defs.resources.has(code)) missing.add(code);
        }
      }
    }
    expect([...missing]).toEqual([]);
    for (const [name, sd] of defs.types)
      if (sd.kind === 'complex-type') expect(typeSpec(name).typeName).toBe(name);
  });

  it('compiles every R4 resource type and validates an empty instance of each without throwing', async () => {
    const { r4Definitions } = await import('./definitions.ts');
    const types = [...r4Definitions().resources.keys()];
    expect(types.length).toBeGreaterThanOrEqual(145);
    for (const type of types) {
      const issues = validateFast({ resourceType: type });
      // Only missing required elements or resource-level invariants can be wrong with an empty resource.
      for (const i of issues) expect(['VAL_CARDINALITY', 'VAL_INVARIANT']).toContain(i.code);
    }
  });
});
