import { createHmac } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isSluiceError } from '../../errors/index.ts';
import type { JsonObject } from '../../fhir/resource.ts';
import { anonymize } from '../pipeline.ts';
import { loadProfile } from '../profile.ts';
import {
  compileMsConfig,
  cryptoHash,
  dateShiftOffset,
  decryptFromBase64,
  encryptToBase64,
  MsAnonymizer,
  msAnonymizerForProfile,
  transformReferenceId,
} from './index.ts';

/**
 * Upstream test vectors are copied with attribution from microsoft/Tools-for-Health-Data-Anonymization
 * (MIT), FHIR/src/Microsoft.Health.Fhir.Anonymizer.Shared.Core.UnitTests/Utility/*Tests.cs at commit
 * 4ba9fcd73cd46f9f27227b708d6236ee597ece4d. Everything else is checked against an independent
 * re-implementation of the upstream formula (node:crypto HMAC, the date-shift polynomial) in this file.
 */

const NOW = new Date('2025-01-01T00:00:00Z');

/** Independent: upstream's GetDateShiftValue written out again. */
function expectedOffset(prefix: string, key: string): number {
  let o = 0;
  for (const b of new TextEncoder().encode(prefix + key)) o = (o * 131 + b) % 101;
  return o - 50;
}

function hmacHex(input: string, key: string): string {
  return createHmac('sha256', key).update(input).digest('hex');
}

function engine(
  rules: unknown[],
  parameters: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
) {
  const config = compileMsConfig(
    {
      fhirVersion: 'R4',
      fhirPathRules: rules,
      parameters: { cryptoHashKey: 'hash-key', dateShiftKey: 'shift-key', ...parameters },
      ...extra,
    },
    'test',
  );
  return new MsAnonymizer(config, { now: NOW });
}

function run(e: MsAnonymizer, resource: JsonObject): JsonObject {
  const out = e.anonymize(resource);
  if (!out.resource) throw new Error(`withheld: ${JSON.stringify(out.warnings)}`);
  return out.resource;
}

