import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { dayNumber, parseFhirDate, shiftFhirDate, truncateFhirDate } from './dates.ts';
import { ageBand, ageBandBounds, ageInYears } from './generalize.ts';
import { dateShiftOffset } from './methods/dateshift.ts';
import { testKey } from './testing.ts';

const fullDate = fc
  .date({ min: new Date('1900-01-01T00:00:00Z'), max: new Date('2100-12-31T00:00:00Z'), noInvalidDate: true })
  .map((d) => d.toISOString().slice(0, 10));

describe('FHIR dates', () => {
  it('parses the three precisions and rejects impossible dates', () => {
    expect(parseFhirDate('2019')).toEqual({ year: 2019, time: '' });
    expect(parseFhirDate('2019-05')).toEqual({ year: 2019, month: 5, time: '' });
    expect(parseFhirDate('2019-05-27T10:15:00-04:00')).toEqual({
      year: 2019,
      month: 5,
      day: 27,
      time: 'T10:15:00-04:00',
    });
    for (const bad of ['2019-02-30', '2019-13', '19-05-27', '2019-05-27 10:00', '', 'yesterday']) {
      expect(parseFhirDate(bad), bad).toBeUndefined();
    }
  });

  it('shifts by whole days keeping time, offset and precision; partial dates are never moved', () => {
    expect(shiftFhirDate('2020-02-28', 2)).toBe('2020-03-01');
    expect(shiftFhirDate('2021-01-01T23:30:00+14:00', -1)).toBe('2020-12-31T23:30:00+14:00');
    expect(shiftFhirDate('2019-05-27T10:15:00.123Z', 30)).toBe('2019-06-26T10:15:00.123Z');
    expect(shiftFhirDate('2019', 200)).toBe('2019');
    // A year-month would move ambiguously: it is cut to the year (never keeps the month).
    expect(shiftFhirDate('2019-05', 10)).toBe('2019');
    expect(shiftFhirDate('not a date', 3)).toBeUndefined();
  });

  it('property: shifting preserves the interval between any two dates', () => {
    fc.assert(
      fc.property(fullDate, fullDate, fc.integer({ min: -3650, max: 3650 }), (a, b, days) => {
        const sa = shiftFhirDate(a, days) as string;
        const sb = shiftFhirDate(b, days) as string;
        expect((dayNumber(sb) as number) - (dayNumber(sa) as number)).toBe(
          (dayNumber(b) as number) - (dayNumber(a) as number),
        );
        expect((dayNumber(sa) as number) - (dayNumber(a) as number)).toBe(days);
        expect(sa).toMatch(/^\d{4}-\d{2}-\d{2}$/);
      }),
    );
  });

  it('truncates to year or month; instants stay full instants', () => {
    expect(truncateFhirDate('2019-05-27', 'year', 'date')).toBe('2019');
    expect(truncateFhirDate('2019-05-27T10:15:00Z', 'month', 'dateTime')).toBe('2019-05');
    expect(truncateFhirDate('2019-05-27T10:15:00Z', 'year', 'instant')).toBe('2019-01-01T00:00:00Z');
    expect(truncateFhirDate('2019', 'month', 'date')).toBe('2019');
  });
});

describe('age bands', () => {
  it('puts everything over 89 in one band and cuts the band below at 89', () => {
    expect(ageBand(47)).toBe('45-49');
    expect(ageBand(89)).toBe('85-89');
    expect(ageBand(90)).toBe('90+');
    expect(ageBand(117)).toBe('90+');
    expect(ageBand(88, 7)).toBe('84-89');
    expect(ageBand(3, 1)).toBe('3');
    expect(ageBand(-1)).toBeUndefined();
    expect(ageBandBounds(95, 10)).toEqual({ low: 90 });
  });

  it('property: bands contain the age, never straddle 89/90, and all ages over 89 share one band', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 130 }), fc.integer({ min: 1, max: 30 }), (age, width) => {
        const band = ageBandBounds(age, width);
        if (!band) throw new Error('no band');
        if (age > 89) {
          expect(band).toEqual({ low: 90 });
          return;
        }
        expect(band.low).toBeLessThanOrEqual(age);
        expect(band.high).toBeGreaterThanOrEqual(age);
        expect(band.high).toBeLessThanOrEqual(89);
      }),
    );
  });

  it('computes ages in whole years (the oldest possible for partial dates)', () => {
    const asOf = new Date('2025-01-01T00:00:00Z');
    expect(ageInYears('1935-01-02', asOf)).toBe(89);
    expect(ageInYears('1935-01-01', asOf)).toBe(90);
    expect(ageInYears('1935', asOf)).toBe(90);
  });
});

describe('per-person date shift offsets', () => {
  it('property: within ±maxDays, never 0, the same for the same person and key', () => {
    const key = testKey('k1', 7);
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), fc.integer({ min: 1, max: 3650 }), (pseudonym, maxDays) => {
        const offset = dateShiftOffset(key, pseudonym, maxDays);
        expect(Math.abs(offset)).toBeLessThanOrEqual(maxDays);
        expect(offset).not.toBe(0);
        expect(dateShiftOffset(key, pseudonym, maxDays)).toBe(offset);
      }),
    );
  });

  it('spreads people over the range and depends on the key', () => {
    const k1 = testKey('k1', 7);
    const k2 = testKey('k2', 8);
    const offsets = Array.from({ length: 200 }, (_, i) => dateShiftOffset(k1, `person-${i}`, 30));
    expect(new Set(offsets).size).toBeGreaterThan(40);
    expect(offsets.some((o) => o < 0) && offsets.some((o) => o > 0)).toBe(true);
    const other = Array.from({ length: 200 }, (_, i) => dateShiftOffset(k2, `person-${i}`, 30));
    expect(other).not.toEqual(offsets);
  });
});
