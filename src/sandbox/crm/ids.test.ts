import { describe, expect, it } from 'vitest';
import { keyPrefixOf, normalizeId, recordId, toId18 } from './ids.ts';

describe('Salesforce ids', () => {
  it('computes the 18-character checksum suffix as Salesforce does', () => {
    // The example Salesforce documents: 001A0000006Vm9r → 001A0000006Vm9rIAC.
    expect(toId18('001A0000006Vm9r')).toBe('001A0000006Vm9rIAC');
    expect(toId18('000000000000000')).toBe('000000000000000AAA');
    expect(toId18('ABCDEABCDEABCDE')).toBe('ABCDEABCDEABCDE555');
  });

  it('normalises 15-character ids and refuses malformed or mis-checksummed ones', () => {
    expect(normalizeId('001A0000006Vm9r')).toBe('001A0000006Vm9rIAC');
    expect(normalizeId('001A0000006Vm9rIAC')).toBe('001A0000006Vm9rIAC');
    expect(normalizeId('001A0000006Vm9rAAA')).toBeUndefined();
    expect(normalizeId('001A0000006Vm9')).toBeUndefined();
    expect(normalizeId("001A0000006Vm9r' OR 1=1")).toBeUndefined();
  });

  it('numbers records per key prefix without collisions', () => {
    const ids = new Set(Array.from({ length: 5000 }, (_, i) => recordId('a0E', i + 1)));
    expect(ids.size).toBe(5000);
    for (const id of ids) {
      expect(keyPrefixOf(id)).toBe('a0E');
      expect(normalizeId(id)).toBe(id);
    }
    expect(recordId('001', 62)).toBe(toId18('0018d0000000010'));
  });
});
