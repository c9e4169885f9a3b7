/**
 * Canonical JSON in the style of RFC 8785 (JCS): object keys sorted by UTF-16 code units, no whitespace,
 * numbers and strings serialised as ECMAScript JSON does. Two parties that hold equal JSON data produce the
 * same bytes, so a hash of it can be signed and checked. Values JSON cannot carry (NaN, Infinity, bigint,
 * functions, symbols, undefined in arrays, cycles) are refused rather than silently changed.
 */
import { createHash } from 'node:crypto';
import { SluiceError } from '../errors/index.ts';

export function canonicalJson(value: unknown): string {
  return write(value, new Set<object>(), '$');
}

/** SHA-256 of the canonical JSON, base64url without padding. */
export function canonicalHash(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value), 'utf8').digest('base64url');
}

function write(value: unknown, stack: Set<object>, path: string): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'string':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw refuse(path, 'a non-finite number');
      return JSON.stringify(value);
    case 'object':
      break;
    case 'undefined':
    case 'bigint':
    case 'function':
    case 'symbol':
      throw refuse(path, `a ${typeof value}`);
  }
  const obj = value as object;
  if (typeof (obj as { toJSON?: unknown }).toJSON === 'function') {
    return write((obj as { toJSON: () => unknown }).toJSON(), stack, path);
  }
  if (stack.has(obj)) throw refuse(path, 'a cycle');
  stack.add(obj);
  try {
    if (Array.isArray(obj)) {
      return `[${obj.map((item, i) => write(item, stack, `${path}[${i}]`)).join(',')}]`;
    }
    const record = obj as Record<string, unknown>;
    const keys = Object.keys(record)
      .filter((k) => record[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${write(record[k], stack, `${path}.${k}`)}`).join(',')}}`;
  } finally {
    stack.delete(obj);
  }
}

function refuse(path: string, what: string): SluiceError {
  return new SluiceError('INTERNAL', `Cannot canonicalise ${what} at ${path}: not representable in JSON.`, {
    details: { path },
  });
}
