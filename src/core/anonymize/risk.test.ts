import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isSluiceError } from '../errors/index.ts';
import { assessRisk, checkRisk, type DataRecord, enforceRisk, tuplesFromResources } from './risk.ts';

/** A hand-made release: ages banded, ZIP3, gender, and a diagnosis as the sensitive attribute. */
const TABLE: DataRecord[] = [
  { age: '30-39', zip3: '021', gender: 'female', dx: 'asthma' },
  { age: '30-39', zip3: '021', gender: 'female', dx: 'diabetes' },
  { age: '30-39', zip3: '021', gender: 'female', dx: 'asthma' },
  { age: '30-39', zip3: '021', gender: 'male', dx: 'flu' },
  { age: '30-39', zip3: '021', gender: 'male', dx: 'flu' },
  { age: '40-49', zip3: '021', gender: 'female', dx: 'asthma' },
  { age: '40-49', zip3: '021', gender: 'female', dx: 'hiv' },
  { age: '40-49', zip3: '021', gender: 'female', dx: 'flu' },
  { age: '40-49', zip3: '021', gender: 'female', dx: 'flu' },
  { age: '90+', zip3: '000', gender: 'male', dx: 'copd' },
];
const QI = ['age', 'zip3', 'gender'];

describe('assessRisk on a hand-made table', () => {
  const report = assessRisk(TABLE, { quasiIdentifiers: QI, sensitive: 'dx' });

  it('finds the equivalence classes, k and the uniques', () => {
    // Classes: (30-39,021,F)=3, (30-39,021,M)=2, (40-49,021,F)=4, (90+,000,M)=1
    expect(report.classes).toBe(4);
    expect(report.k).toBe(1);
    expect(report.uniques).toBe(1);
    expect(report.classSizes).toEqual([
      [1, 1],
      [2, 1],
      [3, 1],
      [4, 1],
    ]);
  });

  it('computes prosecutor, journalist and marketer risk (release = population)', () => {
    expect(report.prosecutor.max).toBe(1);
    expect(report.prosecutor.average).toBeCloseTo(4 / 10);
    expect(report.journalist.max).toBe(1);
    expect(report.marketer).toBeCloseTo(4 / 10);
    expect(report.populationProvided).toBe(false);
  });

  it('computes distinct and entropy l-diversity', () => {
    // (30-39,M) holds only 'flu', and the unique record one value: l = 1.
    expect(report.l).toBe(1);
    expect(report.entropyL).toBeCloseTo(1);
    const withoutSmall = assessRisk(TABLE.slice(0, 3).concat(TABLE.slice(5, 9)), {
      quasiIdentifiers: QI,
      sensitive: 'dx',
    });
    expect(withoutSmall.k).toBe(3);
    expect(withoutSmall.l).toBe(2);
    // (30-39,F): asthma ×2, diabetes ×1 → exp(H) = exp(-(2/3 ln 2/3 + 1/3 ln 1/3)) ≈ 1.8899
    expect(withoutSmall.entropyL).toBeCloseTo(1.8899, 3);
  });

  it('uses a population table for journalist and marketer risk', () => {
    const population: DataRecord[] = [
      ...Array.from({ length: 30 }, () => ({ age: '30-39', zip3: '021', gender: 'female' })),
      ...Array.from({ length: 20 }, () => ({ age: '30-39', zip3: '021', gender: 'male' })),
      ...Array.from({ length: 40 }, () => ({ age: '40-49', zip3: '021', gender: 'female' })),
      ...Array.from({ length: 5 }, () => ({ age: '90+', zip3: '000', gender: 'male' })),
    ];
    const r = assessRisk(TABLE, { quasiIdentifiers: QI, population });
    expect(r.journalist.max).toBeCloseTo(1 / 5);
    expect(r.marketer).toBeCloseTo((3 / 30 + 2 / 20 + 4 / 40 + 1 / 5) / 10);
    expect(r.prosecutor.max).toBe(1);
    // A population smaller than the release in some class is inconsistent: refused, not guessed.
    expect(() => assessRisk(TABLE, { quasiIdentifiers: QI, population: population.slice(0, 10) })).toThrow(
      /population table/,
    );
  });

  it('treats missing values as one suppressed value', () => {
    const r = assessRisk([{ a: null }, { a: undefined }, { a: '' }, { a: 'x' }], { quasiIdentifiers: ['a'] });
    expect(r.classes).toBe(2);
    expect(r.k).toBe(1);
  });
});