describe('upstream vectors', () => {
  it('crypto-hash: CryptoHashUtilityTests (key "123")', () => {
    expect(cryptoHash('', '123')).toBe('');
    expect(cryptoHash('abc', '123')).toBe('8f16771f9f8851b26f4d460fa17de93e2711c7e51337cb8a608a0f81e1c1b6ae');
    expect(cryptoHash('&*^%$@()=-,/', '123')).toBe(
      '33f6f7d6b3602bf5354dcb4b8d988982602349355f50f86798d8ce1ffd61521b',
    );
    expect(cryptoHash('ÆŊŋßſ♫∅', '123')).toBe(
      '1a94823f0a0f00a4b1ca771c3446dc5e17958f4dae3588ace2bca8a843eb63d9',
    );
    expect(
      cryptoHash('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ1234567890!@#$%^&*()=-', '123'),
    ).toBe('352b5a4af5adb81fa616c2a5b5c492d0b0b544c188a9aa003767a2b5efbd1478');
  });

  it('references: ReferenceUtilityTests (only the id part is transformed)', () => {
    const t = (): string => '@ID';
    const known: [string, string][] = [
      ['#p1', '#@ID'],
      ['Patient/034AB16', 'Patient/@ID'],
      [
        'http://fhir.hl7.org/svc/StructureDefinition/c8973a22-2b5b-4e76-9c66-00639c99e61b',
        'http://fhir.hl7.org/svc/StructureDefinition/@ID',
      ],
      [
        'http://example.org/fhir/Observation/apo89654/_history/2',
        'http://example.org/fhir/Observation/@ID/_history/2',
      ],
      ['urn:uuid:C757873D-EC9A-4326-A141-556F43239520', 'urn:uuid:@ID'],
      ['urn:oid:1.2.3.4.5', 'urn:oid:@ID'],
    ];
    for (const [input, expected] of known) expect(transformReferenceId(input, t)).toBe(expected);
    const unknown = [
      '034AB16',
      'Patient/AbcŴΉЙ',
      'http://fhir.hl7.org/svc/StructureDefinitionTest/c8973a22-2b5b-4e76-9c66-00639c99e61b',
      'ftp://fhir.hl7.org/svc/StructureDefinition/c8973a22-2b5b-4e76-9c66-00639c99e61b',
      'wwurn:uuid:c757873d-ec9a-4326-a141-556f43239520',
      'urn:oid:1.2.3=4.5',
    ];
    for (const input of unknown) expect(transformReferenceId(input, t)).toBe('@ID');
  });

  it('date-shift: DateTimeUtilityTests format vectors (key "dummy", no prefix)', () => {
    expect(dateShiftOffset('', 'dummy')).toBe(-21);
    const e = engine([{ path: "nodesByType('dateTime')", method: 'dateshift' }], { dateShiftKey: 'dummy' });
    const cases: [string, string][] = [
      ['2015-02-07', '2015-01-17'],
      ['2015-02-07T13:28:17-05:00', '2015-01-17T00:00:00-05:00'],
      ['2015-02-07T13:28:17+05:00', '2015-01-17T00:00:00+05:00'],
      ['2015-02-07T13:28:17Z', '2015-01-17T00:00:00Z'],
      ['2015-02-07T13:28:17.12345-05:00', '2015-01-17T00:00:00.00000-05:00'],
    ];
    for (const [input, expected] of cases) {
      // No id: upstream's prefix is then empty, as in its unit tests.
      const out = run(e, {
        resourceType: 'Observation',
        status: 'final',
        code: { text: 'x' },
        effectiveDateTime: input,
      });
      expect(out.effectiveDateTime).toBe(expected);
    }
  });

  it('date-shift and partial redaction: no day, or an age over 89, is redacted to the year or removed', () => {
    const e = engine([{ path: "nodesByType('date')", method: 'dateshift' }], {
      enablePartialDatesForRedact: true,
    });
    expect(run(e, { resourceType: 'Patient', birthDate: '2015-02' }).birthDate).toBe('2015');
    expect(run(e, { resourceType: 'Patient', birthDate: '1925-02-07' }).birthDate).toBeUndefined();
    const strict = engine([{ path: "nodesByType('date')", method: 'dateshift' }]);
    expect(run(strict, { resourceType: 'Patient', birthDate: '2015-02' }).birthDate).toBeUndefined();
  });

  it('the offset stays within ±50 days for any key and prefix', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), (prefix, key) => {
        const o = dateShiftOffset(prefix, key);
        return o === expectedOffset(prefix, key) && o >= -50 && o <= 50;
      }),
    );
  });
});

