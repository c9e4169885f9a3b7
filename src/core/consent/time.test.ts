import { describe, expect, it } from 'vitest';
import { covers, parseFhirTime } from './time.ts';

describe('parseFhirTime', () => {
  it('reads each precision as the interval it names', () => {
    expect(parseFhirTime('2016')).toEqual({ start: Date.UTC(2016, 0, 1), end: Date.UTC(2017, 0, 1) });
    expect(parseFhirTime('2016-12')).toEqual({ start: Date.UTC(2016, 11, 1), end: Date.UTC(2017, 0, 1) });
    expect(parseFhirTime('2016-02-29')).toEqual({ start: Date.UTC(2016, 1, 29), end: Date.UTC(2016, 2, 1) });
    expect(parseFhirTime('2016-06-23T17:02:33+10:00')).toEqual({
      start: Date.UTC(2016, 5, 23, 7, 2, 33),
      end: Date.UTC(2016, 5, 23, 7, 2, 34),
    });
    expect(parseFhirTime('2016-06-23T17:02:33.5Z')).toEqual({
      start: Date.UTC(2016, 5, 23, 17, 2, 33, 500),
      end: Date.UTC(2016, 5, 23, 17, 2, 33, 600),
    });
    // Salesforce writes offsets without a colon.
    expect(parseFhirTime('2024-03-01T10:15:00.000+0000')?.start).toBe(Date.UTC(2024, 2, 1, 10, 15));
    expect(parseFhirTime('0099-01-01')?.start).toBe(new Date('0099-01-01T00:00:00Z').getTime());
  });

  it('rejects what is not a FHIR date or dateTime', () => {
    for (const bad of [
      '2016-02-30',
      '2015-02-29',
      '2016-13-01',
      '2016-00-10',
      '2016-06-23T17:02:33', // time without zone
      '2016-06-23T24:00:00Z',
      '16-06-23',
      '2016/06/23',
      '',
      'yesterday',
      '0000',
      20160623,
      null,
      undefined,
    ]) {
      expect(parseFhirTime(bad), String(bad)).toBeUndefined();
    }
  });
});

describe('covers', () => {
  it('is half-open and treats missing bounds as open', () => {
    expect(covers({ start: 10, end: 20 }, 10)).toBe(true);
    expect(covers({ start: 10, end: 20 }, 19)).toBe(true);
    expect(covers({ start: 10, end: 20 }, 20)).toBe(false);
    expect(covers({ start: 10, end: 20 }, 9)).toBe(false);
    expect(covers({}, -1e15)).toBe(true);
    expect(covers({ end: 5 }, 4)).toBe(true);
  });
});
