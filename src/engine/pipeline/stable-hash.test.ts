import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { stableHash, stableStringify } from './stable-hash.ts';

/** The same object with its keys inserted in reverse order, at every level. */
function reversed(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reversed);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value)
        .reverse()
        .map(([k, v]) => [k, reversed(v)]),
    );
  }
  return value;
}

describe('stableStringify / stableHash', () => {
  it('sorts keys at every level', () => {
    expect(stableStringify({ b: 1, a: { d: [{ z: 1, y: 2 }], c: null } })).toBe(
      '{"a":{"c":null,"d":[{"y":2,"z":1}]},"b":1}',
    );
  });

  it('does not depend on key insertion order', () => {
    const a = { resourceType: 'Patient', id: 'x', name: [{ given: ['A'], family: 'B' }], meta: { v: '1' } };
    const b = { meta: { v: '1' }, name: [{ family: 'B', given: ['A'] }], id: 'x', resourceType: 'Patient' };
    expect(stableStringify(a)).toBe(stableStringify(b));
    expect(stableHash(a)).toBe(stableHash(b));
  });

  it('drops undefined properties (as JSON does), but not null', () => {
    expect(stableHash({ a: 1, b: undefined })).toBe(stableHash({ a: 1 }));
    expect(stableHash({ a: 1, b: null })).not.toBe(stableHash({ a: 1 }));
    expect(stableStringify(undefined)).toBe('null');
    expect(stableStringify([undefined])).toBe('[null]');
  });

  it('is sensitive to array order and to values', () => {
    expect(stableHash([1, 2])).not.toBe(stableHash([2, 1]));
    expect(stableHash({ a: [{ x: 1 }, { x: 2 }] })).not.toBe(stableHash({ a: [{ x: 2 }, { x: 1 }] }));
    expect(stableHash({ a: '1' })).not.toBe(stableHash({ a: 1 }));
    expect(stableHash({ a: 1 })).not.toBe(stableHash({ b: 1 }));
  });

  it('does not confuse keys and values that contain separators', () => {
    expect(stableHash({ 'a":"b': 'c' })).not.toBe(stableHash({ a: 'b":"c' }));
    expect(stableHash({ a: 'x', b: 'y' })).not.toBe(stableHash({ a: 'x,"b":"y"' }));
  });

  it('gives a SHA-256 hex digest', () => {
    // sha256('{}')
    expect(stableHash({})).toBe('44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a');
  });

  it('property: output is valid JSON equal to the input, and key order never matters', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const text = stableStringify(value);
        expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(value)));
        expect(stableStringify(reversed(value))).toBe(text);
        expect(stableHash(reversed(value))).toBe(stableHash(value));
      }),
    );
  });
});
