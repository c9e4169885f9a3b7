import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { sharedDataDir } from '../../testkit/data.ts';
import { pseudonymize } from '../anonymize/pseudonym.ts';
import { type ConsentRequest, type EvaluationPolicy, evaluateConsent } from './evaluate.ts';
import { consentFromFhir } from './from-fhir.ts';
import type { CodeRef, ConsentState, Provision, ProvisionType } from './model.ts';
import { PURPOSE_OF_USE_SYSTEM } from './purpose.ts';
import { TEST_KEY, unwrap } from './testing.ts';

const OPTIONS = { system: 'epic', pseudonymKey: TEST_KEY };
const POLICY: EvaluationPolicy = { version: 'policy-1' };
const SUBJECT = pseudonymize(TEST_KEY, 'epic', 'Patient', '123');
const ACT_REASON = 'http://terminology.hl7.org/CodeSystem/v3-ActReason';

function fhir(id: string, provision: unknown, extra: Record<string, unknown> = {}): ConsentState {
  return unwrap(
    consentFromFhir(
      {
        resourceType: 'Consent',
        id,
        status: 'active',
        scope: { coding: [{ code: 'patient-privacy' }] },
        category: [{ coding: [{ code: '59284-0' }] }],
        patient: { reference: 'Patient/123' },
        dateTime: '2024-01-01',
        policyRule: { coding: [{ code: 'OPTIN' }] },
        ...(provision === undefined ? {} : { provision }),
        ...extra,
      },
      OPTIONS,
    ),
  );
}

function req(partial: Partial<ConsentRequest> = {}): ConsentRequest {
  return {
    subject: SUBJECT,
    purpose: 'TREAT',
    recipient: { id: 'Organization/rcpt', role: 'PRCP' },
    resourceType: 'Observation',
    at: new Date('2024-06-01T00:00:00Z'),
    ...partial,
  };
}

const purpose = (code: string) => ({ system: ACT_REASON, code });
const YEAR_2024 = { start: '2024-01-01', end: '2024-12-31' };

describe('evaluateConsent: status and period', () => {
  const permit = { type: 'permit', period: YEAR_2024 };

  it('permits inside an active consent period and names the deciding rule', () => {
    const d = evaluateConsent([fhir('c1', permit)], req(), POLICY);
    expect(d).toMatchObject({
      decision: 'permit',
      policyVersion: 'policy-1',
      basis: {
        rule: 'provision',
        consentRef: 'epic:Consent/c1',
        provisionPath: 'provision',
        consentScope: 'patient-privacy',
        consentPolicyVersion: 'policyRule:OPTIN',
      },
    });
  });

  it('never permits from revoked, inactive, draft, expired or not-yet-active consents', () => {
    const active = fhir('c1', permit);
    const cases: [ConsentState, Date, string][] = [
      [{ ...active, status: 'revoked', revokedAt: Date.UTC(2024, 2, 1) }, new Date('2024-02-01Z'), 'revoked'],
      [{ ...active, status: 'inactive' }, new Date('2024-06-01Z'), 'inactive'],
      [{ ...active, status: 'draft' }, new Date('2024-06-01Z'), 'not-active-status'],
      [{ ...active, status: 'entered-in-error' }, new Date('2024-06-01Z'), 'not-active-status'],
      [active, new Date('2025-01-01T00:00:00Z'), 'expired'],
      [active, new Date('2023-12-31T23:59:59Z'), 'not-yet-active'],
    ];
    for (const [state, at, why] of cases) {
      for (const defaultDecision of ['deny', 'not-applicable'] as const) {
        const d = evaluateConsent([state], req({ at }), { ...POLICY, defaultDecision });
        expect(d.decision, why).toBe(defaultDecision);
        expect(d.basis).toMatchObject({ rule: 'default', skipped: [{ consentRef: 'epic:Consent/c1', why }] });
      }
    }
    // The end date is in force through its last millisecond.
    expect(
      evaluateConsent([active], req({ at: new Date('2024-12-31T23:59:59.999Z') }), POLICY).decision,
    ).toBe('permit');
  });

  it('denies an unknown subject by default, and only the configured default otherwise', () => {
    const d = evaluateConsent([], req({ subject: 'p-nobody' }), POLICY);
    expect(d).toMatchObject({ decision: 'deny', basis: { rule: 'default', considered: 0 } });
    expect(d.basis.consentRef).toBeUndefined();
    expect(evaluateConsent([], req(), { ...POLICY, defaultDecision: 'permit' }).decision).toBe('permit');
  });

  it("ignores another person's consents that were passed in by mistake", () => {
    const d = evaluateConsent([fhir('c1', permit)], req({ subject: 'p-other' }), POLICY);
    expect(d).toMatchObject({
      decision: 'deny',
      basis: { rule: 'default', skipped: [{ why: 'other-subject' }] },
    });
  });

  it('denies on an invalid request time even when the flow default is permit', () => {
    const d = evaluateConsent([fhir('c1', permit)], req({ at: new Date('nope') }), {
      ...POLICY,
      defaultDecision: 'permit',
    });
    expect(d.decision).toBe('deny');
  });
});

