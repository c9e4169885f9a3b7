import type { ValidationContext } from './context.ts';

/**
 * Checkers for the 20 FHIR R4 primitive types (https://hl7.org/fhir/R4/datatypes.html). Each returns
 * true when the value is valid, so a caller can go on to check a terminology binding. The patterns are
 * the R4 ones, written out by hand where the published regex is wrong or looser than the prose (base64
 * without `/`, code with inner tabs, strings that forbid every non-ASCII space); messages never quote
 * the value.
 */
export type PrimitiveCheck = (value: unknown, ctx: ValidationContext) => boolean;

const YEAR = '([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)';
const MONTH = '(0[1-9]|1[0-2])';
const DAY = '(0[1-9]|[1-2][0-9]|3[0-1])';
const TIME = '([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]+)?';
const ZONE = '(Z|(\\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))';

const DATE_RE = new RegExp(`^${YEAR}(-${MONTH}(-${DAY})?)?$`);
/** R4: a time needs seconds and a time zone (stricter than medplum, which accepts `T10:00`). */
const DATE_TIME_RE = new RegExp(`^${YEAR}(-${MONTH}(-${DAY}(T${TIME}${ZONE})?)?)?$`);
const INSTANT_RE = new RegExp(`^${YEAR}-${MONTH}-${DAY}T${TIME}${ZONE}$`);
const TIME_RE = new RegExp(`^${TIME}$`);
const ID_RE = /^[A-Za-z0-9\-.]{1,64}$/;
const LONG_ID_RE = /^[A-Za-z0-9\-.]+$/;
const URI_RE = /^\S+$/;
const CODE_RE = /^[^\s]+( [^\s]+)*$/;
const OID_RE = /^urn:oid:[0-2](\.(0|[1-9][0-9]*))+$/;
const UUID_RE = /^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Characters below U+0020 other than tab, CR and LF are forbidden in every string type. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const CONTROL_RE = /[\u0000-\u0008\u000B\u000C\u000E-\u001F]/;
const NON_SPACE_RE = /\S/;
const BASE64_RE = /^[A-Za-z0-9+/]*={0,2}$/;
const WHITESPACE_RE = /\s+/g;
const MAX_STRING = 1024 * 1024;
const INT_MIN = -2_147_483_648;
const INT_MAX = 2_147_483_647;

function notString(value: unknown, ctx: ValidationContext): boolean {
  if (typeof value === 'string') return false;
  ctx.error('VAL_TYPE', `expected a JSON string, found ${jsonKind(value)}`);
  return true;
}

/** Checks every string-based type share: non-empty, not only whitespace, no control characters, ≤ 1 MiB. */
function stringBasics(value: string, ctx: ValidationContext): boolean {
  if (value.length === 0) {
    ctx.error('VAL_EMPTY', 'empty string (FHIR forbids empty values)');
    return false;
  }
  if (!NON_SPACE_RE.test(value)) {
    ctx.error('VAL_EMPTY', 'string has only whitespace');
    return false;
  }
  if (value.length > MAX_STRING) {
    ctx.error('VAL_FORMAT', 'string longer than 1 MiB');
    return false;
  }
  if (CONTROL_RE.test(value)) {
    ctx.error('VAL_FORMAT', 'string contains control characters');
    return false;
  }
  return true;
}

