import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalHash, canonicalJson } from './canonical-json.ts';

describe('canonicalJson', () => {
  it('matches the RFC 8785 §3.2.2 example', () => {
    const input = JSON.parse(
      '{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],' +
        '"string":"\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/","literals":[null,true,false]}',
    );
    expect(canonicalJson(input)).toBe(
      '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],' +
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
    );
  });

  it('sorts keys by UTF-16 code units at every level', () => {
    expect(canonicalJson({ b: 1, a: { d: [{ z: 1, y: 2 }], c: null }, '\u00e9': 0, Z: 0 })).toBe(
      '{"Z":0,"a":{"c":null,"d":[{"y":2,"z":1}]},"b":1,"é":0}',
    );
    // U+1D11E (UTF-16 0xD834 0xDD1E) sorts before U+FB33 by code units, though it is the larger code point.
    expect(canonicalJson({ '\ufb33': 2, '\u{1d11e}': 1 })).toBe('{"\u{1d11e}":1,"\ufb33":2}');
  });

  it('gives the same bytes for equal data in any key order', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const text = canonicalJson(value);
        expect(canonicalJson(JSON.parse(text))).toBe(text);
        expect(canonicalJson(JSON.parse(JSON.stringify(value)))).toBe(text);
      }),
    );
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.integer()), (dict) => {
        const reversed = Object.fromEntries(Object.entries(dict).reverse());
        expect(canonicalJson(reversed)).toBe(canonicalJson(dict));
      }),
    );
  });

  it('refuses values JSON cannot carry instead of changing them', () => {
    expect(() => canonicalJson({ a: Number.NaN })).toThrow(/non-finite number at \$\.a/);
    expect(() => canonicalJson([1, undefined])).toThrow(/undefined at \$\[1\]/);
    expect(() => canonicalJson({ n: 10n })).toThrow(/bigint/);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(() => canonicalJson(cyclic)).toThrow(/cycle/);
    // Omitted object members behave like JSON.stringify; repeated (non-cyclic) references are fine.
    const shared = { x: 1 };
    expect(canonicalJson({ a: undefined, b: shared, c: shared })).toBe('{"b":{"x":1},"c":{"x":1}}');
  });

  it('hashes the canonical bytes with SHA-256 in base64url', () => {
    const expected = createHash('sha256').update('{"a":1,"b":[true]}').digest('base64url');
    expect(canonicalHash({ b: [true], a: 1 })).toBe(expected);
    expect(expected).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });
});