describe('evaluateConsent: provision trees', () => {
  it('applies a nested deny inside a permit only where it matches', () => {
    const state = fhir('c1', {
      type: 'permit',
      purpose: [purpose('TREAT'), purpose('HOPERAT')],
      provision: [
        { type: 'deny', class: [{ system: 'http://hl7.org/fhir/resource-types', code: 'Observation' }] },
      ],
    });
    expect(evaluateConsent([state], req(), POLICY).basis).toMatchObject({
      provisionPath: 'provision.provision[0]',
    });
    expect(evaluateConsent([state], req(), POLICY).decision).toBe('deny');
    const patient = evaluateConsent([state], req({ resourceType: 'Patient' }), POLICY);
    expect(patient).toMatchObject({ decision: 'permit', basis: { provisionPath: 'provision' } });
    // Root purposes do not cover marketing: the consent does not apply, the default decides.
    expect(
      evaluateConsent([state], req({ purpose: 'HMARKT', resourceType: 'Patient' }), POLICY).basis.rule,
    ).toBe('default');
  });

  it('denies one purpose while permitting another, following the purpose hierarchy', () => {
    const state = fhir('c1', {
      type: 'permit',
      provision: [
        { type: 'deny', purpose: [purpose('HMARKT')] },
        { type: 'deny', purpose: [purpose('HRESCH')] },
      ],
    });
    expect(evaluateConsent([state], req({ purpose: 'TREAT' }), POLICY).decision).toBe('permit');
    expect(evaluateConsent([state], req({ purpose: 'ETREAT' }), POLICY).decision).toBe('permit');
    expect(evaluateConsent([state], req({ purpose: 'HMARKT' }), POLICY).basis.provisionPath).toBe(
      'provision.provision[0]',
    );
    // CLINTRCHNPC is a kind of research: the research deny covers it.
    const research = evaluateConsent([state], req({ purpose: 'CLINTRCHNPC' }), POLICY);
    expect(research).toMatchObject({ decision: 'deny', basis: { provisionPath: 'provision.provision[1]' } });
  });

  it('a permit for a specialised purpose does not cover the general one', () => {
    const state = fhir('c1', { type: 'deny', provision: [{ type: 'permit', purpose: [purpose('ETREAT')] }] });
    expect(evaluateConsent([state], req({ purpose: 'ETREAT' }), POLICY).decision).toBe('permit');
    expect(evaluateConsent([state], req({ purpose: 'BTG' }), POLICY).decision).toBe('permit');
    expect(evaluateConsent([state], req({ purpose: 'TREAT' }), POLICY).decision).toBe('deny');
  });

  it('lets the most specific matching rule win, and deny beat permit among siblings', () => {
    const state = fhir('c1', {
      type: 'deny',
      provision: [
        {
          type: 'permit',
          purpose: [purpose('TREAT')],
          provision: [
            {
              type: 'deny',
              actor: [{ role: { coding: [{ code: 'PRCP' }] }, reference: { reference: 'Organization/ex' } }],
            },
          ],
        },
        { type: 'permit', class: [{ code: 'Patient' }] },
        { type: 'deny', class: [{ code: 'Patient' }], purpose: [purpose('TREAT')] },
      ],
    });
    expect(evaluateConsent([state], req(), POLICY)).toMatchObject({
      decision: 'permit',
      basis: { provisionPath: 'provision.provision[0]' },
    });
    expect(
      evaluateConsent([state], req({ recipient: { id: 'Organization/ex', role: 'PRCP' } }), POLICY),
    ).toMatchObject({ decision: 'deny', basis: { provisionPath: 'provision.provision[0].provision[0]' } });
    // Siblings [0] permit and [2] deny both match a Patient for treatment: deny wins.
    expect(evaluateConsent([state], req({ resourceType: 'Patient' }), POLICY)).toMatchObject({
      decision: 'deny',
      basis: { provisionPath: 'provision.provision[2]' },
    });
    // Only the plain permit [1] matches a Patient for payment.
    expect(
      evaluateConsent([state], req({ resourceType: 'Patient', purpose: 'HPAYMT' }), POLICY),
    ).toMatchObject({
      decision: 'permit',
      basis: { provisionPath: 'provision.provision[1]' },
    });
  });

  it('fails closed on criteria the request cannot answer', () => {
    const labelled = fhir('c1', {
      type: 'permit',
      provision: [
        {
          type: 'deny',
          securityLabel: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'PSY' }],
        },
      ],
    });
    const unknown = evaluateConsent([labelled], req(), POLICY);
    expect(unknown).toMatchObject({ decision: 'deny', basis: { provisionPath: 'provision.provision[0]' } });
    expect(unknown.basis.reason).toContain('request lacks data');
    expect(evaluateConsent([labelled], req({ securityLabels: [] }), POLICY).decision).toBe('permit');
    expect(evaluateConsent([labelled], req({ securityLabels: [{ code: 'PSY' }] }), POLICY).decision).toBe(
      'deny',
    );

    const coded = fhir('c2', {
      type: 'deny',
      provision: [{ type: 'permit', code: [{ coding: [{ system: 'http://loinc.org', code: '1-8' }] }] }],
    });
    expect(evaluateConsent([coded], req(), POLICY).decision).toBe('deny');
    expect(
      evaluateConsent([coded], req({ codes: [{ system: 'http://loinc.org', code: '1-8' }] }), POLICY)
        .decision,
    ).toBe('permit');
    expect(
      evaluateConsent([coded], req({ codes: [{ system: 'http://snomed.info/sct', code: '1-8' }] }), POLICY)
        .decision,
    ).toBe('deny');
  });

  it('treats confidentiality labels as a high-water mark', () => {
    const conf = 'http://terminology.hl7.org/CodeSystem/v3-Confidentiality';
    const state = fhir('c1', {
      type: 'permit',
      provision: [{ type: 'deny', securityLabel: [{ system: conf, code: 'R' }] }],
    });
    expect(
      evaluateConsent([state], req({ securityLabels: [{ system: conf, code: 'N' }] }), POLICY).decision,
    ).toBe('deny');
    expect(
      evaluateConsent([state], req({ securityLabels: [{ system: conf, code: 'R' }] }), POLICY).decision,
    ).toBe('deny');
    expect(
      evaluateConsent([state], req({ securityLabels: [{ system: conf, code: 'V' }] }), POLICY).decision,
    ).toBe('permit');
  });

  it('does not match collect/correct-only rules to a disclosure', () => {
    const state = fhir('c1', {
      type: 'permit',
      provision: [
        { type: 'deny', action: [{ coding: [{ code: 'correct' }] }] },
        { type: 'deny', action: [{ coding: [{ code: 'collect' }] }] },
      ],
    });
    expect(evaluateConsent([state], req(), POLICY).decision).toBe('permit');
  });

  it('uses the base policy rule only for a consent without provisions', () => {
    const optIn = fhir('c1', undefined);
    expect(evaluateConsent([optIn], req(), POLICY)).toMatchObject({
      decision: 'permit',
      basis: { rule: 'base-policy', provisionPath: 'policyRule' },
    });
    // A bare opt-in does not authorise marketing or research.
    expect(evaluateConsent([optIn], req({ purpose: 'HMARKT' }), POLICY).basis.rule).toBe('default');
    expect(
      evaluateConsent([optIn], req({ purpose: 'HRESCH' }), { ...POLICY, basePermitPurposes: ['HRESCH'] })
        .decision,
    ).toBe('permit');
    const optOut = fhir('c2', undefined, { policyRule: { coding: [{ code: 'OPTOUT' }] } });
    expect(
      evaluateConsent([optOut], req({ purpose: 'HMARKT' }), { ...POLICY, defaultDecision: 'permit' })
        .decision,
    ).toBe('deny');
  });
});

