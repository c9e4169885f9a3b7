import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sharedDataDir } from '../../testkit/data.ts';
import { pseudonymize } from '../anonymize/pseudonym.ts';
import { consentFromFhir, MAX_PROVISION_DEPTH } from './from-fhir.ts';
import type { ConsentState, Provision } from './model.ts';
import { TEST_KEY, unwrap } from './testing.ts';

const OPTIONS = { system: 'epic', pseudonymKey: TEST_KEY };

function examplesDir(): string {
  const dir = sharedDataDir();
  if (dir === undefined) throw new Error('shared data (../shared/data) is required for the consent tests');
  return join(dir, 'fhir-r4-examples');
}

function loadExamples(): Map<string, Record<string, unknown>> {
  const dir = examplesDir();
  const files = readdirSync(dir).filter((f) => /^Consent-.*\.json$/.test(f));
  return new Map(
    files.map((f) => [f, JSON.parse(readFileSync(join(dir, f), 'utf8')) as Record<string, unknown>]),
  );
}

const examples = loadExamples();
function example(name: string): ConsentState {
  const json = examples.get(`Consent-consent-example-${name}.json`);
  if (json === undefined) throw new Error(`missing example ${name}`);
  return unwrap(consentFromFhir(json, OPTIONS));
}

/** A minimal valid consent to mutate in the malformed-input tests. */
function base(): Record<string, unknown> {
  return {
    resourceType: 'Consent',
    id: 'c1',
    status: 'active',
    scope: {
      coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }],
    },
    category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
    patient: { reference: 'Patient/123' },
    dateTime: '2024-01-01',
    policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTIN' }] },
    provision: { type: 'permit', period: { start: '2024-01-01', end: '2025-01-01' } },
  };
}

function failureCodes(input: unknown): { code: string; paths: string[]; codes: string[] } {
  const outcome = consentFromFhir(input, OPTIONS);
  if (outcome.ok) throw new Error('expected a failure');
  return {
    code: outcome.code,
    paths: outcome.issues.map((i) => i.path),
    codes: outcome.issues.map((i) => i.code),
  };
}

