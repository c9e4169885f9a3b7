import { type SfError, sfError } from './errors.ts';
import { normalizeId } from './ids.ts';
import type { FieldSpec } from './schema.ts';

/**
 * Field values: how JSON input is turned into the stored form of each field type, and how stored
 * values are written back out. Stored forms: text types as strings, checkboxes as booleans, numbers as
 * numbers, dates as `YYYY-MM-DD`, date-times as `YYYY-MM-DDTHH:mm:ss.SSS+0000` (what Salesforce
 * returns), references as 18-character ids.
 */
export type StoredValue = string | number | boolean | null;
export type StoredFields = Record<string, StoredValue>;

/**
 * A conversion failure. `parse` failures are deserialisation errors (JSON_PARSER_ERROR) that fail a
 * whole request, as Salesforce's JSON reader does; `record` failures belong to one record.
 */
export type CoerceResult =
  | { readonly ok: true; readonly value: StoredValue }
  | { readonly ok: false; readonly phase: 'parse' | 'record'; readonly error: SfError };

const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const DATETIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?$/;
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

function jsonKind(value: unknown): string {
  if (Array.isArray(value)) return 'START_ARRAY';
  if (typeof value === 'object') return 'START_OBJECT';
  if (typeof value === 'string') return 'VALUE_STRING';
  if (typeof value === 'boolean') return value ? 'VALUE_TRUE' : 'VALUE_FALSE';
  return Number.isInteger(value) ? 'VALUE_NUMBER_INT' : 'VALUE_NUMBER_FLOAT';
}

const parserError = (field: FieldSpec, target: string, value: unknown): CoerceResult => ({
  ok: false,
  phase: 'parse',
  error: sfError(
    'JSON_PARSER_ERROR',
    `Cannot deserialize instance of ${target} from ${jsonKind(value)} value for field ${field.name} or request may be missing a required field`,
  ),
});

const wrongType = (field: FieldSpec): CoerceResult => ({
  ok: false,
  phase: 'record',
  error: sfError('INVALID_TYPE_ON_FIELD_IN_RECORD', `${field.label}: value not of required type`, [
    field.name,
  ]),
});

const ok = (value: StoredValue): CoerceResult => ({ ok: true, value });

/** Converts one JSON value for `field` into its stored form (no length, picklist or existence checks). */
export function coerceValue(field: FieldSpec, raw: unknown): CoerceResult {
  const type = field.type;
  if (raw === null || raw === undefined || (raw === '' && type.kind !== 'boolean')) {
    return ok(type.kind === 'boolean' ? false : null);
  }
  if (typeof raw === 'object') return parserError(field, type.kind, raw);
  switch (type.kind) {
    case 'string':
    case 'textarea':
    case 'email':
    case 'phone':
    case 'url':
    case 'picklist':
      return ok(String(raw));
    case 'boolean':
      if (typeof raw === 'boolean') return ok(raw);
      if (raw === '') return ok(false);
      if (typeof raw === 'string' && /^(true|false)$/i.test(raw)) return ok(raw.toLowerCase() === 'true');
      return parserError(field, 'boolean', raw);
    case 'int':
    case 'double': {
      const n =
        typeof raw === 'number'
          ? raw
          : typeof raw === 'string' && /^-?\d+(\.\d+)?$/.test(raw)
            ? Number(raw)
            : NaN;
      if (Number.isNaN(n)) return parserError(field, type.kind, raw);
      if (type.kind === 'int' && !Number.isInteger(n)) return wrongType(field);
      return ok(n);
    }
    case 'date': {
      if (typeof raw !== 'string') return wrongType(field);
      const date = parseDate(raw);
      return date === undefined ? parserError(field, 'date', raw) : ok(date);
    }
    case 'datetime': {
      if (typeof raw !== 'string') return wrongType(field);
      const ms = parseDatetime(raw);
      return ms === undefined ? parserError(field, 'datetime', raw) : ok(formatDatetime(ms));
    }
    case 'id':
    case 'reference':
    case 'recordType': {
      if (typeof raw !== 'string') return wrongType(field);
      const id = normalizeId(raw);
      if (id === undefined) {
        return {
          ok: false,
          phase: 'record',
          error: sfError('MALFORMED_ID', `${field.label}: id value of incorrect type`, [field.name]),
        };
      }
      return ok(id);
    }
  }
}

