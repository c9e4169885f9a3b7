import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { benchIdentity } from '../../../bench/identity.bench.ts';
import { jaroWinkler, normaliseName } from './compare.ts';
import { DEFAULT_IDENTITY_CONFIG, parseIdentityConfig } from './config.ts';
import { type IdentityRecord, matchPair } from './match.ts';
import { IdentityResolver } from './resolver.ts';

const base: IdentityRecord = {
  key: 'epic:Patient/1',
  kind: 'patient',
  mrns: ['urn:epic:mrn|100'],
  npis: [],
  verifiedEmails: [],
  emails: [],
  phones: ['+16175550100'],
  givenName: 'maria',
  familyName: 'gonzalez',
  birthDate: '1980-04-02',
  gender: 'female',
  postalCode: '02139',
  addressLine: '12 elm st',
  city: 'cambridge',
};

const other = (changes: Partial<IdentityRecord>): IdentityRecord => ({
  ...base,
  key: 'clinic:Patient/9',
  mrns: ['urn:clinic|9'],
  ...changes,
});

describe('Jaro–Winkler', () => {
  it('gives the published values', () => {
    expect(jaroWinkler('martha', 'marhta')).toBeCloseTo(0.961, 3);
    expect(jaroWinkler('dixon', 'dicksonx')).toBeCloseTo(0.813, 3);
    expect(jaroWinkler('dwayne', 'duane')).toBeCloseTo(0.84, 2);
    expect(jaroWinkler('', 'a')).toBe(0);
  });

  it('is symmetric, bounded and 1 only for equal strings', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 12 }), fc.string({ maxLength: 12 }), (a, b) => {
        const s = jaroWinkler(a, b);
        expect(s).toBeGreaterThanOrEqual(0);
        expect(s).toBeLessThanOrEqual(1);
        expect(jaroWinkler(b, a)).toBeCloseTo(s, 10);
        if (s === 1) expect(a).toBe(b);
      }),
    );
  });

  it('normalises accents, case and Synthea digit suffixes', () => {
    expect(normaliseName('Adán218')).toBe('adan');
    expect(normaliseName("  O'Brien-Smith ")).toBe('obrien smith');
  });
});

describe('configuration', () => {
  it('names every invalid key', () => {
    expect(() => parseIdentityConfig({ ...DEFAULT_IDENTITY_CONFIG, reviewThreshold: 30 })).toThrow(
      /reviewThreshold/,
    );
    expect(() => parseIdentityConfig({ ...DEFAULT_IDENTITY_CONFIG, precedence: ['ssn'] })).toThrow(
      expect.objectContaining({ code: 'IDENTITY_CONFIG_INVALID' }),
    );
    expect(() => parseIdentityConfig({ ...DEFAULT_IDENTITY_CONFIG, precedence: ['mrn', 'mrn'] })).toThrow(
      /precedence/,
    );
  });
});

