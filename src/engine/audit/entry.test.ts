import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { pseudonymize } from '../../core/anonymize/pseudonym.ts';
import { isSluiceError, type SluiceError } from '../../core/errors/index.ts';
import type { Pseudonym } from '../../core/model/ids.ts';
import {
  AUDIT_KINDS,
  AUDIT_OUTCOMES,
  type AuditEventInput,
  canonicalEntry,
  canonicalEntryReference,
  decodeEntry,
  leafHashOf,
  normalizeEntry,
} from './entry.ts';
import { toHex } from './hash.ts';
import { hashLeaf } from './merkle.ts';
import { syntheaPatients, TEST_PSEUDONYM_KEY } from './testing.ts';

const NOW = new Date('2025-03-01T10:00:00.000Z');
const subject = pseudonymize(TEST_PSEUDONYM_KEY, 'epic', 'Patient', 'example');
const base: AuditEventInput = {
  kind: 'send',
  flow: 'epic-to-veeva',
  outcome: 'success',
  subject,
  recipient: 'veeva',
};

function rejection(input: unknown): SluiceError {
  try {
    normalizeEntry(input as AuditEventInput, 0, NOW);
  } catch (err) {
    if (isSluiceError(err)) return err;
    throw err;
  }
  throw new Error('the entry was accepted');
}