describe('evaluateConsent: several consents', () => {
  const permit = (id: string, dateTime: string) => fhir(id, { type: 'permit' }, { dateTime });
  const deny = (id: string, dateTime: string) => fhir(id, { type: 'deny' }, { dateTime });

  it('lets the most recently recorded applicable consent decide, whatever the input order', () => {
    const older = permit('old', '2020-01-01');
    const newer = deny('new', '2022-01-01');
    for (const states of [
      [older, newer],
      [newer, older],
    ]) {
      expect(evaluateConsent(states, req(), POLICY)).toMatchObject({
        decision: 'deny',
        basis: { consentRef: 'epic:Consent/new' },
      });
    }
    const renewed = permit('renewed', '2023-05-05');
    expect(evaluateConsent([older, newer, renewed], req(), POLICY).basis.consentRef).toBe(
      'epic:Consent/renewed',
    );
  });

  it('skips a newer consent that does not apply and falls back to an older one', () => {
    const older = permit('old', '2020-01-01');
    const newerNarrow = fhir(
      'new',
      { type: 'deny', purpose: [purpose('HMARKT')] },
      { dateTime: '2022-01-01' },
    );
    expect(evaluateConsent([older, newerNarrow], req(), POLICY).basis.consentRef).toBe('epic:Consent/old');
    expect(evaluateConsent([older, newerNarrow], req({ purpose: 'HMARKT' }), POLICY).basis.consentRef).toBe(
      'epic:Consent/new',
    );
  });

  it('breaks a tie in recording time with deny', () => {
    const a = permit('a', '2021-01-01');
    const b = deny('b', '2021-01-01');
    expect(evaluateConsent([a, b], req(), POLICY).decision).toBe('deny');
    expect(evaluateConsent([b, a], req(), POLICY).decision).toBe('deny');
  });
});

