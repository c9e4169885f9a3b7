/**
 * Deterministic synthetic consent populations for load tests and the benchmark. No real data: subjects
 * are made-up pseudonym-shaped keys. Each person holds one to three consents of the shapes the importers
 * produce (privacy consent with nested exceptions, marketing opt-in/opt-out), some revoked or expired.
 */
import type { CodeRef, ConsentState, Provision } from './model.ts';
import { PURPOSE_OF_USE_SYSTEM } from './purpose.ts';

const DAY = 86_400_000;
const T0 = Date.UTC(2024, 0, 1);

/** A small seeded PRNG (mulberry32): same seed, same population. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function syntheticSubject(index: number): string {
  return `psyn${index.toString(36).padStart(8, '0')}`;
}

const purpose = (code: string): CodeRef => ({ system: PURPOSE_OF_USE_SYSTEM, code });

function provision(partial: Partial<Provision> & Pick<Provision, 'type'>): Provision {
  return {
    actors: [],
    actions: [],
    purposes: [],
    classes: [],
    codes: [],
    securityLabels: [],
    data: [],
    provisions: [],
    ...partial,
  };
}

/** Consents for `count` persons; about 1.8 consents per person on average. */
export function syntheticConsents(count: number, seed = 1): ConsentState[] {
  const rand = prng(seed);
  const out: ConsentState[] = [];
  for (let i = 0; i < count; i++) {
    const subject = syntheticSubject(i);
    const recordedAt = T0 + Math.floor(rand() * 365) * DAY;
    // Privacy consent: permit treatment, with nested denies for marketing and sensitive labels.
    out.push({
      subject,
      status: rand() < 0.05 ? 'inactive' : 'active',
      scope: { code: 'patient-privacy' },
      categories: [{ code: '59284-0' }],
      recordedAt,
      period: { start: recordedAt, end: recordedAt + 3 * 365 * DAY },
      policyRule: { code: 'OPTIN' },
      baseDecision: 'permit',
      provision: provision({
        type: 'permit',
        period: { start: recordedAt, end: recordedAt + 3 * 365 * DAY },
        purposes: [purpose('TREAT'), purpose('HPAYMT'), purpose('HOPERAT')],
        provisions: [
          provision({ type: 'deny', securityLabels: [{ code: 'PSY' }, { code: 'SUD' }] }),
          provision({ type: 'deny', classes: [{ code: 'Observation' }], purposes: [purpose('HOPERAT')] }),
        ],
      }),
      source: { system: 'epic', resourceType: 'Consent', id: `c${i}`, lastUpdated: recordedAt },
      policyVersion: 'privacy-v1',
    });
    const r = rand();
    if (r < 0.8) {
      const captured = T0 + Math.floor(rand() * 500) * DAY;
      const optIn = rand() < 0.6;
      out.push({
        subject,
        status: rand() < 0.05 ? 'revoked' : 'active',
        scope: { code: 'hcp-multichannel' },
        categories: [{ code: 'email' }],
        recordedAt: captured,
        period: optIn ? { start: captured, end: captured + 365 * DAY } : { start: captured },
        provision: provision({
          type: optIn ? 'permit' : 'deny',
          purposes: [purpose('HMARKT')],
          classes: [{ code: 'Practitioner' }, { code: 'Communication' }],
        }),
        source: { system: 'veeva', resourceType: 'Multichannel_Consent_vod__c', id: `m${i}` },
        policyVersion: 'veeva-email-v1',
      });
    }
  }
  return out;
}
