/**
 * The canonical consent model: one neutral, typed shape for consent directives from the EHR (FHIR R4
 * Consent) and the CRM (Veeva Multichannel_Consent_vod__c), so evaluation never looks at source formats.
 *
 * Times are epoch milliseconds (UTC). Periods are half-open `[start, end)`: importers turn a FHIR end date
 * such as `2016-10-10` into the first instant *after* it, so "in force on the end date" holds. The subject is
 * always a keyed pseudonym, never a clear identifier, so a ConsentState is safe to index and log by key.
 */

/** A code with its optional system (FHIR Coding without display). */
export interface CodeRef {
  readonly system?: string;
  readonly code: string;
}

/** `active` is the only status that can decide; `revoked` is set by the store, the others come from FHIR. */
export const CONSENT_STATUSES = [
  'draft',
  'proposed',
  'active',
  'rejected',
  'inactive',
  'entered-in-error',
  'revoked',
] as const;
export type ConsentStatus = (typeof CONSENT_STATUSES)[number];

export type ProvisionType = 'permit' | 'deny';

/** Half-open interval `[start, end)` in epoch ms; a missing bound is open. */
export interface Period {
  readonly start?: number;
  readonly end?: number;
}

/** Who a rule is about. `reference` is `Type/id`; without it the actor stands for everyone in `roles`. */
export interface ConsentActor {
  /** Participation codes (v3 ParticipationType, e.g. PRCP recipient, CST custodian, AUT author). */
  readonly roles: readonly string[];
  readonly reference?: string;
}

/** A specific record a rule is about (`Type/id`) and how it relates (instance | related | dependents | authoredby). */
export interface DataRef {
  readonly meaning: string;
  readonly reference: string;
}

/** One rule of the provision tree. Every criterion that is present must match; empty lists match anything. */
export interface Provision {
  readonly type: ProvisionType;
  /** True when the source gave no type and the importer had to decide it (see the importer's doc). */
  readonly typeInferred?: boolean;
  readonly period?: Period;
  readonly actors: readonly ConsentActor[];
  /** consentaction codes (access, collect, use, disclose, correct). */
  readonly actions: readonly string[];
  /** PurposeOfUse codes (v3 ActReason: TREAT, HPAYMT, HOPERAT, HRESCH, HMARKT, PUBHLTH, …). */
  readonly purposes: readonly CodeRef[];
  /** Resource types (or other content classes such as MIME types / profiles). */
  readonly classes: readonly CodeRef[];
  readonly codes: readonly CodeRef[];
  readonly securityLabels: readonly CodeRef[];
  readonly data: readonly DataRef[];
  /** Timeframe of the data the rule is about (not of the rule itself). */
  readonly dataPeriod?: Period;
  readonly provisions: readonly Provision[];
}

/** Where a consent came from: enough to cite it in a decision and to order versions of it. */
export interface ConsentSource {
  /** The flow's name for the system, e.g. `epic`, `veeva`. */
  readonly system: string;
  readonly resourceType: string;
  readonly id: string;
  readonly version?: string;
  /** Last change in the source (epoch ms): orders versions of the same consent in the store. */
  readonly lastUpdated?: number;
}

export interface ConsentState {
  /** Keyed pseudonym of the person the consent is about. */
  readonly subject: string;
  readonly status: ConsentStatus;
  /** When the store recorded a revocation (epoch ms); set only with status `revoked`. */
  readonly revokedAt?: number;
  readonly scope: CodeRef;
  readonly categories: readonly CodeRef[];
  /** When the consent was given or recorded (FHIR dateTime, Veeva capture time): orders competing consents. */
  readonly recordedAt?: number;
  /** When the consent as a whole is in force. */
  readonly period: Period;
  /** The base policy rule code (e.g. OPTIN), for explanations. */
  readonly policyRule?: CodeRef;
  /** What the base policy decides when the consent has no provision tree (see evaluate.ts). */
  readonly baseDecision?: ProvisionType;
  /** Absent when the consent is a bare policy (decided by `baseDecision`). */
  readonly provision?: Provision;
  readonly source: ConsentSource;
  /** Version of the consent text / policy the person agreed to. */
  readonly policyVersion: string;
}

/** A stable, non-PHI reference to a consent: `system:Type/id[/_history/version]`. */
export function consentRef(source: ConsentSource): string {
  const base = `${source.system}:${source.resourceType}/${source.id}`;
  return source.version === undefined ? base : `${base}/_history/${source.version}`;
}

/** The identity of a consent across its versions (the store key). */
export function consentKey(source: ConsentSource): string {
  return `${source.system}:${source.resourceType}/${source.id}`;
}

export function isConsentStatus(value: unknown): value is ConsentStatus {
  return typeof value === 'string' && (CONSENT_STATUSES as readonly string[]).includes(value);
}