/** The longest text a field holds, or undefined for non-text fields. */
export function maxLength(field: FieldSpec): number | undefined {
  switch (field.type.kind) {
    case 'string':
    case 'textarea':
      return field.type.length;
    case 'email':
      return 80;
    case 'phone':
      return 40;
    case 'url':
    case 'picklist':
      return 255;
    default:
      return undefined;
  }
}

/**
 * Checks a coerced, non-null value against the field's limits: length, restricted picklist, e-mail
 * format, number range. Returns the (possibly rounded) value or an error.
 */
export function checkValue(field: FieldSpec, value: StoredValue): CoerceResult {
  if (value === null) return ok(value);
  const limit = maxLength(field);
  if (limit !== undefined && typeof value === 'string' && value.length > limit) {
    return {
      ok: false,
      phase: 'record',
      error: sfError('STRING_TOO_LONG', `${field.label}: data value too large (max length=${limit})`, [
        field.name,
      ]),
    };
  }
  const type = field.type;
  if (type.kind === 'picklist' && type.restricted && !type.values.includes(String(value))) {
    return {
      ok: false,
      phase: 'record',
      error: sfError(
        'INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST',
        `${field.label}: bad value for restricted picklist field`,
        [field.name],
      ),
    };
  }
  if (type.kind === 'email' && !EMAIL.test(String(value))) {
    return {
      ok: false,
      phase: 'record',
      error: sfError('INVALID_EMAIL_ADDRESS', `${field.label}: invalid email address`, [field.name]),
    };
  }
  if ((type.kind === 'double' || type.kind === 'int') && typeof value === 'number') {
    const scale = type.kind === 'double' ? type.scale : 0;
    const integerDigits = type.kind === 'double' ? type.precision - type.scale : type.digits;
    const rounded = Number(value.toFixed(scale));
    if (Math.abs(rounded) >= 10 ** integerDigits) {
      return {
        ok: false,
        phase: 'record',
        error: sfError(
          'NUMBER_OUTSIDE_VALID_RANGE',
          `${field.label}: value outside of valid range on numeric field`,
          [field.name],
        ),
      };
    }
    return ok(rounded);
  }
  return ok(value);
}

/** `YYYY-MM-DD` when the text is a real calendar date. */
export function parseDate(text: string): string | undefined {
  const m = DATE.exec(text);
  if (!m) return undefined;
  const ms = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  return new Date(ms).toISOString().slice(0, 10) === text ? text : undefined;
}

/** Milliseconds since the epoch for an ISO 8601 date-time (no zone means UTC). */
export function parseDatetime(text: string): number | undefined {
  const m = DATETIME.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s = '0', frac = '', zone = 'Z'] = m;
  const base = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
  const check = new Date(base);
  if (
    check.getUTCFullYear() !== Number(y) ||
    check.getUTCMonth() !== Number(mo) - 1 ||
    check.getUTCDate() !== Number(d) ||
    Number(h) > 23 ||
    Number(mi) > 59 ||
    Number(s) > 59
  ) {
    return undefined;
  }
  const millis = frac ? Math.floor(Number(`0${frac}`) * 1000) : 0;
  let offsetMinutes = 0;
  if (zone !== 'Z') {
    const digits = zone.replace(':', '');
    const sign = digits.startsWith('-') ? -1 : 1;
    offsetMinutes = sign * (Number(digits.slice(1, 3)) * 60 + Number(digits.slice(3, 5)));
  }
  return base + millis - offsetMinutes * 60_000;
}

/** The Salesforce wire form of a date-time: `2024-01-15T10:30:00.000+0000`. */
export function formatDatetime(ms: number): string {
  return new Date(ms).toISOString().replace('Z', '+0000');
}

/** The stored value as the key index holds it: case-folded unless the field is case-sensitive. */
export function keyValue(field: FieldSpec, value: StoredValue): string | undefined {
  if (value === null) return undefined;
  const text = String(value);
  const kind = field.type.kind;
  const isId = kind === 'id' || kind === 'reference' || kind === 'recordType';
  return field.caseSensitive || isId ? text : text.toLowerCase();
}
