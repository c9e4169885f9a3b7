import { describe, expect, it } from 'vitest';
import type { ConsentRequest } from './evaluate.ts';
import { type ConsentState, consentKey } from './model.ts';
import { ConsentStore } from './store.ts';
import { prng, syntheticConsents, syntheticSubject } from './synthetic.ts';

const POLICY = { version: 'p1' };
const AT = new Date('2024-06-01T00:00:00Z');

function state(
  partial: Partial<ConsentState> & { id: string; lastUpdated?: number; version?: string },
): ConsentState {
  const { id, lastUpdated, version, ...rest } = partial;
  return {
    subject: 'p-alice',
    status: 'active',
    scope: { code: 'patient-privacy' },
    categories: [],
    recordedAt: Date.UTC(2024, 0, 1),
    period: {},
    provision: {
      type: 'permit',
      actors: [],
      actions: [],
      purposes: [],
      classes: [],
      codes: [],
      securityLabels: [],
      data: [],
      provisions: [],
    },
    source: {
      system: 'epic',
      resourceType: 'Consent',
      id,
      ...(lastUpdated === undefined ? {} : { lastUpdated }),
      ...(version === undefined ? {} : { version }),
    },
    policyVersion: 'v1',
    ...rest,
  };
}

const request: Omit<ConsentRequest, 'subject'> = {
  purpose: 'TREAT',
  recipient: { id: 'Organization/r', role: 'PRCP' },
  resourceType: 'Observation',
  at: AT,
};
const denyTree = { ...state({ id: 'x' }).provision!, type: 'deny' as const };

