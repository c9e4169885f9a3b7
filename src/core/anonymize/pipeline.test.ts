import { generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { isSluiceError } from '../errors/index.ts';
import { loadR4Definitions } from '../fhir/definitions.ts';
import type { JsonObject } from '../fhir/resource.ts';
import { validateFhirResource } from '../validate/fhir-schema.ts';
import type { AnonymizeContext } from './context.ts';
import { pseudonymSystem } from './methods/pseudonymize.ts';
import { type AnonymizeResult, anonymize } from './pipeline.ts';
import { pseudonymize } from './pseudonym.ts';
import { compileRuleSet, type RuleSetFile } from './rules.ts';
import { exampleRuleSet, testContext, testKey } from './testing.ts';
import { TokenVault } from './vault.ts';

beforeAll(() => loadR4Definitions());

const ctx = testContext();
const keep = { direct: 'keep', quasi: 'keep', sensitive: 'keep', other: 'keep' } as const;

function rules(file: Partial<RuleSetFile>) {
  return compileRuleSet({ id: 'test', destination: 'test', purpose: 'test', securityLabels: false, ...file });
}

function out(result: AnonymizeResult): JsonObject {
  if (!result.resource) throw new Error(`withheld: ${JSON.stringify(result.warnings)}`);
  return result.resource;
}

const PATIENT: JsonObject = {
  resourceType: 'Patient',
  id: 'pat-1',
  text: {
    status: 'generated',
    div: '<div xmlns="http://www.w3.org/1999/xhtml">Zelda Quimby, MRN 4455</div>',
  },
  identifier: [{ system: 'http://hospital.example/mrn', value: 'MRN-4455' }],
  name: [{ family: 'Quimby', given: ['Zelda'] }],
  telecom: [{ system: 'email', value: 'zelda@example.org' }],
  gender: 'female',
  birthDate: '1961-07-14',
  _birthDate: {
    extension: [{ url: 'http://example.org/birth-time', valueDateTime: '1961-07-14T03:22:00Z' }],
  },
  address: [
    {
      line: ['77 Larkspur Lane'],
      city: 'Peabody',
      state: 'MA',
      postalCode: '01960',
      country: 'US',
      text: '77 Larkspur Lane, Peabody',
    },
  ],
};

const OBSERVATION: JsonObject = {
  resourceType: 'Observation',
  id: 'obs-1',
  status: 'final',
  code: { coding: [{ system: 'http://loinc.org', code: '29463-7' }], text: 'Body weight' },
  subject: { reference: 'Patient/pat-1', display: 'Zelda Quimby' },
  effectiveDateTime: '2021-03-04T09:00:00Z',
  valueQuantity: { value: 72.4, unit: 'kg', system: 'http://unitsofmeasure.org', code: 'kg' },
  note: [{ text: 'Patient Zelda mentioned her sister in Peabody' }],
};

describe('rule matching', () => {
  it('lets the first matching rule win, for a whole subtree', () => {
    const postalFirst = rules({
      defaults: keep,
      rules: [
        { path: 'Patient.address.postalCode', method: 'generalize' },
        { path: 'Patient.address', method: 'redact' },
      ],
    });
    expect(out(anonymize(PATIENT, postalFirst, ctx)).address).toEqual([{ postalCode: '019' }]);
    const addressFirst = rules({
      defaults: keep,
      rules: [
        { path: 'Patient.address', method: 'redact' },
        { path: 'Patient.address.postalCode', method: 'generalize' },
      ],
    });
    expect(out(anonymize(PATIENT, addressFirst, ctx)).address).toBeUndefined();
  });

  it('applies a rule on Patient.address to Patient.address.line, but not to free text inside', () => {
    const rs = rules({ rules: [{ path: 'Patient.address', method: 'keep' }] });
    const result = anonymize(PATIENT, rs, ctx);
    expect(out(result).address).toEqual([
      { line: ['77 Larkspur Lane'], city: 'Peabody', state: 'MA', postalCode: '01960', country: 'US' },
    ]);
    expect(result.audit).toContainEqual(
      expect.objectContaining({ path: 'Patient.address.text', method: 'redact', basis: 'free-text' }),
    );
  });

  it('falls back to class defaults: direct and quasi removed, other kept (fail-closed defaults)', () => {
    const result = anonymize(PATIENT, rules({}), ctx);
    expect(out(result)).toEqual({ resourceType: 'Patient' });
    const byPath = new Map(result.audit.map((a) => [a.path, a]));
    expect(byPath.get('Patient.name')).toMatchObject({
      class: 'direct',
      method: 'redact',
      basis: 'default direct',
    });
    expect(byPath.get('Patient.birthDate')).toMatchObject({ class: 'quasi', method: 'redact' });
    expect(byPath.get('Patient.identifier')).toMatchObject({ count: 1 });
  });

  it('selects by data type and by where-expression', () => {
    const rs = rules({
      defaults: keep,
      rules: [
        { path: '@HumanName', method: 'redact' },
        { path: 'Patient.telecom', where: "system = 'phone'", method: 'keep' },
        { path: 'Patient.telecom', method: 'redact' },
      ],
    });
    const o = out(
      anonymize(
        {
          ...PATIENT,
          telecom: [
            { system: 'email', value: 'zelda@example.org' },
            { system: 'phone', value: '555-0100' },
          ],
        },
        rs,
        ctx,
      ),
    );
    expect(o.name).toBeUndefined();
    expect(o.telecom).toEqual([{ system: 'phone', value: '555-0100' }]);
  });
});

describe('free text', () => {
  it('drops narrative, notes and *.text strings unless a rule names them', () => {
    const all = anonymize(OBSERVATION, rules({ defaults: keep }), ctx);
    const o = out(all);
    expect(o.note).toBeUndefined();
    expect((o.code as JsonObject).text).toBeUndefined();
    expect(out(anonymize(PATIENT, rules({ defaults: keep }), ctx)).text).toBeUndefined();
    const named = out(
      anonymize(
        OBSERVATION,
        rules({
          defaults: keep,
          rules: [
            { path: 'Observation.note', method: 'keep' },
            { path: 'Observation.code.text', method: 'keep' },
          ],
        }),
        ctx,
      ),
    );
    expect(named.note).toEqual(OBSERVATION.note);
    expect((named.code as JsonObject).text).toBe('Body weight');
  });

  it('does not keep nested free text through a keep rule on an ancestor', () => {
    const o = out(anonymize(OBSERVATION, rules({ rules: [{ path: 'Observation', method: 'keep' }] }), ctx));
    expect(o.note).toBeUndefined();
    expect(o.status).toBe('final');
  });
});

describe('normalisation and fail-closed handling', () => {
  it('removes unknown elements, wrongly shaped ones and primitive extensions, with warnings', () => {
    const result = anonymize(
      { ...PATIENT, favouriteColour: 'teal', name: { family: 'Quimby' }, gender: null },
      rules({ defaults: keep }),
      ctx,
    );
    const o = out(result);
    expect(o.favouriteColour).toBeUndefined();
    expect(o.name).toBeUndefined();
    expect(o._birthDate).toBeUndefined();
    expect(o.gender).toBeUndefined();
    expect(result.warnings.map((w) => [w.code, w.path])).toEqual(
      expect.arrayContaining([
        ['ANON_UNKNOWN_ELEMENT', 'Patient.favouriteColour'],
        ['ANON_UNKNOWN_ELEMENT', 'Patient.name'],
      ]),
    );
    expect(result.audit).toContainEqual(
      expect.objectContaining({ path: 'Patient._birthDate', basis: 'primitive-extension' }),
    );
  });

  it('withholds what is not an R4 resource, with record-level codes', () => {
    expect(anonymize('nope', rules({}), ctx)).toMatchObject({
      resource: null,
      warnings: [{ code: 'REC_UNPARSEABLE' }],
    });
    expect(anonymize({ resourceType: 'Spaceship' }, rules({}), ctx)).toMatchObject({
      resource: null,
      warnings: [{ code: 'REC_UNSUPPORTED_TYPE' }],
    });
  });

  it('withholds resource types the rule set does not release, and resources a suppress rule matches', () => {
    const rs = rules({
      defaults: keep,
      resourceTypes: ['Condition'],
      rules: [
        { path: 'Condition', where: "code.coding.where(code = '86406008').exists()", method: 'suppress' },
      ],
    });
    const patient = anonymize(PATIENT, rs, ctx);
    expect(patient.resource).toBeNull();
    expect(patient.warnings[0]?.code).toBe('ANON_RESOURCE_SUPPRESSED');
    const condition = (code: string): JsonObject => ({
      resourceType: 'Condition',
      subject: { reference: 'Patient/pat-1' },
      code: { coding: [{ system: 'http://snomed.info/sct', code }] },
    });
    expect(anonymize(condition('86406008'), rs, ctx).resource).toBeNull();
    expect(anonymize(condition('44054006'), rs, ctx).resource).not.toBeNull();
  });

  it('removes contained resources unless a rule says otherwise', () => {
    const o = out(
      anonymize(
        { ...OBSERVATION, contained: [{ resourceType: 'Patient', id: 'x', name: [{ family: 'Quimby' }] }] },
        rules({ defaults: { ...keep, direct: 'redact' } }),
        ctx,
      ),
    );
    expect(o.contained).toBeUndefined();
  });

  it('refuses a context that lacks what the rule set needs', () => {
    const cases: [Partial<RuleSetFile>, Partial<AnonymizeContext>, RegExp][] = [
      [{ rules: [{ path: '*.id', method: 'pseudonymize' }] }, { keyring: undefined }, /keyring/],
      [{ rules: [{ path: '*.id', method: 'hash' }] }, { hashSalt: new Uint8Array(4) }, /salt/],
      [{ rules: [{ path: '*.id', method: 'tokenize', params: { namespace: 'ids' } }] }, {}, /vault/],
      [{ defaults: { quasi: 'generalize' } }, { restrictedZip3: undefined }, /ZIP3/],
      [{ rules: [{ path: '*.id', method: 'pseudonymize', params: { keyId: 'k9' } }] }, {}, /no key k9/],
    ];
    for (const [file, override, message] of cases) {
      let error: unknown;
      try {
        anonymize(PATIENT, rules(file), { ...ctx, ...override });
      } catch (err) {
        error = err;
      }
      expect(isSluiceError(error) && error.code, String(message)).toBe('ANON_CONTEXT_INVALID');
      expect(String((error as Error).message)).toMatch(message);
    }
  });
});

describe('methods through the pipeline', () => {
  it('pseudonymises ids and references consistently, records the key id, and rotates by key id', () => {
    const rs = rules({
      rules: [
        { path: '*.id', method: 'pseudonymize' },
        { path: '@Reference', method: 'pseudonymize' },
        { path: 'Patient.identifier', method: 'pseudonymize' },
        { path: 'Observation.status', method: 'keep' },
        { path: 'Observation.code', method: 'keep' },
      ],
    });
    const p = anonymize(PATIENT, rs, ctx);
    const o = anonymize(OBSERVATION, rs, ctx);
    const expected = pseudonymize(testKey('k1', 7), 'epic', 'Patient', 'pat-1');
    expect(out(p).id).toBe(expected);
    expect(out(o).subject).toEqual({ reference: `Patient/${expected}` });
    expect(out(p).identifier).toEqual([
      {
        system: pseudonymSystem('k1'),
        value: pseudonymize(testKey('k1', 7), 'http://hospital.example/mrn', 'Identifier', 'MRN-4455'),
      },
    ]);
    expect(p.audit.find((a) => a.path === 'Patient.id')?.paramsSummary).toBe('hmac-sha256 key=k1');
    const rotated = rules({ rules: [{ path: '*.id', method: 'pseudonymize', params: { keyId: 'k0' } }] });
    const r = anonymize(PATIENT, rotated, ctx);
    expect(out(r).id).toBe(pseudonymize(testKey('k0', 3), 'epic', 'Patient', 'pat-1'));
    expect(out(r).id).not.toBe(expected);
    expect(r.audit.find((a) => a.path === 'Patient.id')?.paramsSummary).toBe('hmac-sha256 key=k0');
  });

  it('removes references it cannot resolve, with a warning', () => {
    const rs = rules({ defaults: keep, rules: [{ path: '@Reference', method: 'pseudonymize' }] });
    const result = anonymize(
      { ...OBSERVATION, subject: { reference: '#contained-1' }, performer: [{ reference: 'urn:uuid:123' }] },
      rs,
      ctx,
    );
    expect(out(result).subject).toBeUndefined();
    expect(out(result).performer).toBeUndefined();
    expect(result.warnings.map((w) => w.code)).toContain('ANON_REFERENCE_UNRESOLVED');
  });

  it('hashes with the flow salt: consistent within a flow, different across flows', () => {
    const rs = rules({
      rules: [
        { path: '*.id', method: 'hash' },
        { path: '@Reference', method: 'hash' },
      ],
    });
    const id = out(anonymize(PATIENT, rs, ctx)).id as string;
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    expect(out(anonymize(OBSERVATION, rs, ctx)).subject).toEqual({ reference: `Patient/${id}` });
    const other = out(anonymize(PATIENT, rs, { ...ctx, hashSalt: new Uint8Array(16).fill(1) })).id;
    expect(other).not.toBe(id);
  });

  it('tokenises through the vault, reversibly only there', () => {
    const vault = TokenVault.open(':memory:', {
      secret: new Uint8Array(32).fill(5),
      permissionKey: generateKeyPairSync('ed25519').publicKey,
    });
    const rs = rules({
      rules: [
        { path: '*.id', method: 'tokenize', params: { namespace: 'ids' } },
        { path: '@Reference', method: 'tokenize', params: { namespace: 'ids' } },
        { path: 'Patient.identifier', method: 'tokenize', params: { namespace: 'mrn' } },
      ],
    });
    const tctx = { ...ctx, tokenizer: vault };
    const p = out(anonymize(PATIENT, rs, tctx));
    expect(p.id).toMatch(/^t[a-z2-7]{26}$/);
    expect(out(anonymize(OBSERVATION, rs, tctx)).subject).toEqual({ reference: `Patient/${p.id}` });
    expect(p.identifier).toEqual([{ system: 'urn:sluice:token:mrn', value: expect.stringMatching(/^t/) }]);
    // Patient/pat-1 (its id and the reference share a token), Observation/obs-1, the MRN.
    expect(vault.size()).toBe(3);
  });

  it('generalises ages: whole years with >= 90, or Range bands in choice elements', () => {
    const condition = (value: number, code = 'a'): JsonObject => ({
      resourceType: 'Condition',
      subject: { reference: 'Patient/pat-1' },
      onsetAge: { value, unit: 'years', system: 'http://unitsofmeasure.org', code },
    });
    const years = rules({ defaults: { ...keep, quasi: 'generalize' } });
    expect(out(anonymize(condition(93.5), years, ctx)).onsetAge).toEqual({
      value: 90,
      comparator: '>=',
      unit: 'a',
      system: 'http://unitsofmeasure.org',
      code: 'a',
    });
    expect(out(anonymize(condition(47.9), years, ctx)).onsetAge).toMatchObject({ value: 47 });
    expect(out(anonymize(condition(600, 'mo'), years, ctx)).onsetAge).toMatchObject({ value: 50 });
    const bands = rules({
      defaults: keep,
      rules: [{ path: '@Age', method: 'generalize', params: { ageBandWidth: 5 } }],
    });
    const old = out(anonymize(condition(93), bands, ctx));
    expect(old.onsetAge).toBeUndefined();
    expect(old.onsetRange).toEqual({
      low: { value: 90, unit: 'a', system: 'http://unitsofmeasure.org', code: 'a' },
    });
    expect(out(anonymize(condition(47), bands, ctx)).onsetRange).toMatchObject({
      low: { value: 45 },
      high: { value: 49 },
    });
    for (const v of [condition(93), condition(47)]) {
      expect(validateFhirResource(out(anonymize(v, bands, ctx))).ok).toBe(true);
    }
  });

  it('shifts dates only when it knows the person, and warns otherwise', () => {
    const rs = rules({
      defaults: keep,
      rules: [{ path: '@dateTime', method: 'dateshift', params: { maxDays: 30 } }],
    });
    const shifted = out(anonymize(OBSERVATION, rs, ctx)).effectiveDateTime as string;
    expect(shifted).not.toBe(OBSERVATION.effectiveDateTime);
    expect(shifted.slice(10)).toBe('T09:00:00Z');
    const orphan = anonymize({ ...OBSERVATION, subject: undefined }, rs, ctx);
    expect(out(orphan).effectiveDateTime).toBeUndefined();
    expect(orphan.warnings.map((w) => w.code)).toContain('ANON_NO_PERSON');
  });

  it('property: perturbation is bounded, per person consistent, and keeps signs', () => {
    const { note: _note, ...withoutNote } = OBSERVATION;
    const obs = (patient: string, value: number): JsonObject => ({
      ...withoutNote,
      subject: { reference: `Patient/${patient}` },
      valueQuantity: {
        value,
        unit: 'kg',
        system: 'http://unitsofmeasure.org',
        code: 'kg',
        extension: [{ url: 'http://x', valueString: 'y' }],
      },
    });
    fc.assert(
      fc.property(
        fc.double({ min: 0, max: 500, noNaN: true }),
        fc.double({ min: 0.01, max: 20, noNaN: true }),
        fc.string({ minLength: 1, maxLength: 10 }),
        (value, bound, patient) => {
          const id = `p-${patient.replace(/[^A-Za-z0-9]/g, 'x')}`;
          const rs = rules({
            defaults: keep,
            rules: [
              {
                path: 'Observation.valueQuantity',
                method: 'perturb',
                params: { maxDelta: bound, decimals: 3 },
              },
            ],
          });
          const q = out(anonymize(obs(id, value), rs, ctx)).valueQuantity as JsonObject;
          const noisy = q.value as number;
          expect(Math.abs(noisy - value)).toBeLessThanOrEqual(bound + 0.0005 + 1e-9);
          expect(noisy).toBeGreaterThanOrEqual(0);
          expect(q.unit).toBe('kg');
          expect(q.extension).toBeUndefined();
          // The same person and measure move by the same amount.
          const again = out(anonymize(obs(id, value + 10), rs, ctx)).valueQuantity as JsonObject;
          if (value - bound > 0) expect((again.value as number) - noisy).toBeCloseTo(10, 2);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('adds HL7 security labels when asked', () => {
    const rs = compileRuleSet({
      id: 'labels',
      destination: 'x',
      purpose: 'y',
      rules: [
        { path: '*.id', method: 'pseudonymize' },
        { path: 'Patient.birthDate', method: 'generalize' },
      ],
    });
    const security = (out(anonymize(PATIENT, rs, ctx)).meta as JsonObject).security as JsonObject[];
    expect(security.map((c) => c.code)).toEqual(['ABSTRED', 'PSEUDED', 'REDACTED']);
  });
});

describe('the audit', () => {
  it('records paths, classes and methods but never a value', () => {
    const analytics = exampleRuleSet('analytics');
    const crm = exampleRuleSet('crm-follow-up');
    const secrets = [
      'Quimby',
      'Zelda',
      'MRN-4455',
      'zelda@example.org',
      'Larkspur',
      'Peabody',
      '1961-07-14',
      '01960',
      'pat-1',
    ];
    for (const rs of [analytics, crm]) {
      for (const resource of [PATIENT, OBSERVATION]) {
        const result = anonymize(resource, rs, ctx);
        const text = JSON.stringify({ audit: result.audit, warnings: result.warnings });
        for (const secret of secrets) expect(text, `${rs.id} ${secret}`).not.toContain(secret);
        for (const entry of result.audit) {
          expect(entry.path).toMatch(/^[A-Z][A-Za-z]+(\.[A-Za-z_]+)*$/);
          expect(entry.count).toBeGreaterThan(0);
        }
      }
    }
  });

  it('different rule sets give different versions of the same source', () => {
    const crm = out(anonymize(PATIENT, exampleRuleSet('crm-follow-up'), ctx));
    const analytics = out(anonymize(PATIENT, exampleRuleSet('analytics'), ctx));
    expect(crm).toMatchObject({
      resourceType: 'Patient',
      gender: 'female',
      birthDate: '1961',
      address: [{ postalCode: '019' }],
    });
    expect(analytics).toMatchObject({ address: [{ state: 'MA', country: 'US', postalCode: '019' }] });
    expect(crm.id).toBe(analytics.id);
    expect(crm).not.toEqual(analytics);
    for (const o of [crm, analytics]) expect(validateFhirResource(o).ok).toBe(true);
  });
});
