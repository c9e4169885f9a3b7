import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isSluiceError } from '../errors/index.ts';
import { type CanonicalValue, canonicalJson as jcs } from './canonical-json.ts';

/** The audit log's use: I-JSON. */
const canonicalJson = (value: CanonicalValue): string => jcs(value, { iJson: true });

describe('canonicalJson with iJson (RFC 8785, as the audit log uses it)', () => {
  it('reproduces the RFC 8785 section 3.2.2 example', () => {
    const input = JSON.parse(
      '{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],' +
        '"string":"\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/","literals":[null,true,false]}',
    ) as CanonicalValue;
    expect(canonicalJson(input)).toBe(
      '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],' +
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
    );
  });

  it('sorts members by UTF-16 code units (RFC 8785 section 3.2.3 example)', () => {
    const input = JSON.parse(
      '{"\\u20ac":"Euro Sign","\\r":"Carriage Return","\\ufb33":"Hebrew Letter Dalet With Dagesh",' +
        '"1":"One","\\ud83d\\ude00":"Emoji: Grinning Face","\\u0080":"Control","\\u00f6":"Latin Small Letter O With Diaeresis"}',
    ) as Record<string, string>;
    // Read the order from the text: a parsed object would put the integer-like key "1" first again.
    const values = [...canonicalJson(input).matchAll(/:"([^"]*)"/g)].map((m) => m[1]);
    expect(values).toEqual([
      'Carriage Return',
      'One',
      'Control',
      'Latin Small Letter O With Diaeresis',
      'Euro Sign',
      'Emoji: Grinning Face',
      'Hebrew Letter Dalet With Dagesh',
    ]);
  });

  it('writes numbers in their shortest ECMAScript form and -0 as 0', () => {
    expect(canonicalJson([1e21, 1e-7, 0.1, -0, 123456789012345680000, 5e-324])).toBe(
      '[1e+21,1e-7,0.1,0,123456789012345680000,5e-324]',
    );
  });

  it('leaves out undefined members and refuses what I-JSON cannot carry', () => {
    expect(canonicalJson({ b: 1, a: undefined })).toBe('{"b":1}');
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, '\ud800', { '\udc00': 1 }] as CanonicalValue[]) {
      let thrown: unknown;
      try {
        canonicalJson(bad);
      } catch (err) {
        thrown = err;
      }
      expect(isSluiceError(thrown)).toBe(true);
    }
    // Without iJson (batch envelopes carry source data as it came), lone surrogates are escaped as JSON does.
    expect(jcs({ s: '\ud800' })).toBe('{"s":"\\ud800"}');
  });

  it('is a fixed point: parsing and re-serialising gives the same text, whatever the member order', () => {
    const value = fc.jsonValue({ maxDepth: 3 }) as fc.Arbitrary<CanonicalValue>;
    fc.assert(
      fc.property(value, (v) => {
        const text = canonicalJson(v);
        const reordered = JSON.parse(JSON.stringify(v, (_k, x) => reverseKeys(x))) as CanonicalValue;
        return (
          canonicalJson(JSON.parse(text) as CanonicalValue) === text && canonicalJson(reordered) === text
        );
      }),
    );
  });
});

function reverseKeys(x: unknown): unknown {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return x;
  return Object.fromEntries(Object.entries(x).reverse());
}