describe('evaluateConsent on the official examples', () => {
  const dir = sharedDataDir();
  const load = (name: string): ConsentState => {
    if (dir === undefined) throw new Error('shared data is required');
    const json = JSON.parse(
      readFileSync(join(dir, 'fhir-r4-examples', `Consent-consent-example-${name}.json`), 'utf8'),
    );
    return unwrap(consentFromFhir(json, OPTIONS));
  };
  const forPatient = (state: ConsentState, partial: Partial<ConsentRequest>) =>
    evaluateConsent([state], req({ subject: state.subject, ...partial }), POLICY);

  it('smartonfhir: MedicationRequest for 30 minutes, nothing else', () => {
    const smart = load('smartonfhir');
    const at = new Date('2016-06-23T07:10:00Z');
    expect(forPatient(smart, { at, resourceType: 'MedicationRequest' })).toMatchObject({
      decision: 'permit',
      basis: {
        consentRef: 'epic:Consent/consent-example-smartonfhir',
        provisionPath: 'provision.provision[0]',
      },
    });
    const other = forPatient(smart, { at, resourceType: 'Observation' });
    expect(other).toMatchObject({ decision: 'deny', basis: { provisionPath: 'provision' } });
    expect(other.basis.reason).toContain('untyped provision read as deny');
    const later = forPatient(smart, {
      at: new Date('2016-06-23T07:40:00Z'),
      resourceType: 'MedicationRequest',
    });
    expect(later).toMatchObject({
      decision: 'deny',
      basis: { rule: 'default', skipped: [{ why: 'expired' }] },
    });
  });

  it('notOrg: withholds from one organisation only', () => {
    const notOrg = load('notOrg');
    const at = new Date('2020-01-01Z');
    expect(forPatient(notOrg, { at, recipient: { id: 'Organization/f001', role: 'PRCP' } })).toMatchObject({
      decision: 'deny',
      basis: { rule: 'provision', provisionPath: 'provision' },
    });
    const elsewhere = evaluateConsent(
      [notOrg],
      req({ subject: notOrg.subject, at, recipient: { id: 'Organization/other', role: 'PRCP' } }),
      { ...POLICY, defaultDecision: 'not-applicable' },
    );
    expect(elsewhere).toMatchObject({ decision: 'not-applicable', basis: { rule: 'default' } });
  });

  it('Emergency and notThis: deny, failing closed where the request cannot tell', () => {
    const emergency = load('Emergency');
    expect(forPatient(emergency, { purpose: 'ETREAT' }).basis.provisionPath).toBe('provision.provision[0]');
    const notThis = load('notThis');
    expect(forPatient(notThis, { resourceRef: 'Task/example3' }).decision).toBe('deny');
    expect(forPatient(notThis, { resourceRef: 'Task/other' }).decision).toBe('deny');
  });
});