describe('pairwise matching', () => {
  it('follows the configured precedence and explains the rule', () => {
    const b = other({ enterpriseId: 'E1', phones: base.phones });
    const a = { ...base, enterpriseId: 'E1' };
    expect(matchPair(a, b, DEFAULT_IDENTITY_CONFIG).explanation).toMatchObject({
      method: 'deterministic',
      rule: 'enterprise-id',
    });
    const phoneFirst = parseIdentityConfig({
      ...DEFAULT_IDENTITY_CONFIG,
      precedence: ['phone', 'enterprise-id'],
    });
    expect(matchPair(a, b, phoneFirst).explanation).toMatchObject({ method: 'deterministic', rule: 'phone' });
  });

  it('a conflicting enterprise id or same-system MRN is decisive, whatever else agrees', () => {
    expect(
      matchPair({ ...base, enterpriseId: 'E1' }, other({ enterpriseId: 'E2' }), DEFAULT_IDENTITY_CONFIG),
    ).toEqual({
      decision: 'no-match',
      explanation: { method: 'conflict', rule: 'enterprise-id' },
    });
    const sameSystem = other({ mrns: ['urn:epic:mrn|200'] });
    expect(matchPair(base, sameSystem, DEFAULT_IDENTITY_CONFIG).decision).toBe('no-match');
  });

  it('a twin sharing phone, address and birth date is at most reviewed, never linked', () => {
    const twin = other({ givenName: 'lucia' });
    const result = matchPair(base, twin, DEFAULT_IDENTITY_CONFIG);
    expect(result.decision).toBe('review');
    expect(result.explanation).toMatchObject({
      method: 'probabilistic',
      vetoes: ['givenName'],
      vetoed: ['phone'],
    });
  });

  it('links swapped names, a typo and a move probabilistically, with weights', () => {
    const swapped = matchPair(
      base,
      other({ givenName: 'gonzalez', familyName: 'maria', phones: [] }),
      DEFAULT_IDENTITY_CONFIG,
    );
    expect(swapped).toMatchObject({
      decision: 'match',
      explanation: { method: 'probabilistic', namesSwapped: true },
    });
    const moved = matchPair(
      base,
      other({
        familyName: 'gonzales',
        phones: ['+16175550199'],
        postalCode: '01001',
        addressLine: '1 main st',
        city: 'springfield',
      }),
      DEFAULT_IDENTITY_CONFIG,
    );
    expect(moved.decision).toBe('match');
    if (moved.explanation.method !== 'probabilistic') throw new Error('expected weights');
    expect(moved.explanation.weights.find((w) => w.field === 'postalCode')?.outcome).toBe('disagree');
    expect(moved.explanation.score).toBeGreaterThanOrEqual(DEFAULT_IDENTITY_CONFIG.matchThreshold);
  });

  it('different people with nothing in common do not match', () => {
    const stranger = other({
      givenName: 'john',
      familyName: 'smith',
      birthDate: '1950-01-01',
      phones: [],
      postalCode: '90210',
      addressLine: '9 oak',
      city: 'x',
      gender: 'male',
    });
    expect(matchPair(base, stranger, DEFAULT_IDENTITY_CONFIG).decision).toBe('no-match');
    expect(
      matchPair(base, { ...base, kind: 'hcp', key: 'veeva:Account/1' }, DEFAULT_IDENTITY_CONFIG).decision,
    ).toBe('no-match');
  });
});

describe('resolver events', () => {
  it('links, holds reviews, merges and unmerges as events', () => {
    const resolver = new IdentityResolver();
    const first = resolver.resolve(base);
    const again = resolver.resolve(other({ familyName: 'gonzales' }));
    expect(again.personId).toBe(first.personId);
    const twin = resolver.resolve({
      ...other({ givenName: 'lucia', mrns: ['urn:clinic|10'] }),
      key: 'clinic:Patient/twin',
    });
    expect(twin.personId).not.toBe(first.personId);
    expect(twin.events.map((e) => e.type)).toEqual(['created', 'review-requested']);
    const merged = resolver.merge(first.personId, twin.personId, 'operator review #1');
    expect(merged).toMatchObject({ type: 'merged', records: ['clinic:Patient/twin'] });
    const unmerged = resolver.unmerge('clinic:Patient/twin', 'twins confirmed');
    expect(unmerged).toMatchObject({ type: 'unmerged', from: first.personId });
    expect(resolver.personOf('clinic:Patient/twin')).not.toBe(first.personId);
    expect(resolver.events.map((e) => e.seq)).toEqual(resolver.events.map((_, i) => i + 1));
    expect(JSON.stringify(resolver.events)).not.toContain('gonzalez');
  });
});

describe('identity test set from Synthea', () => {
  it('makes no false merge of different people, with high recall', async () => {
    const result = await benchIdentity();
    expect(result.records).toBeGreaterThan(20);
    expect(result.falseMerges).toBe(0);
    expect(result.precision).toBe(1);
    expect(result.recall).toBeGreaterThanOrEqual(0.9);
    expect(result.reviewRequested).toBeGreaterThan(0);
    expect(result.linksByMethod.probabilistic).toBeGreaterThan(0);
    expect(result.linksByMethod['deterministic:npi']).toBeGreaterThan(0);
  });
});
