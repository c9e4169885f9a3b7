import { isValidNpi } from '../fhir/npi.ts';
import { isFhirDate } from '../validate/compiled/primitives.ts';
import type { Normaliser, ValidatorName } from './schema.ts';

/** Normalisers applied to string values, in the order the matrix lists them; '' means "absent". */
export function normalise(value: string, steps: readonly Normaliser[]): string | undefined {
  let out: string | undefined = value;
  for (const step of steps) {
    if (out === undefined) return undefined;
    out = NORMALISERS[step](out);
  }
  return out === '' ? undefined : out;
}

const NORMALISERS: Record<Normaliser, (value: string) => string | undefined> = {
  trim: (v) => v.trim(),
  upper: (v) => v.toUpperCase(),
  lower: (v) => v.toLowerCase(),
  'digits-only': (v) => v.replace(/\D+/g, ''),
  'collapse-space': (v) => v.replace(/\s+/g, ' ').trim(),
  'e164-phone': toE164,
  zip5: (v) => /^\d{5}/.exec(v.trim())?.[0],
};

/**
 * A North American phone number as E.164 (+1 and ten digits), or an already international `+…` number;
 * anything else (extensions aside) is not a phone number and becomes absent rather than guessed.
 */
export function toE164(value: string): string | undefined {
  const main = value.split(/\s*(?:x|ext\.?)\s*\d+$/i)[0] ?? value;
  if (main.trim().startsWith('+')) {
    const digits = main.replace(/\D+/g, '');
    return digits.length >= 7 && digits.length <= 15 && digits[0] !== '0' ? `+${digits}` : undefined;
  }
  const digits = main.replace(/\D+/g, '');
  if (digits.length === 10 && /^[2-9]/.test(digits)) return `+1${digits}`;
  if (digits.length === 11 && digits.startsWith('1') && /^[2-9]/.test(digits.slice(1))) return `+${digits}`;
  return undefined;
}

export const VALIDATOR_FNS: Record<ValidatorName, (value: unknown) => boolean> = {
  npi: (v) => typeof v === 'string' && isValidNpi(v),
  'iso-date': (v) => typeof v === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(v) && !Number.isNaN(Date.parse(v)),
  // A FHIR `date`: a year, a year and month, or a whole date, each a real one (`1970`, `1970-05`).
  'fhir-date': (v) => typeof v === 'string' && isFhirDate(v),
  'iso-instant': (v) =>
    typeof v === 'string' &&
    /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?$/.test(v) &&
    !Number.isNaN(Date.parse(v)),
  e164: (v) => typeof v === 'string' && /^\+[1-9]\d{6,14}$/.test(v),
  email: (v) => typeof v === 'string' && /^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(v),
  'external-id': (v) => typeof v === 'string' && v.trim().length > 0 && v.length <= 255,
  'fhir-address': (v) => typeof v === 'object' && v !== null && !Array.isArray(v),
  'fhir-identifier': (v) =>
    typeof v === 'object' && v !== null && typeof (v as { value?: unknown }).value === 'string',
  'fhir-reference': (v) =>
    typeof v === 'object' && v !== null && typeof (v as { reference?: unknown }).reference === 'string',
  year: (v) => typeof v === 'number' && Number.isInteger(v) && v >= 1800 && v <= 3000,
  zip3: (v) => typeof v === 'string' && /^\d{3}$/.test(v),
  reference: (v) => typeof v === 'object' && v !== null && 'resourceType' in v && 'id' in v && 'system' in v,
};