describe('ConsentStore', () => {
  it('indexes by subject and checks only that person', () => {
    const store = new ConsentStore(POLICY);
    expect(store.upsert(state({ id: 'a' }))).toBe('inserted');
    expect(store.upsert(state({ id: 'b', subject: 'p-bob', provision: denyTree }))).toBe('inserted');
    expect(store.checkAtSend('p-alice', request)).toMatchObject({
      decision: 'permit',
      basis: { consentRef: 'epic:Consent/a', considered: 1 },
    });
    expect(store.decide('p-bob', request)).toBe('deny');
    expect(store.checkAtSend('p-carol', request)).toMatchObject({
      decision: 'deny',
      basis: { rule: 'default' },
    });
    expect([store.subjectCount, store.consentCount]).toEqual([2, 2]);
  });

  it('orders versions by the source clock and ignores stale or replayed ones', () => {
    const store = new ConsentStore(POLICY);
    expect(store.upsert(state({ id: 'a', lastUpdated: 200, version: '2' }))).toBe('inserted');
    // Out of order: version 1 arrives after version 2.
    expect(store.upsert(state({ id: 'a', lastUpdated: 100, version: '1', provision: denyTree }))).toBe(
      'stale',
    );
    expect(store.upsert(state({ id: 'a', lastUpdated: 200, version: '2' }))).toBe('unchanged');
    expect(store.upsert(state({ id: 'a', version: '9', provision: denyTree }))).toBe('stale');
    expect(store.decide('p-alice', request)).toBe('permit');
    expect(store.upsert(state({ id: 'a', lastUpdated: 300, version: '3', provision: denyTree }))).toBe(
      'updated',
    );
    expect(store.decide('p-alice', request)).toBe('deny');
    // Same time, higher numeric version wins.
    expect(store.upsert(state({ id: 'a', lastUpdated: 300, version: '4' }))).toBe('updated');
    expect(store.consentsOf('p-alice')).toHaveLength(1);
  });

  it('revokes with a time, and a replay cannot undo the revocation', () => {
    const store = new ConsentStore(POLICY);
    store.upsert(state({ id: 'a', lastUpdated: Date.UTC(2024, 0, 1) }));
    expect(store.revoke('p-alice', 'epic:Consent/a', new Date('2024-05-01Z'))).toBe(true);
    expect(store.consentsOf('p-alice')[0]).toMatchObject({
      status: 'revoked',
      revokedAt: Date.UTC(2024, 4, 1),
    });
    expect(store.checkAtSend('p-alice', request)).toMatchObject({
      decision: 'deny',
      basis: { rule: 'default', skipped: [{ consentRef: 'epic:Consent/a', why: 'revoked' }] },
    });
    // Even when asked about a time before the revocation, a revoked consent never permits.
    expect(store.decide('p-alice', { ...request, at: new Date('2024-02-01Z') })).toBe('deny');
    // A replay of the pre-revocation version is stale; a re-issue after the revocation is accepted.
    expect(store.upsert(state({ id: 'a', lastUpdated: Date.UTC(2024, 0, 1) }))).toBe('stale');
    expect(store.upsert(state({ id: 'a', lastUpdated: Date.UTC(2024, 3, 30) }))).toBe('stale');
    expect(store.upsert(state({ id: 'a', lastUpdated: Date.UTC(2024, 4, 2) }))).toBe('updated');
    expect(store.decide('p-alice', request)).toBe('permit');
    expect(store.revoke('p-alice', 'epic:Consent/missing', AT)).toBe(false);
    expect(store.revoke('p-bob', 'epic:Consent/a', AT)).toBe(false);
  });

  it('revokes every consent of a person at once', () => {
    const store = new ConsentStore(POLICY);
    store.upsert(state({ id: 'a' }));
    store.upsert(state({ id: 'b' }));
    store.upsert(state({ id: 'c', subject: 'p-bob' }));
    expect(store.revokeAll('p-alice', AT)).toBe(2);
    expect(store.revokeAll('p-alice', AT)).toBe(0);
    expect(store.decide('p-alice', request)).toBe('deny');
    expect(store.decide('p-bob', request)).toBe('permit');
  });

  it('moves a consent re-linked to another person', () => {
    const store = new ConsentStore(POLICY);
    store.upsert(state({ id: 'a', lastUpdated: 1 }));
    expect(store.upsert(state({ id: 'a', lastUpdated: 2, subject: 'p-bob' }))).toBe('updated');
    expect(store.consentsOf('p-alice')).toEqual([]);
    expect(store.decide('p-alice', request)).toBe('deny');
    expect(store.decide('p-bob', request)).toBe('permit');
    expect(store.subjectCount).toBe(1);
  });

  it('answers a send-time check in well under a millisecond with 100k persons loaded', () => {
    const store = new ConsentStore(POLICY);
    const consents = syntheticConsents(100_000, 42);
    for (const c of consents) store.upsert(c);
    expect(store.subjectCount).toBe(100_000);
    expect(store.consentCount).toBe(consents.length);

    const rand = prng(7);
    const purposes = ['TREAT', 'HMARKT', 'HOPERAT', 'HRESCH'];
    const types = ['Observation', 'Patient', 'Practitioner', 'Communication'];
    const times: number[] = [];
    const seen = new Map<string, number>();
    for (let i = 0; i < 20_000; i++) {
      const subject = syntheticSubject(Math.floor(rand() * 110_000)); // ~9% unknown persons
      const req = {
        purpose: purposes[i % purposes.length] as string,
        recipient: { id: 'Organization/r', role: 'PRCP' },
        resourceType: types[(i >> 2) % types.length] as string,
        securityLabels: i % 3 === 0 ? [{ code: 'PSY' }] : [],
        at: new Date(Date.UTC(2024, 0, 1) + Math.floor(rand() * 900) * 86_400_000),
      };
      const t0 = performance.now();
      const d = store.checkAtSend(subject, req);
      times.push(performance.now() - t0);
      seen.set(`${d.decision}:${d.basis.rule}`, (seen.get(`${d.decision}:${d.basis.rule}`) ?? 0) + 1);
    }
    times.sort((a, b) => a - b);
    const p99 = times[Math.floor(times.length * 0.99)] as number;
    expect(p99).toBeLessThan(5);
    // The load is real: permits, provision denies and default denies all occur.
    expect(seen.get('permit:provision')).toBeGreaterThan(1000);
    expect(seen.get('deny:provision')).toBeGreaterThan(1000);
    expect(seen.get('deny:default')).toBeGreaterThan(1000);
    expect(consentKey(consents[0]!.source)).toBe('epic:Consent/c0');
  });
});
