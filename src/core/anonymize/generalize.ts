/**
 * Generalisation rules of the HIPAA Safe Harbor method (45 CFR 164.514(b)(2)(i)): dates reduced to the
 * year, ages over 89 aggregated into one band, ZIP codes to three digits with restricted prefixes as 000.
 */

/** Ages above this are aggregated ("90 or older"); their birth years are suppressed too. */
export const MAX_DISCLOSED_AGE = 89;

export interface GeneralizedBirth {
  /** The birth year, omitted when unknown or when it would reveal an age over 89. */
  readonly birthYear?: number;
  readonly ageOver89: boolean;
}

/**
 * Reduces a FHIR `date` (YYYY, YYYY-MM or YYYY-MM-DD) to a year, as of `asOf`. When the person could be
 * over 89 on `asOf` (judged on the earliest possible birthday so partial dates never under-report), the
 * year is dropped and only the band is kept.
 */
export function generalizeBirthDate(birthDate: string | undefined, asOf: Date): GeneralizedBirth {
  if (birthDate === undefined) return { ageOver89: false };
  const match = /^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$/.exec(birthDate);
  if (!match) return { ageOver89: false };
  const year = Number(match[1]);
  // Earliest possible birthday for partial dates: an age computed from it is the oldest possible.
  const month = match[2] === undefined ? 1 : Number(match[2]);
  const day = match[3] === undefined ? 1 : Number(match[3]);
  const age = ageOn(year, month, day, asOf);
  if (age > MAX_DISCLOSED_AGE) return { ageOver89: true };
  return { birthYear: year, ageOver89: false };
}

function ageOn(year: number, month: number, day: number, asOf: Date): number {
  const y = asOf.getUTCFullYear();
  const m = asOf.getUTCMonth() + 1;
  const d = asOf.getUTCDate();
  let age = y - year;
  if (m < month || (m === month && d < day)) age--;
  return age;
}

/**
 * The first three digits of a US ZIP code (5 or 9 digits, with or without the hyphen), `000` when the
 * prefix is restricted, undefined when the value is not a US ZIP code or the country is not the US.
 */
export function generalizeZip(
  postalCode: string | undefined,
  country: string | undefined,
  restricted: ReadonlySet<string>,
): string | undefined {
  if (postalCode === undefined) return undefined;
  if (country !== undefined && !/^(us|usa|united states( of america)?)$/i.test(country.trim()))
    return undefined;
  const match = /^(\d{3})\d{2}(?:-?\d{4})?$/.exec(postalCode.trim());
  if (!match) return undefined;
  const prefix = match[1] as string;
  return restricted.has(prefix) ? '000' : prefix;
}

/**
 * The age band holding `age`: bands of `width` years from 0, the last band below 90 cut at 89, and every
 * age over 89 in one open band from 90 (Safe Harbor). Undefined for a negative or non-finite age.
 */
export function ageBandBounds(age: number, width = 5): { low: number; high?: number } | undefined {
  if (!Number.isFinite(age) || age < 0 || !Number.isInteger(width) || width < 1) return undefined;
  const years = Math.floor(age);
  if (years > MAX_DISCLOSED_AGE) return { low: MAX_DISCLOSED_AGE + 1 };
  const low = Math.floor(years / width) * width;
  return { low, high: Math.min(low + width - 1, MAX_DISCLOSED_AGE) };
}

/** The label of an age band for released datasets: `45-49`, `7` (width 1) or `90+`. */
export function ageBand(age: number, width = 5): string | undefined {
  const band = ageBandBounds(age, width);
  if (!band) return undefined;
  if (band.high === undefined) return `${band.low}+`;
  return band.low === band.high ? String(band.low) : `${band.low}-${band.high}`;
}

/** Whole years between a FHIR birth date and `asOf` (the oldest possible age for partial dates). */
export function ageInYears(birthDate: string, asOf: Date): number | undefined {
  const match = /^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?/.exec(birthDate);
  if (!match) return undefined;
  const month = match[2] === undefined ? 1 : Number(match[2]);
  const day = match[3] === undefined ? 1 : Number(match[3]);
  return ageOn(Number(match[1]), month, day, asOf);
}