describe('audit entries', () => {
  it('normalises the time and fills the defaults', () => {
    const entry = normalizeEntry({ ...base, at: '2025-03-01T11:30:00+01:00' }, 7, NOW);
    expect(entry).toEqual({
      seq: 7,
      at: '2025-03-01T10:30:00.000Z',
      kind: 'send',
      flow: 'epic-to-veeva',
      recipient: 'veeva',
      subject,
      outcome: 'success',
      details: {},
    });
    expect(normalizeEntry(base, 0, NOW).at).toBe('2025-03-01T10:00:00.000Z');
  });

  it('serialises canonically (sorted keys, version) and hashes the text as an RFC 9162 leaf', () => {
    const entry = normalizeEntry({ ...base, details: { z: 1, a: true, m: 'x' } }, 3, NOW);
    const text = canonicalEntry(entry);
    expect(text).toBe(
      `{"at":"2025-03-01T10:00:00.000Z","details":{"a":true,"m":"x","z":1},"flow":"epic-to-veeva","kind":"send",` +
        `"outcome":"success","recipient":"veeva","seq":3,"subject":"${subject}","v":1}`,
    );
    expect(toHex(leafHashOf(text))).toBe(toHex(hashLeaf(Buffer.from(text, 'utf8'))));
    expect(decodeEntry(text)).toEqual({ ok: true, entry });
  });

  it('refuses a clear identifier, a name or free text where a pseudonym or code belongs, without echoing it', () => {
    const cases: [string, unknown][] = [
      ['subject', { ...base, subject: '727b224a-7b1d-4097-a8d1-23f1df4f8763' as Pseudonym }],
      ['subject', { ...base, subject: 'Dana Feest' as Pseudonym }],
      ['reason', { ...base, reason: 'Dana Feest refused consent' }],
      ['recipient', { ...base, recipient: 'dana.feest@example.org' }],
      ['recipient', { ...base, recipient: 'Patient/727b224a-7b1d-4097-a8d1-23f1df4f8763' }],
      ['details.<key>', { ...base, details: { 'Dana Feest': 1 } }],
      ['details.note', { ...base, details: { note: 'line one\nline two' } }],
      ['details.note', { ...base, details: { note: 'x'.repeat(257) } }],
      ['details.nested', { ...base, details: { nested: { a: 1 } } }],
      ['details.n', { ...base, details: { n: Number.NaN } }],
      [
        'details',
        { ...base, details: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, i])) },
      ],
      ['kind', { ...base, kind: 'export-everything' }],
      ['flow', { ...base, flow: 'Epic To Veeva' }],
      ['purpose', { ...base, purpose: 'FRIENDS' }],
      ['at', { ...base, at: '2025-03-01 10:00' }],
      ['at', { ...base, at: '2025-02-30T10:00:00Z' }],
      ['(entry)', { ...base, name: 'Dana Feest' }],
    ];
    for (const [field, input] of cases) {
      const err = rejection(input);
      expect(err.code).toBe('AUDIT_ENTRY_INVALID');
      expect(JSON.stringify(err.toJSON())).not.toMatch(/Dana|Feest|727b224a|line one|xxxx/);
      expect(err.message).toContain(field);
    }
  });

  it('takes a recipient as a system name or a consent-style Type/id reference', () => {
    expect(normalizeEntry({ ...base, recipient: 'Organization/veeva-org-1' }, 0, NOW).recipient).toBe(
      'Organization/veeva-org-1',
    );
    expect(normalizeEntry({ ...base, recipient: 'veeva' }, 0, NOW).recipient).toBe('veeva');
  });

  it('decodes only exact canonical text of a valid entry', () => {
    const text = canonicalEntry(normalizeEntry(base, 0, NOW));
    const variants = [
      text.replace('{', '{ '),
      text.replace('"v":1', '"v":2'),
      text.replace('"seq":0', '"seq":-1'),
      text.replace('"seq":0', '"seq":0.5'),
      text.replace('.000Z', 'Z'),
      text.replace('"kind":"send",', '"kind":"send","kind":"send",'),
      text.slice(0, -1),
    ];
    for (const variant of variants) expect(decodeEntry(variant).ok, variant).toBe(false);
    expect(decodeEntry(Buffer.from(text)).ok).toBe(false);
  });

  it('keeps Synthea patient data out of entries built the way a flow builds them', () => {
    const [patient] = syntheaPatients(1);
    if (!patient) throw new Error('no Synthea data');
    const entry = normalizeEntry(
      { ...base, subject: pseudonymize(TEST_PSEUDONYM_KEY, 'epic', 'Patient', patient.patientId) },
      0,
      NOW,
    );
    const text = canonicalEntry(entry);
    expect(patient.phi.length).toBeGreaterThan(2);
    for (const value of patient.phi) expect(text).not.toContain(value);
  });

  it('writes the same canonical text as the generic RFC 8785 canonicaliser, for any valid entry', () => {
    const token = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,20}$/);
    const input = fc.record(
      {
        kind: fc.constantFrom(...AUDIT_KINDS),
        flow: fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,20}$/),
        outcome: fc.constantFrom(...AUDIT_OUTCOMES),
        runId: token,
        batchId: token,
        recipient: token,
        reason: token,
        purpose: fc.constantFrom('TREAT', 'HMARKT' as const),
        subject: fc.constant(subject),
        at: fc.date({ min: new Date('2000-01-01'), max: new Date('2999-12-31'), noInvalidDate: true }),
        details: fc.dictionary(
          fc.stringMatching(/^[A-Za-z][A-Za-z0-9_.-]{0,10}$/),
          fc.oneof(
            fc
              .string({ maxLength: 30, unit: 'grapheme' })
              .filter((v) => ![...v].some((ch) => (ch.codePointAt(0) ?? 0) < 32 || ch === '\u007f')),
            fc.double({ noNaN: true, noDefaultInfinity: true }),
            fc.boolean(),
          ),
          { maxKeys: 6 },
        ),
      },
      { requiredKeys: ['kind', 'flow', 'outcome'] },
    );
    fc.assert(
      fc.property(input, fc.nat(), (value, seq) => {
        const entry = normalizeEntry(value as AuditEventInput, seq, NOW);
        const text = canonicalEntry(entry);
        expect(text).toBe(canonicalEntryReference(entry));
        expect(decodeEntry(text)).toEqual({ ok: true, entry });
      }),
    );
  });
});
