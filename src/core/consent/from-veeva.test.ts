import { describe, expect, it } from 'vitest';
import { pseudonymize } from '../anonymize/pseudonym.ts';
import { type ConsentRequest, evaluateConsent } from './evaluate.ts';
import { consentFromVeeva, veevaLineCode } from './from-veeva.ts';
import type { ConsentState } from './model.ts';
import { TEST_KEY, unwrap } from './testing.ts';
import { VEEVA_PRODUCT_SYSTEM } from './veeva-channels.ts';

const OPTIONS = { pseudonymKey: TEST_KEY };
const ACCOUNT = '001A000001HCP0001';
const SUBJECT = pseudonymize(TEST_KEY, 'veeva', 'Account', ACCOUNT);
const POLICY = { version: 'p1' };

/** A Multichannel_Consent_vod__c row as the Salesforce REST API returns it (SOQL with RecordType). */
function record(fields: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    attributes: { type: 'Multichannel_Consent_vod__c' },
    Id: 'a3x000000000001AAA',
    Account_vod__c: ACCOUNT,
    RecordTypeId: '012000000000001AAA',
    RecordType: { DeveloperName: 'Approved_Email_vod' },
    Consent_Type_vod__c: 'a3y000000000001AAA',
    Channel_Value_vod__c: 'dr.someone@example.org',
    Opt_Type_vod__c: 'Opt_In_vod',
    Capture_Datetime_vod__c: '2024-03-01T10:15:00.000+0000',
    Opt_Expiration_Date_vod__c: '2025-03-01',
    SystemModstamp: '2024-03-01T10:15:02.000+0000',
    ...fields,
  };
}

function req(partial: Partial<ConsentRequest> = {}): ConsentRequest {
  return {
    subject: SUBJECT,
    purpose: 'HMARKT',
    recipient: { id: 'Organization/pharma', role: 'manufacturer' },
    resourceType: 'Communication',
    at: new Date('2024-06-01T00:00:00Z'),
    ...partial,
  };
}

function failure(input: unknown, options = OPTIONS): { code: string; paths: string[] } {
  const outcome = consentFromVeeva(input, options);
  if (outcome.ok) throw new Error('expected a failure');
  return { code: outcome.code, paths: outcome.issues.map((i) => i.path) };
}