describe('consentFromFhir on the official R4 examples', () => {
  it('reads all twelve examples', () => {
    expect(examples.size).toBe(12);
    for (const [file, json] of examples) {
      const outcome = consentFromFhir(json, OPTIONS);
      expect(outcome.ok, file).toBe(true);
      if (!outcome.ok) continue;
      const patient = (json.patient as { reference: string }).reference.split('/')[1] as string;
      expect(outcome.value.subject).toBe(pseudonymize(TEST_KEY, 'epic', 'Patient', patient));
      // No clear identifier or name leaks into the state.
      const text = JSON.stringify(outcome.value);
      expect(text).not.toContain(`Patient/${patient}`);
      expect(text).not.toContain('van de Heuvel');
      expect(outcome.value.source).toMatchObject({ system: 'epic', resourceType: 'Consent', id: json.id });
      expect(outcome.value.status).toBe('active');
    }
  });

  it('reads an untyped root provision as deny, with a warning', () => {
    const outcome = consentFromFhir(examples.get('Consent-consent-example-basic.json'), OPTIONS);
    expect(outcome.ok && outcome.warnings.map((w) => w.code)).toEqual(['CONSENT_ROOT_TYPE_INFERRED']);
    const basic = example('basic');
    expect(basic.provision).toMatchObject({ type: 'deny', typeInferred: true });
    // End date 2016-01-01 is in force through that day.
    expect(basic.period).toEqual({ start: Date.UTC(1964, 0, 1), end: Date.UTC(2016, 0, 2) });
    expect(basic.recordedAt).toBe(Date.UTC(2016, 4, 11));
    expect(basic.policyRule?.code).toBe('OPTIN');
    expect(basic.baseDecision).toBe('permit');
  });

  it('keeps explicit types, actors, actions and nested rules', () => {
    const notOrg = example('notOrg');
    expect(notOrg.provision).toMatchObject({
      type: 'deny',
      actors: [{ roles: ['PRCP'], reference: 'Organization/f001' }],
      actions: ['access', 'correct'],
    });
    expect(notOrg.provision?.typeInferred).toBeUndefined();

    const signature = example('signature');
    const nested = signature.provision?.provisions[0] as Provision;
    expect(nested.type).toBe('permit');
    expect(nested.classes).toEqual([{ system: 'urn:ietf:bcp:13', code: 'application/hl7-cda+xml' }]);
    expect(nested.codes.map((c) => c.code)).toEqual(['34133-9', '18842-5']);
    expect(signature.recordedAt).toBe(Date.UTC(2016, 4, 26, 4, 41, 10));

    const emergency = example('Emergency');
    expect(emergency.provision?.purposes.map((p) => p.code)).toEqual(['ETREAT']);
    expect(emergency.provision?.provisions[0]?.type).toBe('deny');
    expect(emergency.baseDecision).toBe('deny');

    const notThis = example('notThis');
    expect(notThis.provision?.data).toEqual([{ meaning: 'related', reference: 'Task/example3' }]);

    const smart = example('smartonfhir');
    expect(smart.period).toEqual({
      start: Date.UTC(2016, 5, 23, 7, 2, 33),
      end: Date.UTC(2016, 5, 23, 7, 32, 34),
    });
    expect(smart.provision?.provisions[0]?.classes).toEqual([
      { system: 'http://hl7.org/fhir/resource-types', code: 'MedicationRequest' },
    ]);
  });

  it('lets untyped nested provisions inherit the parent type', () => {
    const outcome = consentFromFhir(examples.get('Consent-consent-example-pkb.json'), OPTIONS);
    expect(outcome.ok).toBe(true);
    if (!outcome.ok) return;
    const nested = outcome.value.provision?.provisions ?? [];
    expect(nested).toHaveLength(11);
    expect(nested.every((p) => p.type === 'deny' && p.typeInferred === true)).toBe(true);
    expect(nested.map((p) => p.securityLabels[0]?.code)).toContain('PSY');
    expect(outcome.warnings.filter((w) => w.code === 'CONSENT_PROVISION_TYPE_INHERITED')).toHaveLength(11);
    expect(outcome.warnings[1]?.path).toBe('provision.provision[0].type');
  });
});

