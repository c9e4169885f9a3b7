/**
 * What a Veeva consent channel governs, as data. A Multichannel_Consent_vod__c record is an HCP's opt-in or
 * opt-out for one channel (its record type, which must match the Consent_Type_vod__c record type); this
 * table says which purposes of use and which FHIR resource types such a consent speaks for. Flows pass
 * their own table for custom channels (SMS, portal, …): a channel missing here quarantines the consent
 * (CONSENT_CHANNEL_UNMAPPED) instead of being guessed.
 *
 * Defaults: every Veeva multichannel channel is promotional communication with the HCP, so the purpose is
 * HMARKT; the data it covers is the HCP's own contact records (Practitioner, PractitionerRole) and the
 * messages / interactions themselves (Communication).
 */
export interface VeevaChannel {
  /** Short channel name, recorded as a category of the consent. */
  readonly channel: string;
  /** PurposeOfUse codes the consent speaks for. */
  readonly purposes: readonly string[];
  /** FHIR resource types the consent speaks for. */
  readonly classes: readonly string[];
}

/** Keyed by the consent's record type DeveloperName. */
export type VeevaChannelTable = Readonly<Record<string, VeevaChannel>>;

const HCP_COMMUNICATION = ['Practitioner', 'PractitionerRole', 'Communication'] as const;

export const VEEVA_CHANNEL_TABLE: VeevaChannelTable = {
  // Approved Email (MODEL.md §4: Consent_Type record type Approved_Email_vod).
  Approved_Email_vod: { channel: 'email', purposes: ['HMARKT'], classes: HCP_COMMUNICATION },
  // Closed-loop marketing content shown in calls (MODEL.md §4 names "CLM"; record type name [verify]).
  CLM_vod: { channel: 'clm', purposes: ['HMARKT'], classes: HCP_COMMUNICATION },
};

/** Code systems under which Veeva consent-line dimensions appear in provisions and requests. */
export const VEEVA_PRODUCT_SYSTEM = 'urn:sluice:veeva:Product_vod__c';
export const VEEVA_CONTENT_TYPE_SYSTEM = 'urn:sluice:veeva:Content_Type_vod__c';
export const VEEVA_SUB_CHANNEL_SYSTEM = 'urn:sluice:veeva:Sub_Channel_Key_vod__c';
/** A consent line naming several dimensions at once (see from-veeva.ts). */
export const VEEVA_LINE_SYSTEM = 'urn:sluice:veeva:consent-line';
export const VEEVA_CHANNEL_SYSTEM = 'urn:sluice:veeva:channel';