// ---- properties ---------------------------------------------------------------------------------

const PURPOSES = ['TREAT', 'ETREAT', 'HPAYMT', 'HOPERAT', 'HRESCH', 'CLINTRCH', 'HMARKT', 'PUBHLTH'];
const TYPES = ['Patient', 'Observation', 'Practitioner', 'Communication'];
const LABELS = ['PSY', 'SUD', 'HIV'];
const RECIPIENTS = ['Organization/a', 'Organization/b', 'Practitioner/c'];
const T0 = Date.UTC(2024, 0, 1);

const periodArb = fc.option(
  fc.tuple(fc.integer({ min: 0, max: 400 }), fc.integer({ min: 1, max: 400 })).map(([s, len]) => ({
    start: T0 + s * 86_400_000,
    end: T0 + (s + len) * 86_400_000,
  })),
  { nil: undefined },
);

function provisionArb(types: readonly ProvisionType[], depth = 3): fc.Arbitrary<Provision> {
  const children: fc.Arbitrary<Provision[]> =
    depth === 0 ? fc.constant([]) : fc.array(provisionArb(types, depth - 1), { maxLength: 2 });
  return fc
    .record({
      type: fc.constantFrom(...types),
      period: periodArb,
      actors: fc
        .subarray(RECIPIENTS, { maxLength: 2 })
        .map((refs) => refs.map((reference) => ({ roles: ['PRCP'], reference }))),
      actions: fc.constant([] as string[]),
      purposes: fc
        .subarray(PURPOSES, { maxLength: 2 })
        .map((ps) => ps.map((code) => ({ system: PURPOSE_OF_USE_SYSTEM, code }))),
      classes: fc.subarray(TYPES, { maxLength: 2 }).map((cs) => cs.map((code): CodeRef => ({ code }))),
      codes: fc.constant([] as CodeRef[]),
      securityLabels: fc
        .subarray(LABELS, { maxLength: 1 })
        .map((ls) => ls.map((code): CodeRef => ({ code }))),
      data: fc.constant([]),
      provisions: children,
    })
    .map(({ period, ...rest }) => (period === undefined ? rest : { ...rest, period }));
}

function stateArb(types: readonly ProvisionType[], subject: string): fc.Arbitrary<ConsentState> {
  return fc
    .record({
      id: fc.string({ minLength: 1, maxLength: 6 }),
      status: fc.constantFrom('active', 'active', 'inactive', 'revoked', 'draft') as fc.Arbitrary<
        ConsentState['status']
      >,
      recordedAt: fc.integer({ min: 0, max: 1000 }).map((d) => T0 + d * 3_600_000),
      provision: provisionArb(types),
    })
    .map(({ id, status, recordedAt, provision }) => ({
      subject,
      status,
      scope: { code: 'patient-privacy' },
      categories: [],
      recordedAt,
      period: provision.period ?? {},
      provision,
      source: { system: 'epic', resourceType: 'Consent', id },
      policyVersion: 'v1',
    }));
}

const requestArb: fc.Arbitrary<ConsentRequest> = fc
  .record({
    subject: fc.constant(SUBJECT),
    purpose: fc.constantFrom(...PURPOSES),
    recipient: fc.constantFrom(...RECIPIENTS).map((id) => ({ id, role: 'PRCP' })),
    resourceType: fc.constantFrom(...TYPES),
    securityLabels: fc.option(
      fc.subarray(LABELS).map((ls) => ls.map((code) => ({ code }))),
      { nil: undefined },
    ),
    at: fc.integer({ min: -10, max: 900 }).map((d) => new Date(T0 + d * 86_400_000)),
  })
  .map(({ securityLabels, ...rest }) => (securityLabels === undefined ? rest : { ...rest, securityLabels }));