describe('rule semantics', () => {
  const patient: JsonObject = {
    resourceType: 'Patient',
    id: 'pat-1',
    name: [{ use: 'official', family: 'Doe', given: ['Jane'] }],
    birthDate: '1980-03-15',
    address: [
      { line: ['1 Main St'], city: 'Springfield', state: 'MA', postalCode: '98052-1234', country: 'US' },
    ],
    managingOrganization: { reference: 'Organization/org-9', display: 'Acme Clinic' },
  };

  it('the first rule to reach a node decides it; later rules skip it (keep before redact)', () => {
    const e = engine([
      { path: "nodesByType('HumanName').use", method: 'keep' },
      { path: 'Resource.id', method: 'cryptoHash' },
      { path: 'Patient.id', method: 'redact' },
      { path: "nodesByType('HumanName')", method: 'redact' },
    ]);
    const out = run(e, patient);
    expect(out.name).toEqual([{ use: 'official' }]);
    expect(out.id).toBe(hmacHex('pat-1', 'hash-key'));
  });

  it('hashes the id part of references, so they still resolve to the hashed ids', () => {
    const e = engine([
      { path: 'Resource.id', method: 'cryptoHash' },
      { path: "nodesByType('Reference').reference", method: 'cryptoHash' },
      { path: "nodesByType('Reference').display", method: 'redact' },
    ]);
    const out = run(e, patient);
    const org = run(e, { resourceType: 'Organization', id: 'org-9' });
    expect(out.managingOrganization).toEqual({ reference: `Organization/${org.id}` });
    expect(org.id).toBe(hmacHex('org-9', 'hash-key'));
  });

  it('shifts by the offset of the resource id as it is when the rule runs (hashed first, as upstream)', () => {
    const e = engine([
      { path: 'Resource.id', method: 'cryptoHash' },
      { path: "nodesByType('date')", method: 'dateshift' },
    ]);
    const out = run(e, patient);
    const offset = expectedOffset(hmacHex('pat-1', 'hash-key'), 'shift-key');
    const expected = new Date(Date.UTC(1980, 2, 15 + offset)).toISOString().slice(0, 10);
    expect(out.birthDate).toBe(expected);
    // Without the hash rule the prefix is the id itself.
    const plain = run(engine([{ path: "nodesByType('date')", method: 'dateshift' }]), patient);
    const o2 = expectedOffset('pat-1', 'shift-key');
    expect(plain.birthDate).toBe(new Date(Date.UTC(1980, 2, 15 + o2)).toISOString().slice(0, 10));
  });

  it('a fixed offset (dateShiftFixedOffsetInDays) replaces the key-derived one', () => {
    const e = engine([{ path: "nodesByType('date')", method: 'dateshift' }], {
      dateShiftFixedOffsetInDays: 7,
    });
    expect(run(e, patient).birthDate).toBe('1980-03-22');
  });

  it('partial ZIP codes: first three digits stay, restricted areas become all zeros', () => {
    const e = engine([{ path: "nodesByType('Address').postalCode", method: 'redact' }], {
      enablePartialZipCodesForRedact: true,
      restrictedZipCodeTabulationAreas: ['036'],
    });
    expect((run(e, patient).address as JsonObject[])[0]?.postalCode).toBe('98000-0000');
    const restricted = { ...patient, address: [{ postalCode: '03601' }] };
    expect((run(e, restricted).address as JsonObject[])[0]?.postalCode).toBe('00000');
    const full = engine([{ path: "nodesByType('Address').postalCode", method: 'redact' }]);
    expect(run(full, patient).address).toEqual([
      { line: ['1 Main St'], city: 'Springfield', state: 'MA', country: 'US' },
    ]);
  });

  it('partial ages: only ages over 89 are removed', () => {
    const e = engine([{ path: "nodesByType('Age')", method: 'redact' }], {
      enablePartialAgesForRedact: true,
    });
    const fmh = (age: number): JsonObject => ({
      resourceType: 'FamilyMemberHistory',
      status: 'completed',
      patient: { reference: 'Patient/p' },
      relationship: { text: 'mother' },
      ageAge: { value: age, unit: 'a' },
    });
    // Upstream redacts the whole Age subtree except a value of 89 or less (so the unit goes too).
    expect(run(e, fmh(57)).ageAge).toEqual({ value: 57 });
    expect(run(e, fmh(92)).ageAge).toBeUndefined();
  });

  it('adds the security labels of what was done, once each', () => {
    const out = run(
      engine([
        { path: "nodesByType('HumanName')", method: 'redact' },
        { path: 'Resource.id', method: 'cryptoHash' },
      ]),
      patient,
    );
    expect((out.meta as JsonObject).security).toEqual([
      {
        system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue',
        code: 'REDACTED',
        display: 'redacted',
      },
      {
        system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue',
        code: 'CRYTOHASH',
        display: 'cryptographic hash function',
      },
    ]);
  });

  it('FHIRPath rules with where() and the nodesByType function inside expressions', () => {
    const e = engine([
      { path: "nodesByType('ContactPoint').where(use='home')", method: 'redact' },
      { path: "nodesByType('Address').city | nodesByType('Address').state", method: 'keep' },
      { path: "nodesByType('Address')", method: 'redact' },
    ]);
    const out = run(e, {
      ...patient,
      telecom: [
        { system: 'phone', value: '555-1', use: 'home' },
        { system: 'phone', value: '555-2', use: 'work' },
      ],
    });
    expect(out.telecom).toEqual([{ system: 'phone', value: '555-2', use: 'work' }]);
    expect(out.address).toEqual([{ city: 'Springfield', state: 'MA' }]);
  });

  it('substitute: primitive values and complex fragments', () => {
    const e = engine([
      { path: "nodesByType('Address').city", method: 'substitute', replaceWith: 'example city' },
      { path: 'Patient.name', method: 'substitute', replaceWith: { family: 'Anon' } },
    ]);
    const out = run(e, patient);
    expect((out.address as JsonObject[])[0]?.city).toBe('example city');
    expect(out.name).toEqual([{ family: 'Anon' }]);
  });

  it('generalize: cases in order, otherValues redact', () => {
    const e = engine([
      {
        path: 'Patient.birthDate',
        method: 'generalize',
        cases: { '$this >= @1970-01-01 and $this < @1990-01-01': '@1970' },
        otherValues: 'redact',
      },
    ]);
    expect(run(e, patient).birthDate).toBe('1970');
    expect(run(e, { ...patient, birthDate: '2001-01-01' }).birthDate).toBeUndefined();
  });

  it('perturb stays within span/2 (proportional), rounded as configured', () => {
    fc.assert(
      fc.property(fc.double({ min: 1, max: 1000, noNaN: true }), (value) => {
        const e = engine([
          {
            path: 'Observation.value as Quantity',
            method: 'perturb',
            span: 0.2,
            rangeType: 'proportional',
            roundTo: 2,
          },
        ]);
        const out = run(e, {
          resourceType: 'Observation',
          status: 'final',
          code: { text: 'x' },
          valueQuantity: { value },
        });
        const v = (out.valueQuantity as JsonObject).value as number;
        return Math.abs(v - value) <= value * 0.1 + 0.005 && Math.round(v * 100) / 100 === v;
      }),
      { numRuns: 50 },
    );
  });

  it('encrypt: AES-CBC with a random IV, decryptable with the key, different every time', () => {
    const key = '0123456789abcdef0123456789abcdef';
    const e = engine([{ path: "nodesByType('Address').city", method: 'encrypt' }], { encryptKey: key });
    const a = (run(e, patient).address as JsonObject[])[0]?.city as string;
    const b = (run(e, patient).address as JsonObject[])[0]?.city as string;
    expect(a).not.toBe(b);
    expect(decryptFromBase64(a, key)).toBe('Springfield');
    expect(decryptFromBase64(encryptToBase64('Ünïcødé', key), key)).toBe('Ünïcødé');
    expect(() => decryptFromBase64(a, 'fedcba9876543210fedcba9876543210')).toThrow();
  });

  it('processes every resource of a Bundle, with the rules of its own type', () => {
    const e = engine([
      { path: 'Resource.id', method: 'cryptoHash' },
      { path: 'Bundle.entry.fullUrl', method: 'redact' },
      { path: 'Patient.name', method: 'redact' },
    ]);
    const out = run(e, {
      resourceType: 'Bundle',
      type: 'collection',
      entry: [{ fullUrl: 'urn:uuid:x', resource: patient }],
    });
    const entry = (out.entry as JsonObject[])[0] as JsonObject;
    expect(entry.fullUrl).toBeUndefined();
    expect((entry.resource as JsonObject).name).toBeUndefined();
    expect((entry.resource as JsonObject).id).toBe(hmacHex('pat-1', 'hash-key'));
  });
});

