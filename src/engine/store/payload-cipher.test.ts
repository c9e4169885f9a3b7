import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { syntheaPatients } from '../../core/matrix/testing.ts';
import { isSealed, openPayload, payloadKey, sealPayload } from './payload-cipher.ts';

const codeOf = (fn: () => unknown): string | undefined => {
  try {
    fn();
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code;
  }
};

describe('payload cipher', () => {
  const key = payloadKey(randomBytes(32), 'state-2026');

  it('seals a Synthea patient so that nothing of it shows, and opens it back exactly', async () => {
    const [patient] = await syntheaPatients();
    const plain = JSON.stringify(patient);
    const sealed = sealPayload(key, plain, 'quarantine\u0000f\u0000q1');
    expect(isSealed(sealed)).toBe(true);
    expect(sealed.startsWith('sluice-enc1:state-2026:')).toBe(true);
    const family = String((patient?.name as { family?: string }[] | undefined)?.[0]?.family);
    expect(family.length).toBeGreaterThan(1);
    expect(sealed).not.toContain(family);
    expect(sealed).not.toContain(String(patient?.birthDate));
    expect(openPayload(key, sealed, 'quarantine\u0000f\u0000q1', 'test')).toBe(plain);
    // A fresh IV every time: the same record never seals to the same text.
    expect(sealPayload(key, plain, 'quarantine\u0000f\u0000q1')).not.toBe(sealed);
  });

  it('refuses what it cannot open, each with its own code', () => {
    const sealed = sealPayload(key, '{"resourceType":"Patient"}', 'row-1');
    // Copied to another row.
    expect(codeOf(() => openPayload(key, sealed, 'row-2', 'test'))).toBe('STATE_PAYLOAD_TAMPERED');
    // Any byte of the body altered.
    const body = sealed.slice(sealed.lastIndexOf(':') + 1);
    for (const at of [0, 13, body.length - 1]) {
      const flipped = `${body.slice(0, at)}${body[at] === 'A' ? 'B' : 'A'}${body.slice(at + 1)}`;
      const altered = `${sealed.slice(0, sealed.lastIndexOf(':') + 1)}${flipped}`;
      expect(codeOf(() => openPayload(key, altered, 'row-1', 'test'))).toBe('STATE_PAYLOAD_TAMPERED');
    }
    // Another secret under the same key id.
    const impostor = payloadKey(randomBytes(32), 'state-2026');
    expect(codeOf(() => openPayload(impostor, sealed, 'row-1', 'test'))).toBe('STATE_PAYLOAD_TAMPERED');
    expect(
      codeOf(() => openPayload(payloadKey(randomBytes(32), 'state-2027'), sealed, 'row-1', 'test')),
    ).toBe('STATE_PAYLOAD_KEY_MISMATCH');
    expect(codeOf(() => openPayload(undefined, sealed, 'row-1', 'test'))).toBe('STATE_PAYLOAD_LOCKED');
    expect(codeOf(() => openPayload(key, 'sluice-enc1:state-2026:AAAA', 'row-1', 'test'))).toBe(
      'STATE_PAYLOAD_TAMPERED',
    );
  });

  it('after a rotation, seals under the new key and still opens what the previous keys sealed', () => {
    const oldSecret = randomBytes(32);
    const before = payloadKey(oldSecret, 'state-2026');
    const sealedBefore = sealPayload(before, '{"resourceType":"Patient","id":"a"}', 'row-1');
    const rotated = payloadKey(randomBytes(32), 'state-2027', [payloadKey(oldSecret, 'state-2026')]);
    expect(openPayload(rotated, sealedBefore, 'row-1', 'test')).toBe('{"resourceType":"Patient","id":"a"}');
    const sealedAfter = sealPayload(rotated, '{"resourceType":"Patient","id":"b"}', 'row-2');
    expect(sealedAfter.startsWith('sluice-enc1:state-2027:')).toBe(true);
    // The old key alone cannot read the new values; a previous key under its id but another secret fails.
    expect(codeOf(() => openPayload(before, sealedAfter, 'row-2', 'test'))).toBe(
      'STATE_PAYLOAD_KEY_MISMATCH',
    );
    const wrongPrevious = payloadKey(randomBytes(32), 'state-2027', [
      payloadKey(randomBytes(32), 'state-2026'),
    ]);
    expect(codeOf(() => openPayload(wrongPrevious, sealedBefore, 'row-1', 'test'))).toBe(
      'STATE_PAYLOAD_TAMPERED',
    );
  });

  it('reads values stored before a key was configured as they are', () => {
    expect(openPayload(key, '{"resourceType":"Patient"}', 'row-1', 'test')).toBe(
      '{"resourceType":"Patient"}',
    );
    expect(openPayload(undefined, '"(unserialisable record)"', 'row-1', 'test')).toBe(
      '"(unserialisable record)"',
    );
  });
});
