import { SluiceError } from '../../core/errors/index.ts';

/** A value that has exactly one canonical JSON text. `undefined` members are left out, as JSON does. */
export type CanonicalValue =
  | null
  | boolean
  | number
  | string
  | readonly CanonicalValue[]
  | { readonly [key: string]: CanonicalValue | undefined };

/**
 * JSON Canonicalization Scheme (RFC 8785): members sorted by their UTF-16 code units, no whitespace,
 * numbers in the shortest ECMAScript form, strings escaped as ECMAScript `JSON.stringify` does. Hashes
 * over this text are reproducible by any JCS implementation. Non-finite numbers and lone surrogates
 * (not I-JSON) are refused rather than silently changed.
 */
export function canonicalJson(value: CanonicalValue): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value)) throw refuse('a number that is not finite');
      return JSON.stringify(value);
    case 'string':
      if (!value.isWellFormed()) throw refuse('a string with a lone surrogate');
      return JSON.stringify(value);
    case 'object':
      break;
    default:
      throw refuse(`a value of type ${typeof value}`);
  }
  if (Array.isArray(value)) {
    return `[${(value as readonly CanonicalValue[]).map((item) => canonicalJson(item)).join(',')}]`;
  }
  const object = value as { readonly [key: string]: CanonicalValue | undefined };
  // Default sort compares UTF-16 code units, which is what RFC 8785 section 3.2.3 asks for.
  const keys = Object.keys(object).sort();
  const members: string[] = [];
  for (const key of keys) {
    const member = object[key];
    if (member === undefined) continue;
    if (!key.isWellFormed()) throw refuse('a member name with a lone surrogate');
    members.push(`${JSON.stringify(key)}:${canonicalJson(member)}`);
  }
  return `{${members.join(',')}}`;
}

function refuse(what: string): SluiceError {
  return new SluiceError('INTERNAL', `Canonical JSON cannot represent ${what}.`);
}