describe('release thresholds', () => {
  const report = assessRisk(TABLE, { quasiIdentifiers: QI, sensitive: 'dx' });

  it('lists each broken threshold', () => {
    expect(checkRisk(report, { minK: 5, maxProsecutorRisk: 0.2, minL: 2, maxUniques: 0 })).toEqual([
      { threshold: 'minK', limit: 5, actual: 1 },
      { threshold: 'maxProsecutorRisk', limit: 0.2, actual: 1 },
      { threshold: 'minL', limit: 2, actual: 1 },
      { threshold: 'maxUniques', limit: 0, actual: 1 },
    ]);
    expect(checkRisk(report, { minK: 1, maxAverageRisk: 0.5 })).toEqual([]);
  });

  it('refuses a release with ANON_RISK_EXCEEDED, naming thresholds and counts but no data', () => {
    let error: unknown;
    try {
      enforceRisk(report, { minK: 5 });
    } catch (err) {
      error = err;
    }
    expect(isSluiceError(error) && error.code).toBe('ANON_RISK_EXCEEDED');
    if (!isSluiceError(error)) return;
    expect(error.details.failed).toEqual(['minK (limit 5, actual 1)']);
    for (const value of ['90+', '000', 'copd', 'hiv'])
      expect(JSON.stringify(error.toJSON())).not.toContain(value);
    expect(() => enforceRisk(report, { minK: 1 })).not.toThrow();
  });

  it('refuses minL without a sensitive attribute, and lets an empty release pass', () => {
    expect(() => checkRisk(assessRisk(TABLE, { quasiIdentifiers: QI }), { minL: 2 })).toThrow(/sensitive/);
    expect(checkRisk(assessRisk([], { quasiIdentifiers: QI }), { minK: 5 })).toEqual([]);
  });
});

describe('risk properties', () => {
  const record = fc.record({
    a: fc.constantFrom('x', 'y', 'z', null),
    b: fc.integer({ min: 0, max: 3 }),
    s: fc.constantFrom('p', 'q', 'r'),
  });

  it('k is the smallest class size, average risk is classes/records, uniques are size-1 classes', () => {
    fc.assert(
      fc.property(fc.array(record, { minLength: 1, maxLength: 60 }), (rows) => {
        const r = assessRisk(rows, { quasiIdentifiers: ['a', 'b'], sensitive: 's' });
        const counts = new Map<string, number>();
        for (const row of rows)
          counts.set(`${row.a ?? '*'}|${row.b}`, (counts.get(`${row.a ?? '*'}|${row.b}`) ?? 0) + 1);
        const sizes = [...counts.values()];
        expect(r.k).toBe(Math.min(...sizes));
        expect(r.classes).toBe(counts.size);
        expect(r.uniques).toBe(sizes.filter((s) => s === 1).length);
        expect(r.prosecutor.average).toBeCloseTo(counts.size / rows.length);
        expect(r.prosecutor.max).toBeCloseTo(1 / r.k);
        expect(r.l).toBeGreaterThanOrEqual(1);
        expect(r.l).toBeLessThanOrEqual(Math.min(3, r.k));
      }),
    );
  });

  it('does not depend on record order, and never gets riskier by merging classes', () => {
    fc.assert(
      fc.property(fc.array(record, { minLength: 1, maxLength: 40 }), (rows) => {
        const r1 = assessRisk(rows, { quasiIdentifiers: ['a', 'b'] });
        const r2 = assessRisk([...rows].reverse(), { quasiIdentifiers: ['a', 'b'] });
        expect(r2).toEqual(r1);
        // Dropping a quasi-identifier (generalising it away) can only make classes larger.
        const coarser = assessRisk(rows, { quasiIdentifiers: ['a'] });
        expect(coarser.k).toBeGreaterThanOrEqual(r1.k);
        expect(coarser.prosecutor.average).toBeLessThanOrEqual(r1.prosecutor.average);
      }),
    );
  });
});

describe('tuplesFromResources', () => {
  it('extracts quasi-identifier columns with FHIRPath', () => {
    const rows = tuplesFromResources(
      [
        { resourceType: 'Patient', gender: 'male', birthDate: '1956', address: [{ postalCode: '019' }] },
        { resourceType: 'Patient', gender: 'female' },
      ],
      { gender: 'Patient.gender', year: 'Patient.birthDate', zip3: 'Patient.address.first().postalCode' },
    );
    expect(rows).toEqual([
      { gender: 'male', year: '1956', zip3: '019' },
      { gender: 'female', year: null, zip3: null },
    ]);
  });
});