function patterned(type: string, re: RegExp, calendar = false): PrimitiveCheck {
  const message = `invalid ${type} format`;
  return (value, ctx) => {
    if (notString(value, ctx)) return false;
    const s = value as string;
    if (s.length === 0) {
      ctx.error('VAL_EMPTY', 'empty string (FHIR forbids empty values)');
      return false;
    }
    if (!re.test(s)) {
      ctx.error('VAL_FORMAT', message);
      return false;
    }
    if (calendar && s.length >= 10 && !calendarDayExists(s)) {
      ctx.error('VAL_FORMAT', `invalid ${type}: the day does not exist in that month`);
      return false;
    }
    return true;
  };
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** A FHIR R4 `date`: a year, a year and month, or a whole date on a day that exists. */
export function isFhirDate(s: string): boolean {
  return DATE_RE.test(s) && (s.length < 10 || calendarDayExists(s));
}

/** A FHIR R4 `instant`: a date and a time to the second with a zone, on a day that exists. */
export function isFhirInstant(s: string): boolean {
  return INSTANT_RE.test(s) && calendarDayExists(s);
}

/** Rejects 2023-02-29 and 2024-04-31; the caller has matched the date pattern. */
export function calendarDayExists(s: string): boolean {
  const day = (s.charCodeAt(8) - 48) * 10 + (s.charCodeAt(9) - 48);
  if (day <= 28) return true;
  const month = (s.charCodeAt(5) - 48) * 10 + (s.charCodeAt(6) - 48);
  if (month !== 2) return day <= (DAYS_IN_MONTH[month - 1] ?? 31);
  const year = Number(s.slice(0, 4));
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  return day <= (leap ? 29 : 28);
}

const string: PrimitiveCheck = (value, ctx) => {
  if (notString(value, ctx)) return false;
  return stringBasics(value as string, ctx);
};

function numeric(type: string, integer: boolean, min: number, max: number): PrimitiveCheck {
  const range = `${type} out of range ${min}..${max}`;
  return (value, ctx) => {
    if (typeof value !== 'number') {
      ctx.error('VAL_TYPE', `expected a JSON number, found ${jsonKind(value)}`);
      return false;
    }
    if (!Number.isFinite(value)) {
      ctx.error('VAL_FORMAT', `invalid ${type}: not a finite number`);
      return false;
    }
    if (integer && !Number.isInteger(value)) {
      ctx.error('VAL_FORMAT', `invalid ${type}: not a whole number`);
      return false;
    }
    if (value < min || value > max) {
      ctx.error('VAL_FORMAT', range);
      return false;
    }
    return true;
  };
}

const id: PrimitiveCheck = (value, ctx) => {
  if (notString(value, ctx)) return false;
  const s = value as string;
  if (ID_RE.test(s)) return true;
  if (s.length === 0) {
    ctx.error('VAL_EMPTY', 'empty string (FHIR forbids empty values)');
  } else if (s.length > 64 && LONG_ID_RE.test(s)) {
    if (ctx.allowLongIds) {
      ctx.warning('VAL_ID', `id longer than 64 characters (${s.length}), allowed for this source`);
      return true;
    }
    ctx.error('VAL_ID', `id longer than 64 characters (${s.length})`);
  } else {
    ctx.error('VAL_ID', 'malformed id: only A-Z a-z 0-9 - . allowed, 1 to 64 characters');
  }
  return false;
};

/** uri, url and canonical: no whitespace. A `#x` value may point at a contained resource (dom-3). */
function uriLike(type: string): PrimitiveCheck {
  const message = `invalid ${type}: contains whitespace`;
  return (value, ctx) => {
    if (notString(value, ctx)) return false;
    const s = value as string;
    if (s.length === 0) {
      ctx.error('VAL_EMPTY', 'empty string (FHIR forbids empty values)');
      return false;
    }
    if (!URI_RE.test(s)) {
      ctx.error('VAL_FORMAT', message);
      return false;
    }
    if (s.charCodeAt(0) === 35 /* # */) ctx.localRef(s, '', false);
    return true;
  };
}

const base64Binary: PrimitiveCheck = (value, ctx) => {
  if (notString(value, ctx)) return false;
  const s = value as string;
  if (s.length === 0) {
    ctx.error('VAL_EMPTY', 'empty string (FHIR forbids empty values)');
    return false;
  }
  // R4 allows whitespace between groups of four (line-wrapped base64); medplum does not.
  const compact = /\s/.test(s) ? s.replace(WHITESPACE_RE, '') : s;
  if (compact.length === 0 || compact.length % 4 !== 0 || !BASE64_RE.test(compact)) {
    ctx.error('VAL_FORMAT', 'invalid base64Binary');
    return false;
  }
  return true;
};

const boolean: PrimitiveCheck = (value, ctx) => {
  if (typeof value === 'boolean') return true;
  ctx.error('VAL_TYPE', `expected a JSON boolean, found ${jsonKind(value)}`);
  return false;
};

const code: PrimitiveCheck = (value, ctx) => {
  if (notString(value, ctx)) return false;
  const s = value as string;
  if (CODE_RE.test(s)) return true;
  if (s.length === 0) ctx.error('VAL_EMPTY', 'empty string (FHIR forbids empty values)');
  else ctx.error('VAL_FORMAT', 'invalid code: leading, trailing or repeated whitespace');
  return false;
};

/** Narrative.div: the R4 rule is an XHTML `<div>` in the XHTML namespace with some content (txt-1, txt-2). */
const xhtml: PrimitiveCheck = (value, ctx) => {
  if (notString(value, ctx)) return false;
  const s = value as string;
  if (!stringBasics(s, ctx)) return false;
  if (!/^\s*<div[\s>]/.test(s) || !s.includes('http://www.w3.org/1999/xhtml')) {
    ctx.error('VAL_FORMAT', 'narrative must be an XHTML <div> in the XHTML namespace');
    return false;
  }
  if (/<script[\s>]/i.test(s)) {
    ctx.error('VAL_FORMAT', 'narrative contains a script element (txt-1)');
    return false;
  }
  return true;
};

export const PRIMITIVE_CHECKS: Readonly<Record<string, PrimitiveCheck>> = {
  base64Binary,
  boolean,
  canonical: uriLike('canonical'),
  code,
  date: patterned('date', DATE_RE, true),
  dateTime: patterned('dateTime', DATE_TIME_RE, true),
  decimal: numeric('decimal', false, -Number.MAX_VALUE, Number.MAX_VALUE),
  id,
  instant: patterned('instant', INSTANT_RE, true),
  integer: numeric('integer', true, INT_MIN, INT_MAX),
  markdown: string,
  oid: patterned('oid', OID_RE),
  positiveInt: numeric('positiveInt', true, 1, INT_MAX),
  string,
  time: patterned('time', TIME_RE),
  unsignedInt: numeric('unsignedInt', true, 0, INT_MAX),
  uri: uriLike('uri'),
  url: uriLike('url'),
  uuid: patterned('uuid', UUID_RE),
  xhtml,
};

export function isPrimitiveType(type: string): boolean {
  return Object.hasOwn(PRIMITIVE_CHECKS, type);
}

/** The JSON kind of a value, for messages (never the value itself). */
export function jsonKind(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'object':
      return 'an object';
    case 'string':
      return 'a string';
    case 'number':
      return 'a number';
    case 'boolean':
      return 'a boolean';
    default:
      return typeof value;
  }
}
