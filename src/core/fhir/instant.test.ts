import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { instantMs, isEarlierStamp, utcInstant } from './instant.ts';

/** `ms` written as a FHIR instant in a zone `offsetMinutes` east of UTC, with `digits` of fraction. */
function written(ms: number, offsetMinutes: number, digits: number): string {
  const local = new Date(ms + offsetMinutes * 60_000).toISOString();
  const fraction = digits === 0 ? '' : `.${local.slice(20, 20 + Math.min(digits, 3)).padEnd(digits, '0')}`;
  if (offsetMinutes === 0 && digits % 2 === 0) return `${local.slice(0, 19)}${fraction}Z`;
  const sign = offsetMinutes < 0 ? '-' : '+';
  const abs = Math.abs(offsetMinutes);
  const zone = `${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
  return `${local.slice(0, 19)}${fraction}${zone}`;
}

describe('source stamps as times', () => {
  it('reads zones and precisions', () => {
    expect(utcInstant('2026-10-31T20:00:00-05:00')).toBe('2026-11-01T01:00:00.000Z');
    expect(utcInstant('2026-11-01T06:00:00.123456+00:00')).toBe('2026-11-01T06:00:00.123Z');
    expect(utcInstant('2026-11-01T06:00:00Z')).toBe('2026-11-01T06:00:00.000Z');
    expect(isEarlierStamp('2026-11-05T10:00:00+05:00', '2026-11-05T06:00:00Z')).toBe(true);
    expect(isEarlierStamp('2026-11-05T06:00:00Z', '2026-11-05T06:00:00.120Z')).toBe(true);
    expect(isEarlierStamp('2026-11-05T06:00:00.120Z', '2026-11-05T06:00:00Z')).toBe(false);
  });

  it('reads nothing it cannot place in time', () => {
    for (const bad of [
      '',
      'yesterday',
      '2026-02-30T00:00:00Z',
      '2026-11-01T06:00:00',
      '2026-11-01T25:00:00Z',
      42,
    ])
      expect(instantMs(bad)).toBeUndefined();
    expect(isEarlierStamp('not a time', '2026-11-01T00:00:00Z')).toBe(false);
    expect(isEarlierStamp('2026-11-01T00:00:00Z', 'not a time')).toBe(false);
  });

  it('orders any two stamps as their instants, and their UTC text sorts the same way', () => {
    const stamp = fc.record({
      // Whole milliseconds, years 1971–2099; zones from -12:00 to +14:00 in quarter hours.
      ms: fc.integer({ min: 31_536_000_000, max: 4_102_444_799_000 }),
      offset: fc.integer({ min: -48, max: 56 }).map((q) => q * 15),
      digits: fc.constantFrom(0, 1, 2, 3, 6),
    });
    fc.assert(
      fc.property(stamp, stamp, (a, b) => {
        // Precision below what is written does not count.
        const keep = (s: typeof a) => (s.digits >= 3 ? s.ms : s.ms - (s.ms % 10 ** (3 - s.digits)));
        const x = written(a.ms, a.offset, a.digits);
        const y = written(b.ms, b.offset, b.digits);
        expect(instantMs(x)).toBe(keep(a));
        expect(isEarlierStamp(x, y)).toBe(keep(a) < keep(b));
        const [ux, uy] = [utcInstant(x) as string, utcInstant(y) as string];
        expect(ux < uy).toBe(keep(a) < keep(b));
      }),
      { numRuns: 2000 },
    );
  });
});