describe('consentFromVeeva', () => {
  it('maps an opt-in to a permit over the channel purposes and types until the expiration date', () => {
    const state = unwrap(consentFromVeeva(record(), OPTIONS));
    expect(state).toMatchObject({
      subject: SUBJECT,
      status: 'active',
      scope: { code: 'hcp-multichannel' },
      recordedAt: Date.UTC(2024, 2, 1, 10, 15),
      period: { start: Date.UTC(2024, 2, 1, 10, 15), end: Date.UTC(2025, 2, 1) },
      source: {
        system: 'veeva',
        resourceType: 'Multichannel_Consent_vod__c',
        id: 'a3x000000000001AAA',
        lastUpdated: Date.UTC(2024, 2, 1, 10, 15, 2),
      },
      policyVersion: 'veeva:Consent_Type_vod__c/a3y000000000001AAA',
      provision: { type: 'permit', purposes: [{ code: 'HMARKT' }] },
    });
    expect(state.provision?.classes.map((c) => c.code)).toEqual([
      'Practitioner',
      'PractitionerRole',
      'Communication',
    ]);
    expect(state.categories[0]).toMatchObject({ code: 'email' });
  });

  it('copies neither the channel value nor the account id', () => {
    const text = JSON.stringify(unwrap(consentFromVeeva(record(), OPTIONS)));
    expect(text).not.toContain('example.org');
    expect(text).not.toContain(ACCOUNT);
  });

  it('is live until, not on, the expiration date', () => {
    const state = unwrap(consentFromVeeva(record(), OPTIONS));
    expect(evaluateConsent([state], req({ at: new Date('2025-02-28T23:59:59Z') }), POLICY).decision).toBe(
      'permit',
    );
    const onExpiry = evaluateConsent([state], req({ at: new Date('2025-03-01T00:00:00Z') }), POLICY);
    expect(onExpiry).toMatchObject({
      decision: 'deny',
      basis: { rule: 'default', skipped: [{ why: 'expired' }] },
    });
    // Before capture: not yet given.
    expect(evaluateConsent([state], req({ at: new Date('2024-03-01T10:14:59Z') }), POLICY).decision).toBe(
      'deny',
    );
    // Treatment is not what a marketing consent speaks for.
    expect(evaluateConsent([state], req({ purpose: 'TREAT' }), POLICY).basis.rule).toBe('default');
  });

  it('imports an opt-in without expiration date as not live', () => {
    const outcome = consentFromVeeva(record({ Opt_Expiration_Date_vod__c: null }), OPTIONS);
    expect(outcome.ok && outcome.value.status).toBe('inactive');
    expect(outcome.ok && outcome.warnings.map((w) => w.code)).toEqual(['CONSENT_NOT_LIVE']);
    if (outcome.ok) expect(evaluateConsent([outcome.value], req(), POLICY).decision).toBe('deny');
  });

  it('lets the latest capture win between opt-in and opt-out, including a same-day opt-in', () => {
    const optIn = unwrap(consentFromVeeva(record(), OPTIONS));
    // Veeva sets an opt-out's expiration to the previous day; the opt-out still holds until a later opt-in.
    const optOut = unwrap(
      consentFromVeeva(
        record({
          Id: 'a3x000000000002AAA',
          Opt_Type_vod__c: 'Opt_Out_vod',
          Capture_Datetime_vod__c: '2024-05-01T09:00:00.000+0000',
          Opt_Expiration_Date_vod__c: '2024-04-30',
        }),
        OPTIONS,
      ),
    );
    expect(optOut.period).toEqual({ start: Date.UTC(2024, 4, 1, 9) });
    const afterOut = evaluateConsent([optIn, optOut], req(), POLICY);
    expect(afterOut).toMatchObject({
      decision: 'deny',
      basis: { consentRef: 'veeva:Multichannel_Consent_vod__c/a3x000000000002AAA' },
    });
    const sameDayIn = unwrap(
      consentFromVeeva(
        record({ Id: 'a3x000000000003AAA', Capture_Datetime_vod__c: '2024-05-01T15:00:00.000+0000' }),
        OPTIONS,
      ),
    );
    expect(evaluateConsent([optOut, sameDayIn, optIn], req(), POLICY)).toMatchObject({
      decision: 'permit',
      basis: { consentRef: 'veeva:Multichannel_Consent_vod__c/a3x000000000003AAA' },
    });
  });

  it('scopes product consents to requests about that product', () => {
    const productIn = unwrap(consentFromVeeva(record({ Product_vod__c: 'a00PRODUCT1' }), OPTIONS));
    const product = { system: VEEVA_PRODUCT_SYSTEM, code: 'a00PRODUCT1' };
    expect(evaluateConsent([productIn], req({ codes: [product] }), POLICY).decision).toBe('permit');
    expect(
      evaluateConsent([productIn], req({ codes: [{ ...product, code: 'a00OTHER' }] }), POLICY).decision,
    ).toBe('deny');
    expect(evaluateConsent([productIn], req(), POLICY).decision).toBe('deny');

    // An opt-out naming a product denies even a request that does not say which product it is about.
    const productOut = unwrap(
      consentFromVeeva(record({ Opt_Type_vod__c: 'Opt_Out_vod', Product_vod__c: 'a00PRODUCT1' }), OPTIONS),
    );
    expect(evaluateConsent([productOut], req(), { ...POLICY, defaultDecision: 'permit' }).basis.rule).toBe(
      'provision',
    );
  });

  it('requires the whole consent line when an opt-in names several dimensions', () => {
    const outcome = consentFromVeeva(
      record({ Product_vod__c: 'a00P', Content_Type_vod__c: 'a01PROMO' }),
      OPTIONS,
    );
    expect(outcome.ok && outcome.warnings.map((w) => w.code)).toEqual(['CONSENT_COMPOSITE_LINE']);
    const state = unwrap(outcome);
    const productOnly = req({ codes: [{ system: VEEVA_PRODUCT_SYSTEM, code: 'a00P' }] });
    expect(evaluateConsent([state], productOnly, POLICY).decision).toBe('deny');
    const line = req({ codes: [veevaLineCode({ product: 'a00P', contentType: 'a01PROMO' })] });
    expect(evaluateConsent([state], line, POLICY).decision).toBe('permit');
  });

  it('resolves the channel from RecordTypeId and from a custom table', () => {
    const noRelationship = record({ RecordType: undefined, RecordTypeId: '012SMS' });
    expect(failure(noRelationship).code).toBe('CONSENT_CHANNEL_UNMAPPED');
    const options = {
      ...OPTIONS,
      recordTypes: { '012SMS': 'SMS_Consent__c' },
      channels: { SMS_Consent__c: { channel: 'sms', purposes: ['HMARKT'], classes: ['Communication'] } },
    };
    const state = unwrap(consentFromVeeva(noRelationship, options));
    expect(state.categories[0]?.code).toBe('sms');
    expect(evaluateConsent([state], req(), POLICY).decision).toBe('permit');
    expect(evaluateConsent([state], req({ resourceType: 'Practitioner' }), POLICY).decision).toBe('deny');
  });

  it('names the company as the only recipient when configured', () => {
    const state = unwrap(consentFromVeeva(record(), { ...OPTIONS, company: 'Organization/pharma' }));
    expect(evaluateConsent([state], req(), POLICY).decision).toBe('permit');
    expect(
      evaluateConsent(
        [state],
        req({ recipient: { id: 'Organization/broker', role: 'manufacturer' } }),
        POLICY,
      ).decision,
    ).toBe('deny');
  });

  it('fails malformed records with specific codes', () => {
    expect(failure(record({ Opt_Type_vod__c: 'Opt In' }))).toEqual({
      code: 'CONSENT_PROVISION_TYPE_UNKNOWN',
      paths: ['Opt_Type_vod__c'],
    });
    expect(failure(record({ RecordType: { DeveloperName: 'Fax_vod' } })).code).toBe(
      'CONSENT_CHANNEL_UNMAPPED',
    );
    expect(failure(record({ Account_vod__c: null })).code).toBe('CONSENT_SUBJECT_MISSING');
    expect(failure(record({ Capture_Datetime_vod__c: undefined }))).toEqual({
      code: 'CONSENT_MALFORMED',
      paths: ['Capture_Datetime_vod__c'],
    });
    expect(failure(record({ Capture_Datetime_vod__c: '01/03/2024' })).code).toBe('CONSENT_PERIOD_INVALID');
    expect(failure(record({ Opt_Expiration_Date_vod__c: '2025-02-30' })).paths).toEqual([
      'Opt_Expiration_Date_vod__c',
    ]);
    expect(failure(record({ Id: '' })).paths).toEqual(['Id']);
    expect(failure([record()]).code).toBe('CONSENT_MALFORMED');
  });

  it('treats a deleted record as inactive', () => {
    const state: ConsentState = unwrap(consentFromVeeva(record({ IsDeleted: true }), OPTIONS));
    expect(state.status).toBe('inactive');
    expect(evaluateConsent([state], req(), POLICY).decision).toBe('deny');
  });
});
