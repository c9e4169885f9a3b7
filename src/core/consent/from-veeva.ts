/**
 * Veeva CRM Multichannel_Consent_vod__c → ConsentState (one state per opt event). Never throws.
 *
 * Mapping (see ../shared/data/veeva/MODEL.md §4):
 * - Opt_Type_vod__c Opt_In_vod → root permit, Opt_Out_vod → root deny, over the channel's purposes and
 *   resource types from the channel table (veeva-channels.ts), keyed by the record type DeveloperName.
 * - Period: an opt-in is live from Capture_Datetime_vod__c until Opt_Expiration_Date_vod__c ("live while
 *   the expiration date is after today", so the expiration day itself is out). An opt-in without an
 *   expiration date is not live (Veeva requires the date on current consents) and imports as inactive.
 *   An opt-out stays in force from its capture time until a later opt-in supersedes it: Veeva sets its
 *   expiration to the previous day only so that a same-day opt-in wins, which the most-recent rule of
 *   evaluate.ts already gives.
 * - recordedAt = capture time, so "latest record wins" is the evaluator's most-recent rule.
 * - Product / content type / sub channel become codes. A deny lists each dimension on its own (any of them
 *   matching denies: wider, so safer). A permit naming more than one dimension must match all of them,
 *   which FHIR-style code lists cannot express, so it carries one composite code (`veevaLineCode`) that a
 *   request must carry exactly.
 * - The channel value (e-mail address, phone) is PHI-adjacent and never copied.
 */
import type { PseudonymKey } from '../anonymize/pseudonym.ts';
import { pseudonymize } from '../anonymize/pseudonym.ts';
import type { ErrorCode } from '../errors/index.ts';
import { isJsonObject, str } from '../fhir/resource.ts';
import { fail, type Issue, issue, type Outcome, ok, warning } from '../mapping/outcome.ts';
import type { CodeRef, ConsentState, Provision, ProvisionType } from './model.ts';
import { PURPOSE_OF_USE_SYSTEM } from './purpose.ts';
import { parseFhirTime } from './time.ts';
import {
  VEEVA_CHANNEL_SYSTEM,
  VEEVA_CHANNEL_TABLE,
  VEEVA_CONTENT_TYPE_SYSTEM,
  VEEVA_LINE_SYSTEM,
  VEEVA_PRODUCT_SYSTEM,
  VEEVA_SUB_CHANNEL_SYSTEM,
  type VeevaChannelTable,
} from './veeva-channels.ts';

export interface VeevaConsentOptions {
  readonly pseudonymKey: PseudonymKey;
  /** The flow's name for the CRM; defaults to `veeva`. */
  readonly system?: string;
  readonly channels?: VeevaChannelTable;
  /** RecordTypeId → DeveloperName, for records queried without the `RecordType` relationship. */
  readonly recordTypes?: Readonly<Record<string, string>>;
  /** `Organization/…` of the company the HCP consents to; when set, the consent names it as recipient. */
  readonly company?: string;
  readonly policyVersion?: string;
}

export const VEEVA_CONSENT_OBJECT = 'Multichannel_Consent_vod__c';
export const VEEVA_CONSENT_SCOPE: CodeRef = { system: 'urn:sluice:consent-scope', code: 'hcp-multichannel' };

const OPT_TYPES: Readonly<Record<string, ProvisionType>> = { Opt_In_vod: 'permit', Opt_Out_vod: 'deny' };

/** The composite code of a consent line naming several dimensions; requests carry it to match such a permit. */
export function veevaLineCode(line: {
  product?: string;
  contentType?: string;
  subChannel?: string;
}): CodeRef {
  const parts = [
    line.product === undefined ? '' : `product=${line.product}`,
    line.contentType === undefined ? '' : `content=${line.contentType}`,
    line.subChannel === undefined ? '' : `sub=${line.subChannel}`,
  ].filter((p) => p !== '');
  return { system: VEEVA_LINE_SYSTEM, code: parts.join(';') };
}

