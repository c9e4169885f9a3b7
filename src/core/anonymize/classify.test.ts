import { describe, expect, it } from 'vitest';
import {
  DATA_CLASSES,
  RESOURCE_CLASSES,
  RESOURCE_ELEMENT_CLASSES,
  TYPE_CLASSES,
  TYPE_ELEMENT_CLASSES,
} from './classification.ts';
import { classifyPath, classifyRoot, enumerateElements } from './classify.ts';
import { childElement, elementNames, isKnownType } from './schema.ts';

const MOVED = [
  'Patient',
  'Practitioner',
  'Organization',
  'Encounter',
  'Observation',
  'Condition',
  'Consent',
  'Appointment',
  'ServiceRequest',
] as const;

describe('classification of every element path', () => {
  for (const type of MOVED) {
    it(`${type}: every element is classified, fail-closed where identifying`, () => {
      const elements = enumerateElements(type, 4);
      expect(elements.length).toBeGreaterThan(50);
      for (const { path, type: t, classification } of elements) {
        expect(DATA_CLASSES, path).toContain(classification.class);
        // Whatever nests them, these types are always at least as strict as the table says.
        if (t === 'HumanName' || t === 'ContactPoint' || t === 'Identifier' || t === 'Reference') {
          expect(classification.class, path).toBe('direct');
        }
        if (t === 'date' || t === 'dateTime' || t === 'instant' || t === 'Period' || t === 'Age') {
          expect(['direct', 'quasi'], path).toContain(classification.class);
        }
        if (/\.line$/.test(path) && path.includes('address'))
          expect(classification.class, path).toBe('direct');
        if (t === 'Narrative' || t === 'Annotation' || t === 'markdown') {
          expect(classification.freeText, path).toBe(true);
        }
        if (t === 'Extension') expect(classification.class, path).toBe('direct');
      }
    });
  }

  it('puts the Safe Harbor identifiers in the right class and category', () => {
    const expectations: [string, string, string?][] = [
      ['Patient.name.family', 'direct', 'names'],
      ['Patient.telecom.value', 'direct', 'telephone'],
      ['Patient.identifier.value', 'direct', 'ssn'],
      ['Patient.birthDate', 'quasi', 'dates'],
      ['Patient.address.postalCode', 'quasi', 'geographic'],
      ['Patient.address.city', 'quasi', 'geographic'],
      ['Patient.address.line', 'direct', 'geographic'],
      ['Patient.photo.data', 'direct', 'photo'],
      ['Patient.gender', 'quasi'],
      ['Patient.deceasedDateTime', 'quasi', 'dates'],
      ['Patient.contact.name.given', 'direct', 'names'],
      ['Patient.id', 'direct', 'mrn'],
      ['Observation.valueQuantity.value', 'sensitive'],
      ['Observation.code.coding.code', 'sensitive'],
      ['Observation.effectiveDateTime', 'quasi', 'dates'],
      ['Observation.subject.reference', 'direct'],
      ['Condition.code.coding.display', 'sensitive'],
      ['Condition.onsetAge.value', 'quasi', 'dates'],
      ['Consent.patient', 'direct'],
      ['Consent.provision.code', 'sensitive'],
      ['Appointment.start', 'quasi', 'dates'],
      ['ServiceRequest.code', 'sensitive'],
      ['Encounter.status', 'other'],
      ['Encounter.class.code', 'other'],
      ['Practitioner.name.family', 'direct', 'names'],
      ['Organization.name', 'quasi'],
    ];
    for (const [path, cls, category] of expectations) {
      const c = classifyPath(path);
      expect(c?.class, path).toBe(cls);
      if (category) expect(c?.categories, path).toContain(category);
    }
  });

  it('marks free text: narrative, notes, *.text strings, string observations', () => {
    for (const path of [
      'Patient.text',
      'Observation.note',
      'Observation.note.text',
      'Condition.code.text',
      'Observation.valueString',
      'Appointment.comment',
      'ServiceRequest.patientInstruction',
    ]) {
      expect(classifyPath(path)?.freeText, path).toBe(true);
    }
    expect(classifyPath('Condition.code.coding.display')?.freeText).toBe(false);
  });

  it('fails closed on unknown elements and unknown resource types', () => {
    expect(classifyPath('Patient.favouriteColour')).toMatchObject({ class: 'direct', basis: 'unknown' });
    expect(classifyPath('Observation.valueQuantity.secret')).toMatchObject({
      class: 'direct',
      basis: 'unknown',
    });
    // A real R4 type the table does not list: the whole resource is a direct identifier.
    expect(classifyRoot('Claim')).toMatchObject({ class: 'direct' });
    expect(classifyPath('Claim.status')?.class).toBe('direct');
    expect(classifyPath('NotAType.id')).toBeUndefined();
  });

  it('never lets a child be less restrictive than its parent', () => {
    // Identifier.system is harmless on its own, but inside an identifier it stays direct.
    expect(classifyPath('Patient.identifier.system')?.class).toBe('direct');
    // Address.use under a quasi address stays quasi.
    expect(classifyPath('Patient.address.use')?.class).toBe('quasi');
  });
});

describe('the classification table itself', () => {
  it('names only real resource types and elements (a typo would silently never apply)', () => {
    for (const type of Object.keys(RESOURCE_CLASSES)) expect(isKnownType(type), type).toBe(true);
    for (const path of Object.keys(RESOURCE_ELEMENT_CLASSES)) {
      const c = classifyPath(path.replace('[x]', ''));
      const [root, ...rest] = path.split('.');
      let type = root as string;
      for (const seg of rest) {
        const name = seg.replace('[x]', '');
        const element = seg.endsWith('[x]')
          ? elementNames(type).includes(seg) && { type: '' }
          : childElement(type, name);
        expect(element, path).toBeTruthy();
        if (element && 'type' in element && element.type) type = element.type;
      }
      expect(c, path).toBeDefined();
    }
    for (const key of Object.keys(TYPE_ELEMENT_CLASSES)) {
      const [type, element] = key.split('.') as [string, string];
      expect(elementNames(type), key).toContain(element);
    }
    for (const type of Object.keys(TYPE_CLASSES)) expect(isKnownType(type), type).toBe(true);
  });
});