describe('consentFromFhir on malformed input', () => {
  it('refuses what is not a Consent', () => {
    expect(failureCodes({ resourceType: 'Patient', id: 'x' }).code).toBe('CONSENT_MALFORMED');
    expect(failureCodes(null).code).toBe('CONSENT_MALFORMED');
    expect(failureCodes('{"resourceType":"Consent"}').code).toBe('CONSENT_MALFORMED');
  });

  it('fails a consent without status or with an unknown status', () => {
    const noStatus = base();
    delete noStatus.status;
    expect(failureCodes(noStatus)).toMatchObject({ code: 'CONSENT_STATUS_INVALID', paths: ['status'] });
    expect(failureCodes({ ...base(), status: 'revoked' }).code).toBe('CONSENT_STATUS_INVALID');
    expect(failureCodes({ ...base(), status: 'ACTIVE' }).code).toBe('CONSENT_STATUS_INVALID');
  });

  it('fails bad periods and dates', () => {
    expect(
      failureCodes({
        ...base(),
        provision: { type: 'permit', period: { start: '2025-01-01', end: '2024-01-01' } },
      }),
    ).toMatchObject({ code: 'CONSENT_PERIOD_INVALID', paths: ['provision.period'] });
    expect(
      failureCodes({ ...base(), provision: { type: 'permit', period: { end: '2024-13-01' } } }),
    ).toMatchObject({
      code: 'CONSENT_PERIOD_INVALID',
      paths: ['provision.period.end'],
    });
    expect(failureCodes({ ...base(), dateTime: 'last tuesday' }).paths).toEqual(['dateTime']);
    expect(
      failureCodes({
        ...base(),
        provision: { type: 'permit', provision: [{ type: 'deny', period: 'always' }] },
      }).paths,
    ).toEqual(['provision.provision[0].period']);
  });

  it('fails unknown provision types, also nested ones', () => {
    expect(failureCodes({ ...base(), provision: { type: 'maybe' } })).toMatchObject({
      code: 'CONSENT_PROVISION_TYPE_UNKNOWN',
      paths: ['provision.type'],
    });
    expect(
      failureCodes({
        ...base(),
        provision: { type: 'permit', provision: [{ type: 'deny' }, { type: 'PERMIT' }] },
      }).paths,
    ).toEqual(['provision.provision[1].type']);
  });

  it('fails a consent without a Patient subject', () => {
    const noPatient = base();
    delete noPatient.patient;
    expect(failureCodes(noPatient).code).toBe('CONSENT_SUBJECT_MISSING');
    expect(failureCodes({ ...base(), patient: { reference: 'Group/1' } }).code).toBe(
      'CONSENT_SUBJECT_MISSING',
    );
    expect(failureCodes({ ...base(), patient: { identifier: { value: '123' } } }).code).toBe(
      'CONSENT_SUBJECT_MISSING',
    );
  });

  it('fails shapes it cannot interpret safely', () => {
    expect(failureCodes({ ...base(), modifierExtension: [{ url: 'x', valueBoolean: true }] }).paths).toEqual([
      'modifierExtension',
    ]);
    expect(
      failureCodes({
        ...base(),
        provision: { type: 'deny', actor: [{ role: { coding: [{ code: 'PRCP' }] } }] },
      }),
    ).toMatchObject({ code: 'CONSENT_MALFORMED', paths: ['provision.actor[0].reference'] });
    expect(
      failureCodes({ ...base(), provision: { type: 'deny', purpose: { code: 'HMARKT' } } }).paths,
    ).toEqual(['provision.purpose']);
    expect(
      failureCodes({
        ...base(),
        provision: { type: 'deny', data: [{ reference: { reference: 'Task/1' } }] },
      }),
    ).toMatchObject({ code: 'CONSENT_MALFORMED', paths: ['provision.data[0]'] });
    const noId = base();
    delete noId.id;
    expect(failureCodes(noId).paths).toEqual(['id']);
    const noScope = base();
    delete noScope.scope;
    expect(failureCodes(noScope).paths).toEqual(['scope']);
  });

  it('refuses hostile nesting instead of walking it', () => {
    let provision: Record<string, unknown> = { type: 'deny' };
    for (let i = 0; i < MAX_PROVISION_DEPTH + 5; i++) provision = { type: 'permit', provision: [provision] };
    expect(failureCodes({ ...base(), provision }).code).toBe('CONSENT_MALFORMED');
    const wide = { type: 'permit', provision: Array.from({ length: 1200 }, () => ({ type: 'deny' })) };
    expect(failureCodes({ ...base(), provision: wide }).code).toBe('CONSENT_MALFORMED');
  });

  it('never puts record values in issue messages', () => {
    const outcome = consentFromFhir(
      {
        ...base(),
        patient: { reference: 'Patient/SECRET-MRN-991' },
        status: 'SECRET-STATUS',
        dateTime: 'SECRET-DATE',
      },
      OPTIONS,
    );
    expect(outcome.ok).toBe(false);
    expect(JSON.stringify(outcome)).not.toContain('SECRET');
  });

  it('derives the policy version from policy.uri unless the flow sets one', () => {
    const withPolicy = { ...base(), policy: [{ uri: 'https://example.org/policy/v3' }] };
    expect(unwrap(consentFromFhir(withPolicy, OPTIONS)).policyVersion).toBe('https://example.org/policy/v3');
    expect(unwrap(consentFromFhir(base(), OPTIONS)).policyVersion).toBe('policyRule:OPTIN');
    expect(unwrap(consentFromFhir(base(), { ...OPTIONS, policyVersion: 'flow-7' })).policyVersion).toBe(
      'flow-7',
    );
  });

  it('takes meta.versionId and meta.lastUpdated as the source version', () => {
    const state = unwrap(
      consentFromFhir({ ...base(), meta: { versionId: '4', lastUpdated: '2024-02-03T04:05:06Z' } }, OPTIONS),
    );
    expect(state.source).toEqual({
      system: 'epic',
      resourceType: 'Consent',
      id: 'c1',
      version: '4',
      lastUpdated: Date.UTC(2024, 1, 3, 4, 5, 6),
    });
  });
});
