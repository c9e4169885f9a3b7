/**
 * FHIR date/dateTime/instant parsing with precision. A FHIR value stands for the whole interval its
 * precision names ("2016" is the year, "2016-10-10" the day), so each value parses to `[start, end)`:
 * a period end uses `end` (in force through the end date), a period start or a recorded time uses `start`.
 * Dates without a time zone are read as UTC; a time of day without a zone is rejected (FHIR requires one).
 */
export interface TimeRange {
  readonly start: number;
  readonly end: number;
}

const FHIR_TIME =
  /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:?\d{2}))?)?)?$/;

export function parseFhirTime(value: unknown): TimeRange | undefined {
  if (typeof value !== 'string') return undefined;
  const m = FHIR_TIME.exec(value.trim());
  if (!m) return undefined;
  const [, ys, mos, ds, hs, mis, ss, frac, zone] = m;
  const year = Number(ys);
  if (year < 1) return undefined;
  if (mos === undefined) return { start: utc(year, 0, 1), end: utc(year + 1, 0, 1) };
  const month = Number(mos);
  if (month < 1 || month > 12) return undefined;
  if (ds === undefined) return { start: utc(year, month - 1, 1), end: utc(year, month, 1) };
  const day = Number(ds);
  const dayStart = utc(year, month - 1, day);
  if (day < 1 || new Date(dayStart).getUTCDate() !== day) return undefined;
  if (hs === undefined) return { start: dayStart, end: utc(year, month - 1, day + 1) };
  const hour = Number(hs);
  const minute = Number(mis);
  const second = ss === undefined ? 0 : Number(ss);
  if (hour > 23 || minute > 59 || second > 59 || zone === undefined) return undefined;
  const digits = frac ?? '';
  const millis = digits === '' ? 0 : Number(digits.slice(0, 3).padEnd(3, '0'));
  const local = dayStart + ((hour * 60 + minute) * 60 + second) * 1000 + millis;
  const start = local - zoneOffsetMs(zone);
  const width =
    ss === undefined ? 60_000 : digits === '' ? 1000 : digits.length >= 3 ? 1 : 10 ** (3 - digits.length);
  return { start, end: start + width };
}

function utc(year: number, monthIndex: number, day: number): number {
  const d = new Date(0);
  d.setUTCFullYear(year, monthIndex, day);
  d.setUTCHours(0, 0, 0, 0);
  return d.getTime();
}

function zoneOffsetMs(zone: string): number {
  if (zone === 'Z') return 0;
  const sign = zone.startsWith('-') ? -1 : 1;
  const digits = zone.slice(1).replace(':', '');
  return sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2, 4))) * 60_000;
}

/** True when `at` lies in the half-open period. */
export function covers(period: { readonly start?: number; readonly end?: number }, at: number): boolean {
  return (period.start === undefined || at >= period.start) && (period.end === undefined || at < period.end);
}
