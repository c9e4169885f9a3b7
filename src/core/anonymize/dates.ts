/**
 * FHIR `date`, `dateTime` and `instant` values as calendar parts, so they can be shifted by whole days or
 * cut to a year or month without going through a time zone (a local date stays the same local date).
 */

export interface FhirDateParts {
  readonly year: number;
  readonly month?: number;
  readonly day?: number;
  /** Everything after the day (`T10:15:00+02:00`), or '' for a date. */
  readonly time: string;
}

const DATE = /^(\d{4})(?:-(\d{2})(?:-(\d{2})(T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)?)?)?$/;

export function parseFhirDate(value: string): FhirDateParts | undefined {
  const match = DATE.exec(value);
  if (!match) return undefined;
  const year = Number(match[1]);
  if (match[2] === undefined) return { year, time: '' };
  const month = Number(match[2]);
  if (month < 1 || month > 12) return undefined;
  if (match[3] === undefined) return { year, month, time: '' };
  const day = Number(match[3]);
  if (day < 1 || day > daysInMonth(year, month)) return undefined;
  return { year, month, day, time: match[4] ?? '' };
}

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

const pad = (n: number, width = 2): string => String(n).padStart(width, '0');

/** Days since 1970-01-01 of a full-precision date (the local calendar day), or undefined. */
export function dayNumber(value: string): number | undefined {
  const parts = parseFhirDate(value);
  if (parts?.month === undefined || parts.day === undefined) return undefined;
  return Date.UTC(parts.year, parts.month - 1, parts.day) / 86_400_000;
}

/**
 * Moves a date by whole days, keeping its time of day and offset, so intervals between a person's shifted
 * dates equal the original intervals. A year-only value is returned unchanged (it has no day to move); a
 * year-month value is cut to its year, since shifting it would be ambiguous and keeping it would reveal
 * the month. Undefined for a value that is not a FHIR date.
 */
export function shiftFhirDate(value: string, days: number): string | undefined {
  const parts = parseFhirDate(value);
  if (!parts) return undefined;
  if (parts.month === undefined) return pad(parts.year, 4);
  if (parts.day === undefined) return pad(parts.year, 4);
  const shifted = new Date(Date.UTC(parts.year, parts.month - 1, parts.day) + days * 86_400_000);
  const date = `${pad(shifted.getUTCFullYear(), 4)}-${pad(shifted.getUTCMonth() + 1)}-${pad(shifted.getUTCDate())}`;
  return date + parts.time;
}

export type DateGranularity = 'year' | 'month';

/**
 * Cuts a date to its year or month. An `instant` must keep full precision, so it becomes the first
 * instant of the period in UTC. Undefined for a value that is not a FHIR date.
 */
export function truncateFhirDate(
  value: string,
  granularity: DateGranularity,
  type: string,
): string | undefined {
  const parts = parseFhirDate(value);
  if (!parts) return undefined;
  const year = pad(parts.year, 4);
  const month = granularity === 'month' && parts.month !== undefined ? pad(parts.month) : undefined;
  if (type === 'instant') return `${year}-${month ?? '01'}-01T00:00:00Z`;
  return month === undefined ? year : `${year}-${month}`;
}

export const DATE_TYPES: ReadonlySet<string> = new Set(['date', 'dateTime', 'instant']);