describe('errors and configuration', () => {
  it('an invalid config names every problem', () => {
    try {
      compileMsConfig({
        fhirVersion: 'Stu3',
        fhirPathRules: [
          { path: 'Patient.(', method: 'redact' },
          { path: 'x', method: 'shred' },
          { path: 'x', method: 'perturb' },
        ],
        parameters: { encryptKey: 'short' },
      });
      expect.unreachable();
    } catch (err) {
      expect(isSluiceError(err) && err.code).toBe('ANON_MS_CONFIG_INVALID');
      const problems = isSluiceError(err) ? (err.details.problems as string[]) : [];
      expect(problems.join('\n')).toMatch(/fhirVersion/);
      expect(problems.join('\n')).toMatch(/fhirPathRules\[0\]\.path/);
      expect(problems.join('\n')).toMatch(/fhirPathRules\[1\]\.method/);
      expect(problems.join('\n')).toMatch(/fhirPathRules\[2\]\.span/);
      expect(problems.join('\n')).toMatch(/encryptKey/);
    }
  });

  it('generalize on a complex element is a configuration error; processing errors raise or skip', () => {
    expect(() =>
      engine([{ path: 'Patient.name', method: 'generalize', cases: {} }]).anonymize({
        resourceType: 'Patient',
        name: [{ family: 'X' }],
      }),
    ).toThrow(expect.objectContaining({ code: 'ANON_MS_RULE_NOT_APPLICABLE' }));
    const rules = [{ path: 'Patient.address', method: 'substitute', replaceWith: '{"nope": 1}' }];
    const p: JsonObject = { resourceType: 'Patient', address: [{ city: 'Springfield' }] };
    expect(() => engine(rules).anonymize(p)).toThrow(
      expect.objectContaining({ code: 'ANON_MS_PROCESSING_FAILED' }),
    );
    const skipped = engine(rules, {}, { processingErrors: 'skip' }).anonymize(p);
    expect(skipped.resource).toEqual({
      resourceType: 'Patient',
      meta: {
        security: [
          {
            system: 'http://terminology.hl7.org/CodeSystem/v3-ObservationValue',
            code: 'REDACTED',
            display: 'redacted',
          },
        ],
      },
    });
    expect(JSON.stringify(skipped)).not.toContain('Springfield');
  });

  it('an element outside the R4 model withholds the record instead of passing it through', () => {
    const out = engine([{ path: 'Resource.id', method: 'keep' }]).anonymize({
      resourceType: 'Patient',
      ssnNumber: '123-45-6789',
    });
    expect(out.resource).toBeNull();
    expect(JSON.stringify(out.warnings)).not.toContain('123-45-6789');
  });

  it('loadProfile recognises a Microsoft config; keys come from it unless the environment overrides them', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ms-'));
    const file = join(dir, 'office.json');
    writeFileSync(
      file,
      JSON.stringify({
        fhirPathRules: [{ path: 'Resource.id', method: 'cryptoHash' }],
        parameters: { cryptoHashKey: 'from-config' },
      }),
    );
    const profile = loadProfile(file);
    expect(profile.msCompat).toBeDefined();
    // A caller unaware of the format releases nothing (fail closed).
    expect(
      anonymize({ resourceType: 'Patient', id: 'a' }, profile.ruleSet, { system: 'x', asOf: NOW }).resource,
    ).toBeNull();
    const fromConfig = msAnonymizerForProfile(profile, {}).anonymize({ resourceType: 'Patient', id: 'a' });
    expect(fromConfig.resource?.id).toBe(hmacHex('a', 'from-config'));
    const fromEnv = msAnonymizerForProfile(profile, { SLUICE_MS_CRYPTOHASH_KEY: 'from-env' }).anonymize({
      resourceType: 'Patient',
      id: 'a',
    });
    expect(fromEnv.resource?.id).toBe(hmacHex('a', 'from-env'));
    expect(JSON.stringify(fromEnv.audit)).not.toContain('"a"');
  });
});
