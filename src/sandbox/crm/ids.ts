/**
 * Salesforce record ids: 15 case-sensitive base-62 characters (a 3-character key prefix naming the
 * object, then the record part) plus, in the 18-character form the API returns, a 3-character
 * checksum that encodes the case of the first 15 so the id survives case-insensitive systems.
 */

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const SUFFIX_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ012345';
const ID15 = /^[0-9A-Za-z]{15}$/;
const ID18 = /^[0-9A-Za-z]{15}[A-Z0-5]{3}$/;

/** The 18-character form of a 15-character id. */
export function toId18(id15: string): string {
  if (!ID15.test(id15))
    throw new RangeError('A 15-character Salesforce id is made of 15 base-62 characters.');
  let suffix = '';
  for (let chunk = 0; chunk < 3; chunk++) {
    let bits = 0;
    for (let i = 0; i < 5; i++) {
      const c = id15.charAt(chunk * 5 + i);
      if (c >= 'A' && c <= 'Z') bits |= 1 << i;
    }
    suffix += SUFFIX_ALPHABET.charAt(bits);
  }
  return id15 + suffix;
}

/**
 * The canonical 18-character id for a 15- or 18-character id, or undefined when the text is not a
 * well-formed id (an 18-character id whose checksum does not match its first 15 characters is refused).
 */
export function normalizeId(text: string): string | undefined {
  if (ID15.test(text)) return toId18(text);
  if (ID18.test(text)) {
    const canonical = toId18(text.slice(0, 15));
    return canonical === text ? canonical : undefined;
  }
  return undefined;
}

export function keyPrefixOf(id: string): string {
  return id.slice(0, 3);
}

/** The id of the `sequence`-th record with the given key prefix (pod `8d`, like a real org's ids). */
export function recordId(keyPrefix: string, sequence: number): string {
  if (!/^[0-9A-Za-z]{3}$/.test(keyPrefix)) throw new RangeError('A key prefix has 3 base-62 characters.');
  if (!Number.isSafeInteger(sequence) || sequence < 0)
    throw new RangeError('A sequence is a non-negative integer.');
  let n = sequence;
  let digits = '';
  do {
    digits = BASE62.charAt(n % 62) + digits;
    n = Math.floor(n / 62);
  } while (n > 0);
  if (digits.length > 9) throw new RangeError('The id space of this key prefix is exhausted.');
  return toId18(`${keyPrefix}8d0${digits.padStart(9, '0')}`);
}
