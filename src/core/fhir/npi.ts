import type { Npi } from '../model/ids.ts';

export const NPI_SYSTEM = 'http://hl7.org/fhir/sid/us-npi';

/**
 * True when `value` is a National Provider Identifier: ten digits whose last digit is the Luhn check
 * digit computed over the card-issuer prefix 80840 and the first nine digits (CMS NPI check-digit rule).
 */
export function isValidNpi(value: string): value is Npi {
  if (!/^\d{10}$/.test(value)) return false;
  const digits = `80840${value}`;
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}