/** Inserts `deny` as a child of the provision at `at` (a pre-order index; wraps around the tree). */
function withDenyAt(root: Provision, deny: Provision, at: number): Provision {
  const nodes: Provision[] = [];
  const walk = (p: Provision): void => {
    nodes.push(p);
    for (const c of p.provisions) walk(c);
  };
  walk(root);
  const target = nodes[at % nodes.length] as Provision;
  const rebuild = (p: Provision): Provision => ({
    ...p,
    provisions: [...p.provisions.map(rebuild), ...(p === target ? [deny] : [])],
  });
  return rebuild(root);
}

describe('evaluateConsent properties', () => {
  it('adding a deny provision anywhere never widens what is permitted', () => {
    fc.assert(
      fc.property(
        fc.array(stateArb(['permit', 'deny'], SUBJECT), { minLength: 1, maxLength: 3 }),
        fc.nat(),
        fc.nat(),
        provisionArb(['deny'], 1),
        requestArb,
        fc.constantFrom<'deny' | 'permit' | 'not-applicable'>('deny', 'permit', 'not-applicable'),
        (states, which, at, deny, request, defaultDecision) => {
          const policy = { ...POLICY, defaultDecision };
          const before = evaluateConsent(states, request, policy).decision;
          const index = which % states.length;
          const changed = states.map((s, i) =>
            i === index && s.provision ? { ...s, provision: withDenyAt(s.provision, deny, at) } : s,
          );
          const after = evaluateConsent(changed, request, policy).decision;
          // What is permitted after the change was permitted before it.
          if (after === 'permit') expect(before).toBe('permit');
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('a deny-only consent never permits any request', () => {
    fc.assert(
      fc.property(stateArb(['deny'], SUBJECT), requestArb, (state, request) => {
        expect(evaluateConsent([state], request, POLICY).decision).not.toBe('permit');
        expect(
          evaluateConsent([state], request, { ...POLICY, defaultDecision: 'not-applicable' }).decision,
        ).not.toBe('permit');
      }),
      { numRuns: 500 },
    );
  });

  it('consents that are not active never change the decision', () => {
    fc.assert(
      fc.property(
        fc.array(stateArb(['permit', 'deny'], SUBJECT), { maxLength: 4 }),
        stateArb(['permit'], SUBJECT),
        fc.constantFrom('inactive', 'revoked', 'draft', 'rejected') as fc.Arbitrary<ConsentState['status']>,
        requestArb,
        (states, extra, status, request) => {
          const without = evaluateConsent(states, request, POLICY);
          const withIt = evaluateConsent([...states, { ...extra, status }], request, POLICY);
          expect(withIt.decision).toBe(without.decision);
          expect(withIt.basis.consentRef).toBe(without.basis.consentRef);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('the decision does not depend on the order of the consents', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(stateArb(['permit', 'deny'], SUBJECT), { maxLength: 5, selector: (s) => s.source.id }),
        requestArb,
        fc.nat(),
        (states, request, k) => {
          const rotated = states.map((_, i) => states[(i + k) % states.length] as ConsentState);
          const shuffled = rotated.reverse();
          const a = evaluateConsent(states, request, POLICY);
          const b = evaluateConsent(shuffled, request, POLICY);
          expect([b.decision, b.basis.consentRef, b.basis.provisionPath]).toEqual([
            a.decision,
            a.basis.consentRef,
            a.basis.provisionPath,
          ]);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('with no consents the default always applies', () => {
    fc.assert(
      fc.property(
        requestArb,
        fc.constantFrom('permit', 'deny', 'not-applicable') as fc.Arbitrary<
          'permit' | 'deny' | 'not-applicable'
        >,
        (request, defaultDecision) => {
          expect(evaluateConsent([], request, { ...POLICY, defaultDecision }).decision).toBe(defaultDecision);
        },
      ),
    );
  });
});
