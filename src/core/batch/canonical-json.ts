/**
 * Canonical JSON (RFC 8785, JCS): object keys sorted by UTF-16 code units, no whitespace, numbers and
 * strings serialised as ECMAScript JSON does. Two parties that hold equal JSON data produce the same
 * bytes, so a hash of it can be signed and checked. Batch envelopes and the audit log both use it.
 *
 * Values JSON cannot carry (NaN, Infinity, bigint, functions, symbols, undefined in arrays, cycles) are
 * refused rather than silently changed. With `iJson`, strings and member names holding a lone surrogate
 * (not I-JSON, RFC 7493) are refused too: the audit log's entries are written by Sluice itself and must
 * hash the same in any JCS implementation; envelopes carry source data as it came.
 */
import { createHash } from 'node:crypto';
import { SluiceError } from '../errors/index.ts';

/** A value that has exactly one canonical JSON text. `undefined` members are left out, as JSON does. */
export type CanonicalValue =
  | null
  | boolean
  | number
  | string
  | readonly CanonicalValue[]
  | { readonly [key: string]: CanonicalValue | undefined };

export interface CanonicalOptions {
  /** Refuse lone surrogates in strings and member names (I-JSON). */
  readonly iJson?: boolean;
}

export function canonicalJson(value: unknown, options: CanonicalOptions = {}): string {
  return new Writer(options.iJson === true).write(value);
}

/** SHA-256 of the canonical JSON, base64url without padding. */
export function canonicalHash(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value), 'utf8').digest('base64url');
}

class Writer {
  readonly #iJson: boolean;
  /** Objects being written (cycle detection). */
  readonly #open = new Set<object>();
  /** Keys and indexes from the root to the value being written; joined only to report a refusal. */
  readonly #path: (string | number)[] = [];

  constructor(iJson: boolean) {
    this.#iJson = iJson;
  }

  write(value: unknown): string {
    if (value === null) return 'null';
    switch (typeof value) {
      case 'boolean':
        return value ? 'true' : 'false';
      case 'string':
        if (this.#iJson && !value.isWellFormed()) throw this.#refuse('a string with a lone surrogate');
        return JSON.stringify(value);
      case 'number':
        if (!Number.isFinite(value)) throw this.#refuse('a non-finite number');
        return JSON.stringify(value);
      case 'object':
        break;
      default:
        throw this.#refuse(`a ${typeof value}`);
    }
    const obj = value as object;
    if (typeof (obj as { toJSON?: unknown }).toJSON === 'function') {
      return this.write((obj as { toJSON: () => unknown }).toJSON());
    }
    if (this.#open.has(obj)) throw this.#refuse('a cycle');
    this.#open.add(obj);
    try {
      if (Array.isArray(obj)) {
        let out = '[';
        for (let i = 0; i < obj.length; i++) {
          this.#path.push(i);
          out += `${i > 0 ? ',' : ''}${this.write(obj[i])}`;
          this.#path.pop();
        }
        return `${out}]`;
      }
      const record = obj as Record<string, unknown>;
      // Default sort compares UTF-16 code units, which is what RFC 8785 section 3.2.3 asks for.
      const keys = Object.keys(record).sort();
      let out = '{';
      let first = true;
      for (const key of keys) {
        const member = record[key];
        if (member === undefined) continue;
        this.#path.push(key);
        if (this.#iJson && !key.isWellFormed()) throw this.#refuse('a member name with a lone surrogate');
        out += `${first ? '' : ','}${JSON.stringify(key)}:${this.write(member)}`;
        this.#path.pop();
        first = false;
      }
      return `${out}}`;
    } finally {
      this.#open.delete(obj);
    }
  }

  #refuse(what: string): SluiceError {
    const path = this.#path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`)).join('');
    return new SluiceError(
      'INTERNAL',
      `Cannot canonicalise ${what} at $${path}: not representable in canonical JSON.`,
      { details: { path: `$${path}` } },
    );
  }
}
