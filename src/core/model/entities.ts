import type { ConsentState } from '../consent/model.ts';
import type { CanonicalGender, CanonicalRecord, PostalAddress, SourceRef } from './canonical.ts';
import type { EnterpriseId, Mrn, SourceId, SystemName } from './ids.ts';

/**
 * The rest of the canonical model (issue #3). `CanonicalRecord` (HCP, Organization, PatientProfile) stays
 * the union the current pipeline delivers; `AnyCanonicalRecord` adds the kinds the mapping matrix and
 * identity resolution produce. Each record carries its `source` (system, id, last verified).
 */

/** A pointer to another record in a source system (`system:Type/id`); PHI when it names a patient. */
export interface RecordKey {
  readonly system: SystemName;
  readonly resourceType: string;
  readonly id: SourceId;
}

export interface CodeValue {
  readonly system?: string;
  readonly code: string;
}

export interface MedicalRecordNumber {
  /** The assigning system (FHIR identifier.system): an MRN is meaningless without it. */
  readonly system: string;
  readonly value: Mrn;
}

/** A verified or unverified contact point; only verified e-mail drives deterministic matching. */
export interface EmailAddress {
  readonly value: string;
  readonly verified: boolean;
}

/**
 * A person with identifying data (PHI), as identity resolution needs it. Never sent to a CRM: the CRM
 * gets only the `PatientProfile` derived from it.
 */
export interface Person {
  readonly kind: 'Person';
  readonly source: SourceRef;
  readonly enterpriseId?: EnterpriseId;
  readonly mrns: readonly MedicalRecordNumber[];
  readonly givenNames: readonly string[];
  readonly familyName?: string;
  /** ISO date (YYYY-MM-DD). */
  readonly birthDate?: string;
  readonly gender: CanonicalGender;
  readonly emails: readonly EmailAddress[];
  /** E.164 phone numbers. */
  readonly phones: readonly string[];
  readonly addresses: readonly PostalAddress[];
  readonly deceased: boolean;
}

/** A consent directive as a canonical record (the state itself is the consent module's model). */
export interface ConsentRecord {
  readonly kind: 'Consent';
  readonly source: SourceRef;
  readonly consent: ConsentState;
}

/** An HCP working at an organisation (FHIR PractitionerRole ↔ Veeva Child_Account_vod__c). */
export interface Affiliation {
  readonly kind: 'Affiliation';
  readonly source: SourceRef;
  readonly hcp: RecordKey;
  readonly organization: RecordKey;
  readonly primary: boolean;
  readonly active: boolean;
  /** Canonical specialty codes (see concept map `specialty`). */
  readonly specialties: readonly string[];
}

export type EnrollmentStatus = 'requested' | 'active' | 'completed' | 'cancelled';

/** A person (HCP or patient by pseudonym) enrolled in a programme (↔ FHIR Task). */
export interface ProgramEnrollment {
  readonly kind: 'ProgramEnrollment';
  readonly source: SourceRef;
  readonly subject: RecordKey;
  readonly program: string;
  readonly status: EnrollmentStatus;
  /** ISO date the enrolment was authored. */
  readonly enrolledOn?: string;
}

export type InteractionChannel = 'in-person' | 'phone' | 'video' | 'email' | 'chat' | 'other';
export type InteractionStatus = 'planned' | 'saved' | 'submitted';

/** A rep's call on an HCP (Veeva Call2_vod__c ↔ FHIR Communication). */
export interface Interaction {
  readonly kind: 'Interaction';
  readonly source: SourceRef;
  readonly hcp: RecordKey;
  readonly channel: InteractionChannel;
  readonly status: InteractionStatus;
  /** ISO instant or date of the call. */
  readonly occurredAt?: string;
}

export type CareEventType = 'encounter' | 'appointment' | 'referral';

/** Something that happens to a patient in the EHR: an encounter, an appointment or a referral. PHI. */
export interface CareEvent {
  readonly kind: 'CareEvent';
  readonly source: SourceRef;
  readonly eventType: CareEventType;
  /** The patient the event is about; resolved to a person by identity resolution before attaching. */
  readonly subject: RecordKey;
  readonly status: string;
  readonly start?: string;
  readonly end?: string;
  readonly performers: readonly RecordKey[];
  readonly codes: readonly CodeValue[];
}

export type AnyCanonicalRecord =
  | CanonicalRecord
  | Person
  | ConsentRecord
  | Affiliation
  | ProgramEnrollment
  | Interaction
  | CareEvent;
export type AnyCanonicalKind = AnyCanonicalRecord['kind'];
