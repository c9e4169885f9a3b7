import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_MAX_RETRY_AFTER_MS, parseRetryAfter } from './retry-after.ts';

/** A fixed "now" on a whole second, so HTTP-dates (second precision) give exact deltas. */
const NOW = Date.UTC(2025, 5, 1, 12, 0, 0);

describe('parseRetryAfter', () => {
  it('is absent without a header', () => {
    expect(parseRetryAfter(null, NOW)).toEqual({ kind: 'absent' });
    expect(parseRetryAfter(undefined, NOW)).toEqual({ kind: 'absent' });
  });

  it('reads delta-seconds', () => {
    expect(parseRetryAfter('120', NOW)).toEqual({
      kind: 'delay',
      ms: 120_000,
      clamped: false,
      form: 'seconds',
    });
    expect(parseRetryAfter('0', NOW)).toEqual({ kind: 'delay', ms: 0, clamped: false, form: 'seconds' });
    expect(parseRetryAfter(' 7 ', NOW)).toEqual({ kind: 'delay', ms: 7000, clamped: false, form: 'seconds' });
    expect(parseRetryAfter('007', NOW)).toMatchObject({ kind: 'delay', ms: 7000 });
  });

  it('reads an IMF-fixdate in the future as the time until then', () => {
    const at = new Date(NOW + 90_000).toUTCString(); // e.g. "Sun, 01 Jun 2025 12:01:30 GMT"
    expect(at).toMatch(/^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/);
    expect(parseRetryAfter(at, NOW)).toEqual({ kind: 'delay', ms: 90_000, clamped: false, form: 'date' });
  });

  it('reads an HTTP-date in the past as 0 (retry now), marked clamped', () => {
    expect(parseRetryAfter('Sun, 06 Nov 1994 08:49:37 GMT', NOW)).toEqual({
      kind: 'delay',
      ms: 0,
      clamped: true,
      form: 'date',
    });
    // The obsolete RFC 850 form.
    expect(parseRetryAfter('Sunday, 06-Nov-94 08:49:37 GMT', NOW)).toMatchObject({ kind: 'delay', ms: 0 });
  });

  it('clamps a far-future HTTP-date to the maximum', () => {
    const at = new Date(NOW + 3_600_000).toUTCString();
    expect(parseRetryAfter(at, NOW)).toEqual({
      kind: 'delay',
      ms: DEFAULT_MAX_RETRY_AFTER_MS,
      clamped: true,
      form: 'date',
    });
  });

  it('reads epoch timestamps in seconds and in milliseconds', () => {
    expect(parseRetryAfter(String(NOW / 1000 + 30), NOW)).toEqual({
      kind: 'delay',
      ms: 30_000,
      clamped: false,
      form: 'epoch',
    });
    expect(parseRetryAfter(String(NOW + 2500), NOW)).toEqual({
      kind: 'delay',
      ms: 2500,
      clamped: false,
      form: 'epoch',
    });
    expect(parseRetryAfter(String(NOW / 1000 - 30), NOW)).toEqual({
      kind: 'delay',
      ms: 0,
      clamped: true,
      form: 'epoch',
    });
    expect(parseRetryAfter(String(NOW / 1000 + 86_400), NOW)).toMatchObject({
      ms: DEFAULT_MAX_RETRY_AFTER_MS,
      clamped: true,
    });
  });

  it('treats negatives, fractions, words and malformed dates as invalid', () => {
    for (const bad of [
      '',
      '   ',
      '-5',
      '+5',
      '1.5',
      '1e3',
      '0x10',
      'soon',
      'Infinity',
      'NaN',
      '5 seconds',
      'Wed, 99 Foo 2024 99:99:99 GMT',
      'Mon, garbage',
      'GMT',
    ]) {
      expect(parseRetryAfter(bad, NOW), JSON.stringify(bad)).toEqual({ kind: 'invalid' });
    }
  });

  it('clamps huge delta-seconds to the maximum (default and configured)', () => {
    expect(parseRetryAfter('999999999', NOW)).toEqual({
      kind: 'delay',
      ms: DEFAULT_MAX_RETRY_AFTER_MS,
      clamped: true,
      form: 'seconds',
    });
    expect(parseRetryAfter('301', NOW)).toMatchObject({ ms: DEFAULT_MAX_RETRY_AFTER_MS, clamped: true });
    expect(parseRetryAfter('300', NOW)).toMatchObject({ ms: 300_000, clamped: false });
    expect(parseRetryAfter('2', NOW, { maxMs: 1000 })).toEqual({
      kind: 'delay',
      ms: 1000,
      clamped: true,
      form: 'seconds',
    });
    // Digits beyond Number precision are still a (clamped) delay, never Infinity or NaN.
    expect(parseRetryAfter('9'.repeat(400), NOW)).toMatchObject({
      kind: 'delay',
      ms: DEFAULT_MAX_RETRY_AFTER_MS,
    });
  });

  it('property: any header gives absent/invalid or a finite delay within [0, maxMs]', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.stringMatching(/^\d{1,20}$/),
          fc.date({ noInvalidDate: true }).map((d) => d.toUTCString()),
        ),
        fc.integer({ min: 0, max: 10_000_000 }),
        (header, maxMs) => {
          const result = parseRetryAfter(header, NOW, { maxMs });
          if (result.kind === 'delay') {
            expect(Number.isFinite(result.ms)).toBe(true);
            expect(result.ms).toBeGreaterThanOrEqual(0);
            expect(result.ms).toBeLessThanOrEqual(maxMs);
          } else {
            expect(result.kind).toBe('invalid');
          }
        },
      ),
    );
  });
});
