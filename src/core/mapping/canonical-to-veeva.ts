import type {
  CanonicalGender,
  CanonicalRecord,
  Hcp,
  Organization,
  PatientProfile,
  PostalAddress,
} from '../model/canonical.ts';
import { asExternalId, type ExternalId } from '../model/ids.ts';

/** Version of the canonical → Veeva CRM mapping; recorded on every record it writes. */
export const CANONICAL_TO_VEEVA_VERSION = 'canonical-to-veeva@1.0.0';

export type SObjectValue = string | number | boolean | null | { readonly [field: string]: string };
export type SObjectFields = Readonly<Record<string, SObjectValue>>;

/** One record to upsert into the CRM, keyed by an external id. */
export interface TargetWrite {
  readonly object: string;
  readonly externalIdField: string;
  readonly externalId: ExternalId;
  readonly fields: SObjectFields;
  /** Objects are written parents first: a lower rank goes before a higher one. */
  readonly rank: number;
}

export interface VeevaMappingConfig {
  /** Account RecordTypeIds of the target org (they differ between orgs). */
  readonly recordTypes: { readonly hcp: string; readonly hco: string };
  readonly patientProfileObject: string;
  /** The field holding Sluice's compact lineage note; omitted when the org has none. */
  readonly lineageField?: string;
}

const ACCOUNT_EXTERNAL_ID = 'External_ID_vod__c';

/** The external id under which a source resource lives in the CRM: `system:Type/id`. */
export function sourceExternalId(system: string, resourceType: string, id: string): ExternalId {
  return asExternalId(`${system}:${resourceType}/${id}`);
}

/** Maps a canonical record to the CRM records that represent it, parents first. */
export function canonicalToVeeva(record: CanonicalRecord, config: VeevaMappingConfig): TargetWrite[] {
  switch (record.kind) {
    case 'HCP':
      return hcpWrites(record, config);
    case 'Organization':
      return organizationWrites(record, config);
    case 'PatientProfile':
      return [patientProfileWrite(record, config)];
  }
}

function lineage(config: VeevaMappingConfig, source: string): Record<string, string> {
  if (config.lineageField === undefined) return {};
  // Stable content only (no run times), so an unchanged source gives an unchanged payload.
  return { [config.lineageField]: `sluice;map=${CANONICAL_TO_VEEVA_VERSION};src=${source}` };
}

function sourceLabel(record: Hcp | Organization): string {
  const { system, resourceType, id, versionId } = record.source;
  return `${system}:${resourceType}/${id}${versionId === undefined ? '' : `/_history/${versionId}`}`;
}

function hcpWrites(hcp: Hcp, config: VeevaMappingConfig): TargetWrite[] {
  const externalId = sourceExternalId(hcp.source.system, hcp.source.resourceType, hcp.source.id);
  const fields: Record<string, SObjectValue> = {
    RecordTypeId: config.recordTypes.hcp,
    FirstName: hcp.firstName ?? null,
    LastName: hcp.lastName,
    NPI_vod__c: hcp.npi ?? null,
    Gender_vod__c: veevaGender(hcp.gender),
    Credentials_vod__c: hcp.credentials ?? null,
    ...lineage(config, sourceLabel(hcp)),
  };
  return [
    { object: 'Account', externalIdField: ACCOUNT_EXTERNAL_ID, externalId, fields, rank: 0 },
    ...addressWrites(externalId, hcp.addresses, config, sourceLabel(hcp)),
  ];
}

function organizationWrites(org: Organization, config: VeevaMappingConfig): TargetWrite[] {
  const externalId = sourceExternalId(org.source.system, org.source.resourceType, org.source.id);
  const fields: Record<string, SObjectValue> = {
    RecordTypeId: config.recordTypes.hco,
    Name: org.name,
    NPI_vod__c: org.npi ?? null,
    ...lineage(config, sourceLabel(org)),
  };
  return [
    { object: 'Account', externalIdField: ACCOUNT_EXTERNAL_ID, externalId, fields, rank: 0 },
    ...addressWrites(externalId, org.addresses, config, sourceLabel(org)),
  ];
}

/**
 * Each current address of an HCP or HCO becomes an Address_vod__c under its Account, linked by the
 * Account's external id; the first is primary.
 */
function addressWrites(
  accountExternalId: ExternalId,
  addresses: readonly PostalAddress[],
  config: VeevaMappingConfig,
  source: string,
): TargetWrite[] {
  return addresses.map((address, index) => ({
    object: 'Address_vod__c',
    externalIdField: 'External_ID_vod__c',
    externalId: asExternalId(`${accountExternalId}#address/${index}`),
    rank: 1,
    fields: {
      Account_vod__r: { [ACCOUNT_EXTERNAL_ID]: accountExternalId },
      Name: address.lines[0] ?? null,
      Address_line_2_vod__c: address.lines.slice(1).join(', ') || null,
      City_vod__c: address.city ?? null,
      State_vod__c: address.state ?? null,
      Zip_vod__c: address.postalCode ?? null,
      Country_vod__c: address.country ?? null,
      Primary_vod__c: index === 0,
      ...lineage(config, `${source}#address/${index}`),
    },
  }));
}

function patientProfileWrite(profile: PatientProfile, config: VeevaMappingConfig): TargetWrite {
  // The lineage of a patient profile names the pseudonym only: the EHR id is PHI.
  return {
    object: config.patientProfileObject,
    externalIdField: 'External_ID__c',
    externalId: asExternalId(profile.pseudonym),
    rank: 0,
    fields: {
      Birth_Year__c: profile.birthYear ?? null,
      Age_Over_89__c: profile.ageOver89,
      Zip3__c: profile.zip3 ?? null,
      Gender__c: PROFILE_GENDER[profile.gender],
      Source_System__c: profile.source.system,
      ...lineage(config, `${profile.source.system}:Patient#${profile.pseudonym}`),
    },
  };
}

const PROFILE_GENDER: Record<CanonicalGender, string> = {
  male: 'Male',
  female: 'Female',
  other: 'Other',
  unknown: 'Unknown',
};

function veevaGender(gender: CanonicalGender | undefined): string | null {
  switch (gender) {
    case 'male':
      return 'M';
    case 'female':
      return 'F';
    case 'other':
    case 'unknown':
    case undefined:
      return null;
  }
}