export function consentFromVeeva(input: unknown, options: VeevaConsentOptions): Outcome<ConsentState> {
  const errors: Issue[] = [];
  const warnings: Issue[] = [];
  if (!isJsonObject(input)) {
    return fail('CONSENT_MALFORMED', [
      issue('CONSENT_MALFORMED', '', `not a ${VEEVA_CONSENT_OBJECT} record`),
    ]);
  }
  const system = options.system ?? 'veeva';
  const id = str(input.Id);
  if (id === undefined) errors.push(issue('CONSENT_MALFORMED', 'Id', 'record has no Id to cite'));

  const account = str(input.Account_vod__c);
  if (account === undefined) errors.push(issue('CONSENT_SUBJECT_MISSING', 'Account_vod__c', 'no account'));

  const optRaw = input.Opt_Type_vod__c;
  const type = typeof optRaw === 'string' ? OPT_TYPES[optRaw] : undefined;
  if (type === undefined) {
    errors.push(
      issue(
        'CONSENT_PROVISION_TYPE_UNKNOWN',
        'Opt_Type_vod__c',
        'expected the API name Opt_In_vod or Opt_Out_vod',
      ),
    );
  }

  const recordType =
    (isJsonObject(input.RecordType) ? str(input.RecordType.DeveloperName) : undefined) ??
    options.recordTypes?.[str(input.RecordTypeId) ?? ''];
  const table = options.channels ?? VEEVA_CHANNEL_TABLE;
  const channel = recordType === undefined ? undefined : table[recordType];
  if (channel === undefined) {
    errors.push(
      issue(
        'CONSENT_CHANNEL_UNMAPPED',
        'RecordType.DeveloperName',
        recordType === undefined
          ? 'record type unknown'
          : `record type ${recordType} is not in the channel table`,
      ),
    );
  }

  const capture =
    input.Capture_Datetime_vod__c === undefined ? undefined : parseFhirTime(input.Capture_Datetime_vod__c);
  if (input.Capture_Datetime_vod__c === undefined || input.Capture_Datetime_vod__c === null) {
    errors.push(issue('CONSENT_MALFORMED', 'Capture_Datetime_vod__c', 'capture time is missing'));
  } else if (capture === undefined) {
    errors.push(issue('CONSENT_PERIOD_INVALID', 'Capture_Datetime_vod__c', 'not a datetime'));
  }
  const expRaw = input.Opt_Expiration_Date_vod__c;
  const expiration = expRaw === undefined || expRaw === null ? undefined : parseFhirTime(expRaw);
  if (expRaw !== undefined && expRaw !== null && expiration === undefined) {
    errors.push(issue('CONSENT_PERIOD_INVALID', 'Opt_Expiration_Date_vod__c', 'not a date'));
  }
  const modRaw = input.SystemModstamp ?? input.LastModifiedDate;
  const modified = modRaw === undefined || modRaw === null ? undefined : parseFhirTime(modRaw);
  if (modRaw !== undefined && modRaw !== null && modified === undefined) {
    errors.push(issue('CONSENT_PERIOD_INVALID', 'SystemModstamp', 'not a datetime'));
  }

  if (errors.length > 0 || id === undefined || account === undefined || type === undefined) {
    return fail((errors[0]?.code ?? 'CONSENT_MALFORMED') as ErrorCode, errors);
  }
  if (channel === undefined || capture === undefined || recordType === undefined) {
    return fail('CONSENT_MALFORMED', [issue('CONSENT_MALFORMED', '', 'incomplete consent')]);
  }

  let status: ConsentState['status'] = input.IsDeleted === true ? 'inactive' : 'active';
  if (type === 'permit' && expiration === undefined && status === 'active') {
    status = 'inactive';
    warnings.push(
      warning('CONSENT_NOT_LIVE', 'Opt_Expiration_Date_vod__c', 'opt-in without expiration date is not live'),
    );
  }
  // "Live while the expiration date is after today": the expiration day's first instant ends the period.
  const period = {
    start: capture.start,
    ...(type === 'permit' && expiration !== undefined ? { end: expiration.start } : {}),
  };

  const dims: { product?: string; contentType?: string; subChannel?: string } = {};
  const product = str(input.Product_vod__c);
  const contentType = str(input.Content_Type_vod__c);
  const subChannel = str(input.Sub_Channel_Key_vod__c);
  const codes: CodeRef[] = [];
  if (product !== undefined) {
    dims.product = product;
    codes.push({ system: VEEVA_PRODUCT_SYSTEM, code: product });
  }
  if (contentType !== undefined) {
    dims.contentType = contentType;
    codes.push({ system: VEEVA_CONTENT_TYPE_SYSTEM, code: contentType });
  }
  if (subChannel !== undefined) {
    dims.subChannel = subChannel;
    codes.push({ system: VEEVA_SUB_CHANNEL_SYSTEM, code: subChannel });
  }
  const provisionCodes = type === 'permit' && codes.length > 1 ? [veevaLineCode(dims)] : codes;
  if (provisionCodes !== codes) {
    warnings.push(
      warning('CONSENT_COMPOSITE_LINE', 'Consent_Line_vod__c', 'opt-in names several dimensions'),
    );
  }

  const provision: Provision = {
    type,
    period,
    actors: options.company === undefined ? [] : [{ roles: ['PRCP'], reference: options.company }],
    actions: [],
    purposes: channel.purposes.map((code) => ({ system: PURPOSE_OF_USE_SYSTEM, code })),
    classes: channel.classes.map((code) => ({ code })),
    codes: provisionCodes,
    securityLabels: [],
    data: [],
    provisions: [],
  };
  const consentType = str(input.Consent_Type_vod__c);
  return ok(
    {
      subject: pseudonymize(options.pseudonymKey, system, 'Account', account),
      status,
      scope: VEEVA_CONSENT_SCOPE,
      categories: [
        { system: VEEVA_CHANNEL_SYSTEM, code: channel.channel },
        { system: 'urn:sluice:veeva:RecordType', code: recordType },
      ],
      recordedAt: capture.start,
      period,
      provision,
      source: {
        system,
        resourceType: VEEVA_CONSENT_OBJECT,
        id,
        ...(modified === undefined ? {} : { lastUpdated: modified.start }),
      },
      policyVersion:
        options.policyVersion ??
        (consentType === undefined ? 'unversioned' : `veeva:Consent_Type_vod__c/${consentType}`),
    },
    warnings,
  );
}
