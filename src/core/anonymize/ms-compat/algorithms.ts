import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { resourceTypes } from './resource-types.ts';

/**
 * The value algorithms of Microsoft's FHIR Tools for Anonymization, byte for byte (see README.md for the
 * upstream files): HMAC-SHA256 crypto-hash with the reference id rewrite, AES-CBC encryption with a
 * random IV, the key-derived date-shift offset, and the date/ZIP partial redaction rules.
 */

/** `CryptoHashUtility.ComputeHmacSHA256Hash`: HMAC-SHA256, key and input as UTF-8, lower-case hex. */
export function cryptoHash(input: string, key: string): string {
  if (input === '') return input;
  return createHmac('sha256', Buffer.from(key, 'utf8')).update(input, 'utf8').digest('hex');
}

// ReferenceUtility: literal references (absolute or relative URL, urn:oid, urn:uuid) have only their id
// transformed; the same regular expressions as upstream, over the R4 resource type names.
// Built on first use: the resource type list is read from the definitions, which takes a moment.
let literalReference: RegExp[] | undefined;
const literalReferences = (): RegExp[] => {
  literalReference ??= [
    new RegExp(
      `^(?<prefix>((http|https)://([A-Za-z0-9\\\\\\/\\.\\:\\%\\$])*)?(${resourceTypes().join('|')})\\/)(?<id>[A-Za-z0-9\\-\\.]{1,64})(?<suffix>\\/_history\\/[A-Za-z0-9\\-\\.]{1,64})?$`,
    ),
    ...OTHER_REFERENCES,
  ];
  return literalReference;
};
const OTHER_REFERENCES = [
  /^(?<prefix>urn:oid:)(?<id>[0-2](\.(0|[1-9][0-9]*))+)(?<suffix>)$/,
  /^(?<prefix>urn:uuid:)(?<id>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(?<suffix>)$/,
];

/** `ReferenceUtility.TransformReferenceId`: `#x` and literal references keep everything but the id. */
export function transformReferenceId(reference: string, transform: (id: string) => string): string {
  if (reference === '') return reference;
  if (reference.startsWith('#')) return `#${transform(reference.slice(1))}`;
  for (const regex of literalReferences()) {
    const match = regex.exec(reference);
    if (match?.groups) {
      const { prefix = '', id = '', suffix = '' } = match.groups;
      return `${prefix}${transform(id)}${suffix}`;
    }
  }
  return transform(reference);
}

const AES_IV_BYTES = 16;

/** AES key sizes upstream accepts: the UTF-8 bytes of `encryptKey` must be 16, 24 or 32. */
export function aesAlgorithm(key: Buffer): 'aes-128-cbc' | 'aes-192-cbc' | 'aes-256-cbc' | undefined {
  if (key.length === 16) return 'aes-128-cbc';
  if (key.length === 24) return 'aes-192-cbc';
  if (key.length === 32) return 'aes-256-cbc';
  return undefined;
}

/** `EncryptUtility.EncryptTextToBase64WithAes`: AES-CBC, PKCS7, random IV prepended, Base64. */
export function encryptToBase64(plainText: string, key: string): string {
  if (plainText === '') return plainText;
  const keyBytes = Buffer.from(key, 'utf8');
  const algorithm = aesAlgorithm(keyBytes);
  if (!algorithm) throw new RangeError('encryptKey must be 16, 24 or 32 UTF-8 bytes');
  const iv = randomBytes(AES_IV_BYTES);
  const cipher = createCipheriv(algorithm, keyBytes, iv);
  return Buffer.concat([iv, cipher.update(plainText, 'utf8'), cipher.final()]).toString('base64');
}

/** `EncryptUtility.DecryptTextFromBase64WithAes`, for recipients that hold the key (and for tests). */
export function decryptFromBase64(base64Text: string, key: string): string {
  if (base64Text === '') return base64Text;
  const data = Buffer.from(base64Text, 'base64');
  if (data.length < AES_IV_BYTES) throw new RangeError('ciphertext shorter than the IV');
  const keyBytes = Buffer.from(key, 'utf8');
  const algorithm = aesAlgorithm(keyBytes);
  if (!algorithm) throw new RangeError('encryptKey must be 16, 24 or 32 UTF-8 bytes');
  const decipher = createDecipheriv(algorithm, keyBytes, data.subarray(0, AES_IV_BYTES));
  return Buffer.concat([decipher.update(data.subarray(AES_IV_BYTES)), decipher.final()]).toString('utf8');
}

const DATE_SHIFT_SEED = 131;
const DATE_SHIFT_RANGE = 50;

/**
 * `DateTimeUtility.GetDateShiftValue`: a polynomial over the UTF-8 bytes of prefix + key, modulo 101,
 * minus 50 — an offset in [-50, 50] days, the same for every date with the same prefix.
 */
export function dateShiftOffset(prefix: string, key: string): number {
  let offset = 0;
  for (const byte of Buffer.from(prefix + key, 'utf8')) {
    offset = (offset * DATE_SHIFT_SEED + byte) % (2 * DATE_SHIFT_RANGE + 1);
  }
  return offset - DATE_SHIFT_RANGE;
}

// The FHIR date and dateTime patterns upstream matches with (not anchored, as upstream). Groups: 1 year,
// 5 month, 7 day, 8 the time part with its zone.
const DATE_REGEX =
  /([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?/;
const DATE_TIME_REGEX =
  /([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?/;
const TIME_REGEX = /([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?/;
const AGE_THRESHOLD = 89;

export type DateKind = 'date' | 'dateTime' | 'instant';

interface DateParts {
  readonly year?: string;
  readonly month?: string;
  readonly day?: string;
  readonly time?: string;
}

function partsOf(value: string, kind: DateKind): DateParts {
  const m = (kind === 'date' ? DATE_REGEX : DATE_TIME_REGEX).exec(value);
  if (!m) return {};
  return {
    ...(m[1] === undefined ? {} : { year: m[1] }),
    ...(m[5] === undefined ? {} : { month: m[5] }),
    ...(m[7] === undefined ? {} : { day: m[7] }),
    ...(kind !== 'date' && m[8] !== undefined ? { time: m[8] } : {}),
  };
}

/** `IndicateAgeOverThreshold`: whether someone born on the date would be over 89 on `now`'s calendar day. */
function overThreshold(parts: DateParts, now: Date): boolean {
  const year = Number(parts.year);
  const month = parts.month === undefined ? 1 : Number(parts.month);
  const day = parts.day === undefined ? 1 : Number(parts.day);
  const nowMonth = now.getUTCMonth() + 1;
  const nowDay = now.getUTCDate();
  const age =
    now.getUTCFullYear() - year - (nowMonth < month || (nowMonth === month && nowDay < day) ? 1 : 0);
  return age > AGE_THRESHOLD;
}

/** `RedactDateNode` / `RedactDateTimeAndInstantNode`: null, or with partial dates the year unless over 89. */
export function redactDate(value: string, kind: DateKind, partial: boolean, now: Date): string | null {
  if (!partial) return null;
  const parts = partsOf(value, kind);
  if (parts.year === undefined) return value;
  return overThreshold(parts, now) ? null : parts.year;
}

export type ShiftResult =
  | { readonly kind: 'shifted'; readonly value: string }
  | { readonly kind: 'redacted'; readonly value: string | null };

/**
 * `ShiftDateNode` / `ShiftDateTimeAndInstantNode`: a value with a day (and not over 89) moves by the
 * offset, its time of day becomes zeros with the zone kept; anything else is redacted as above.
 */
export function shiftDate(
  value: string,
  kind: DateKind,
  offset: () => number,
  partial: boolean,
  now: Date,
): ShiftResult {
  const parts = partsOf(value, kind);
  if (parts.day === undefined || overThreshold(parts, now)) {
    return { kind: 'redacted', value: redactDate(value, kind, partial, now) };
  }
  const date = addDays(Number(parts.year), Number(parts.month), Number(parts.day), offset());
  if (parts.time === undefined) return { kind: 'shifted', value: date };
  let timestamp = parts.time;
  const time = TIME_REGEX.exec(timestamp)?.[0];
  if (time !== undefined) timestamp = timestamp.split(time).join(time.replace(/\d/g, '0'));
  return { kind: 'shifted', value: `${date}${timestamp}` };
}

function addDays(year: number, month: number, day: number, days: number): string {
  const d = new Date(Date.UTC(2000, month - 1, day));
  d.setUTCFullYear(year);
  d.setUTCDate(d.getUTCDate() + days);
  const y = String(d.getUTCFullYear()).padStart(4, '0');
  return `${y}-${String(d.getUTCMonth() + 1).padStart(2, '0')}-${String(d.getUTCDate()).padStart(2, '0')}`;
}

/** `RedactAgeDecimalNode`: with partial ages only ages over 89 go; the value must be a whole number. */
export function redactAge(value: string, partial: boolean): string | null {
  if (!partial) return null;
  if (!/^[+-]?\d+$/.test(value.trim())) throw new RangeError('age value is not an integer');
  return Number.parseInt(value, 10) > AGE_THRESHOLD ? null : value;
}

/**
 * `PostalCodeUtility.RedactPostalCode` with partial ZIP codes: a restricted prefix turns every digit to 0,
 * otherwise the first three characters stay and later digits become 0 (`98052-1234` → `98000-0000`).
 */
export function partialZip(value: string, restricted: readonly string[]): string {
  if (restricted.some((prefix) => value.startsWith(prefix))) return value.replace(/\d/g, '0');
  if (value.length >= 3) return `${value.slice(0, 3)}${value.slice(3).replace(/\d/g, '0')}`;
  return value;
}

/** .NET `decimal.Round(value, digits)`: banker's rounding (midpoint to even). */
export function roundHalfEven(value: number, digits: number): number {
  const factor = 10 ** digits;
  const scaled = value * factor;
  const floor = Math.floor(scaled);
  const diff = scaled - floor;
  const epsilon = 1e-9;
  let rounded: number;
  if (Math.abs(diff - 0.5) < epsilon) rounded = floor % 2 === 0 ? floor : floor + 1;
  else rounded = Math.round(scaled);
  return Number((rounded / factor).toFixed(digits));
}
