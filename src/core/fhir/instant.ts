import { parseFhirTime } from '../consent/time.ts';

/**
 * Source stamps (`meta.lastUpdated`) come in any zone and precision: `2026-11-01T10:00:00+05:00`,
 * `…T05:00:00Z`, `…T05:00:00.120Z`. As text they sort wrongly (a `+05:00` morning sorts after a `Z`
 * afternoon, `…:00Z` after `…:00.120Z`), so stamps are compared as times, and stored as UTC text with
 * milliseconds, which sorts as it compares.
 */

/** Epoch milliseconds of a FHIR instant (or dateTime: its start), or undefined when unreadable. */
export function instantMs(value: unknown): number | undefined {
  return parseFhirTime(value)?.start;
}

/** The instant as UTC text with milliseconds (`2026-11-01T05:00:00.000Z`), or undefined when unreadable. */
export function utcInstant(value: unknown): string | undefined {
  const ms = instantMs(value);
  return ms === undefined ? undefined : new Date(ms).toISOString();
}

/** True when both stamps are readable and `a` is strictly earlier than `b`. */
export function isEarlierStamp(a: unknown, b: unknown): boolean {
  const x = instantMs(a);
  const y = instantMs(b);
  return x !== undefined && y !== undefined && x < y;
}

/**
 * How far ahead of the local clock a source's `meta.lastUpdated` may be before it is treated as clock
 * skew (`source.clockSkewSeconds`): one default for the record stages and the consent stream.
 */
export const DEFAULT_CLOCK_SKEW_SECONDS = 300;
