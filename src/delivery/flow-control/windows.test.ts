import { describe, expect, it } from 'vitest';
import type { SchedulingWindow } from './policy.ts';
import { isInWindow, isOpen, localTimeOfDayMs, msUntilOpen } from './windows.ts';

const night: SchedulingWindow = { start: '22:00', end: '06:00', timeZone: 'Europe/Berlin' };
const lunch: SchedulingWindow = { start: '12:00', end: '13:30', timeZone: 'America/New_York' };
const at = (iso: string): number => Date.parse(iso);

describe('scheduling windows', () => {
  it('reads local time of day in the named zone, DST included', () => {
    // 21:30 UTC is 22:30 in Berlin in winter (CET) and 23:30 in summer (CEST).
    expect(localTimeOfDayMs(at('2025-01-15T21:30:00Z'), 'Europe/Berlin')).toBe((22 * 60 + 30) * 60_000);
    expect(localTimeOfDayMs(at('2025-07-15T21:30:00.250Z'), 'Europe/Berlin')).toBe(
      (23 * 60 + 30) * 60_000 + 250,
    );
  });

  it('handles a window across midnight, start inclusive and end exclusive', () => {
    expect(isInWindow(night, at('2025-01-15T20:59:59Z'))).toBe(false); // 21:59:59 local
    expect(isInWindow(night, at('2025-01-15T21:00:00Z'))).toBe(true); // 22:00 local
    expect(isInWindow(night, at('2025-01-16T02:00:00Z'))).toBe(true); // 03:00 local
    expect(isInWindow(night, at('2025-01-16T04:59:59Z'))).toBe(true); // 05:59:59 local
    expect(isInWindow(night, at('2025-01-16T05:00:00Z'))).toBe(false); // 06:00 local
    expect(isInWindow(night, at('2025-01-15T11:00:00Z'))).toBe(false); // noon
  });

  it('handles a window within a day in another zone', () => {
    expect(isInWindow(lunch, at('2025-01-15T17:00:00Z'))).toBe(true); // 12:00 EST
    expect(isInWindow(lunch, at('2025-01-15T18:30:00Z'))).toBe(false); // 13:30 EST
    expect(isInWindow(lunch, at('2025-07-15T16:15:00Z'))).toBe(true); // 12:15 EDT
  });

  it('is open when any window is, and always when there are none', () => {
    expect(isOpen(undefined, at('2025-01-15T11:00:00Z'))).toBe(true);
    expect(isOpen([], at('2025-01-15T11:00:00Z'))).toBe(true);
    expect(isOpen([night, lunch], at('2025-01-15T17:15:00Z'))).toBe(true);
    expect(isOpen([night, lunch], at('2025-01-15T15:00:00Z'))).toBe(false);
  });

  it('says how long until the earliest window opens', () => {
    expect(msUntilOpen([night], at('2025-01-15T21:30:00Z'))).toBe(0);
    // 12:00 Berlin → 22:00 Berlin is 10 h.
    expect(msUntilOpen([night], at('2025-01-15T11:00:00Z'))).toBe(10 * 3_600_000);
    // 10:00 EST: lunch in 2 h comes before the Berlin night (22:00 CET = 16:00 EST) in 6 h.
    expect(msUntilOpen([night, lunch], at('2025-01-15T15:00:00Z'))).toBe(2 * 3_600_000);
    expect(msUntilOpen([night], at('2025-01-15T11:00:00.500Z'))).toBe(10 * 3_600_000 - 500);
  });
});
