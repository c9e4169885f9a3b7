import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isSluiceError } from '../errors/index.ts';
import { determinedCells } from './aggregate.ts';
import { compileProfile } from './profile.ts';
import {
  aggregateRelease,
  assessPatientProfileRisk,
  assessProfileRisk,
  band,
  type ProfileWrite,
} from './release.ts';

const profile = (birthYear: number | null, zip3: string, gender: string, extra = {}): ProfileWrite => ({
  object: 'Patient_Profile__c',
  fields: { Birth_Year__c: birthYear, Zip3__c: zip3, Gender__c: gender, ...extra },
});

/**
 * Hand-computed table (Birth_Year__c, Zip3__c, Gender__c):
 *   A = (1960, 021, Female) × 3, B = (1970, 021, Male) × 2, C = (null, 000, Female) × 1 (over 89)
 * classes 3, k = 1, uniques 1, prosecutor max 1/1 = 1, average 3 classes / 6 records = 0.5.
 */
const TABLE: ProfileWrite[] = [
  profile(1960, '021', 'Female', { Dx__c: 'a' }),
  profile(1960, '021', 'Female', { Dx__c: 'a' }),
  profile(1960, '021', 'Female', { Dx__c: 'b' }),
  profile(1970, '021', 'Male', { Dx__c: 'c' }),
  profile(1970, '021', 'Male', { Dx__c: 'c' }),
  profile(null, '000', 'Female', { Dx__c: 'd' }),
  // Not a patient profile: ignored.
  { object: 'Account', fields: { Birth_Year__c: 1960, Zip3__c: '999', Gender__c: 'Male' } },
];

describe('assessPatientProfileRisk against hand-computed figures', () => {
  it('computes k, uniques and prosecutor risk', () => {
    const risk = assessPatientProfileRisk(TABLE, { minK: 1 });
    expect(risk.report.records).toBe(6);
    expect(risk.report.classes).toBe(3);
    expect(risk.report.k).toBe(1);
    expect(risk.report.uniques).toBe(1);
    expect(risk.report.prosecutor).toEqual({ max: 1, average: 0.5 });
    expect(risk.report.classSizes).toEqual([
      [1, 1],
      [2, 1],
      [3, 1],
    ]);
    expect(risk.hold).toBe(false);
  });

  it('counts the records above the risk limit: 1/3 > 0.3, 1/2 and 1/1 > 0.4, none > 1', () => {
    expect(assessPatientProfileRisk(TABLE, { maxProsecutorRisk: 0.3 }).recordsAtRisk).toBe(6);
    expect(assessPatientProfileRisk(TABLE, { maxProsecutorRisk: 0.4 }).recordsAtRisk).toBe(3);
    expect(assessPatientProfileRisk(TABLE, { maxProsecutorRisk: 1 }).recordsAtRisk).toBe(0);
  });

  it('holds the batch under the default thresholds (k >= 11, risk <= 0.09), naming each failure', () => {
    const risk = assessPatientProfileRisk(TABLE);
    expect(risk.hold).toBe(true);
    expect(risk.violations).toEqual([
      { threshold: 'minK', limit: 11, actual: 1 },
      { threshold: 'maxProsecutorRisk', limit: 0.09, actual: 1 },
    ]);
    // Fewer quasi-identifiers: gender alone gives classes of 4 and 2.
    const coarse = assessPatientProfileRisk(
      TABLE,
      { minK: 2, maxProsecutorRisk: 0.5 },
      { quasiIdentifiers: ['Gender__c'] },
    );
    expect(coarse.report.k).toBe(2);
    expect(coarse.report.prosecutor.average).toBeCloseTo(2 / 6, 10);
    expect(coarse.hold).toBe(false);
  });

  it('measures distinct l-diversity per sensitive attribute: A has {a,b}, B {c}, C {d} → l = 1', () => {
    const risk = assessPatientProfileRisk(TABLE, { minK: 1, minL: 2 }, { sensitive: ['Dx__c'] });
    expect(risk.l).toEqual({ Dx__c: 1 });
    expect(risk.violations).toEqual([{ threshold: 'minL', limit: 2, actual: 1 }]);
    const onlyA = assessPatientProfileRisk(TABLE.slice(0, 3), { minL: 2 }, { sensitive: ['Dx__c'] });
    expect(onlyA.l).toEqual({ Dx__c: 2 });
    expect(onlyA.hold).toBe(false);
  });

  it('refuses an l threshold without a sensitive attribute, and lets an empty batch go', () => {
    let error: unknown;
    try {
      assessPatientProfileRisk(TABLE, { minL: 2 });
    } catch (err) {
      error = err;
    }
    expect(isSluiceError(error) && error.code).toBe('ANON_CONTEXT_INVALID');
    expect(assessPatientProfileRisk([], { minK: 11 }).hold).toBe(false);
  });

  it('k is the smallest class and prosecutor max is 1/k, for any table (property)', () => {
    const row = fc.record({
      y: fc.constantFrom(1950, 1960, null),
      z: fc.constantFrom('021', '000'),
      g: fc.constantFrom('Female', 'Male'),
    });
    fc.assert(
      fc.property(fc.array(row, { minLength: 1, maxLength: 60 }), (rows) => {
        const counts = new Map<string, number>();
        for (const r of rows)
          counts.set(`${r.y}|${r.z}|${r.g}`, (counts.get(`${r.y}|${r.z}|${r.g}`) ?? 0) + 1);
        const risk = assessPatientProfileRisk(
          rows.map((r) => profile(r.y, r.z, r.g)),
          { minK: 1 },
        );
        const k = Math.min(...counts.values());
        expect(risk.report.k).toBe(k);
        expect(risk.report.prosecutor.max).toBeCloseTo(1 / k, 12);
        expect(risk.report.prosecutor.average).toBeCloseTo(counts.size / rows.length, 12);
      }),
    );
  });
});

describe('profile release checks over FHIR resources', () => {
  const p = compileProfile({
    id: 'agg',
    destination: 'x',
    purpose: 'y',
    resourceTypes: ['Patient'],
    rules: [{ path: 'Patient.gender', method: 'keep' }],
    risk: {
      resourceType: 'Patient',
      quasiIdentifiers: { gender: 'Patient.gender', year: 'Patient.birthDate' },
      thresholds: { minK: 3 },
    },
    aggregation: {
      resourceType: 'Patient',
      k: 3,
      dimensions: { decade: { path: 'Patient.birthDate', bandWidth: 10 }, gender: 'Patient.gender' },
      tables: [{ rows: 'decade', cols: 'gender' }, { rows: 'gender' }],
    },
  });
  const patients = (n: number, birthDate: string, gender: string) =>
    Array.from({ length: n }, () => ({ resourceType: 'Patient', birthDate, gender }));
  // 1960s: female 4, male 3; 1970s: female 1 (small), male 5.
  const released = [
    ...patients(4, '1961', 'female'),
    ...patients(3, '1965', 'male'),
    ...patients(1, '1972', 'female'),
    ...patients(5, '1975', 'male'),
    { resourceType: 'Observation', status: 'final' },
  ];

  it('hides the small cell and enough complements that it cannot be recovered from the margins', () => {
    const [table] = aggregateRelease(p.aggregation as NonNullable<typeof p.aggregation>, released);
    if (table?.kind !== 'two-way') throw new Error('expected a two-way table');
    expect(table.rows).toEqual(['1960-1969', '1970-1979']);
    expect(table.cols).toEqual(['female', 'male']);
    expect(table.cells[1]?.[0]).toBeNull();
    expect(table.suppression[1]?.[0]).toBe('primary');
    expect(table.suppressed.complementary).toBeGreaterThan(0);
    const hidden = table.suppression.map((row) => row.map((m) => m !== null));
    expect(determinedCells(hidden)).toEqual([]);
    const truth = [
      [4, 3],
      [1, 5],
    ];
    table.cells.forEach((row, r) => {
      row.forEach((v, c) => {
        if (v !== null) expect(v).toBe(truth[r]?.[c]);
      });
    });
  });

  it('publishes a one-way table whole when no cell is small', () => {
    const [, table] = aggregateRelease(p.aggregation as NonNullable<typeof p.aggregation>, released);
    if (table?.kind !== 'one-way') throw new Error('expected a one-way table');
    expect(table.categories).toEqual(['female', 'male']);
    expect(table.counts).toEqual([5, 8]);
    expect(table.total).toBe(13);
  });

  it('assesses the release over the profile quasi-identifiers (Patients only)', () => {
    const risk = assessProfileRisk(p.risk as NonNullable<typeof p.risk>, released);
    // Classes (female,1961)=4, (male,1965)=3, (female,1972)=1, (male,1975)=5.
    expect(risk.report.records).toBe(13);
    expect(risk.report.k).toBe(1);
    expect(risk.report.prosecutor.average).toBeCloseTo(4 / 13, 12);
    expect(risk.violations).toEqual([{ threshold: 'minK', limit: 3, actual: 1 }]);
  });

  it('bands years and dates, keeps missing values missing', () => {
    expect(band('1965', 10)).toBe('1960-1969');
    expect(band('1965-03-02', 5)).toBe('1965-1969');
    expect(band(42, 1)).toBe('42');
    expect(band(null, 10)).toBeNull();
  });
});
