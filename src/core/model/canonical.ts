import type { Npi, Pseudonym, SourceId, SystemName } from './ids.ts';

/**
 * The canonical model: one neutral shape between the systems, so N sources and M targets need N+M
 * adapters instead of N×M translations. Every fact carries where it came from.
 */

/** Where a canonical record came from: system, resource type, id and version, and when it was read. */
export interface SourceRef {
  readonly system: SystemName;
  readonly resourceType: string;
  readonly id: SourceId;
  readonly versionId?: string;
  readonly lastUpdated?: string;
  /** When Sluice last read this fact from the source (ISO instant). */
  readonly verifiedAt: string;
  /** `id@version` of the mapping matrix that produced the record (absent from the legacy mapping). */
  readonly mapping?: string;
}

export interface PostalAddress {
  readonly use?: 'home' | 'work' | 'temp' | 'old' | 'billing';
  readonly lines: readonly string[];
  readonly city?: string;
  readonly state?: string;
  readonly postalCode?: string;
  readonly country?: string;
}

/** A health-care professional (FHIR Practitioner ↔ Veeva person Account). Not patient PHI. */
export interface Hcp {
  readonly kind: 'HCP';
  readonly source: SourceRef;
  readonly npi?: Npi;
  readonly firstName?: string;
  readonly lastName: string;
  readonly gender?: CanonicalGender;
  readonly credentials?: string;
  readonly active: boolean;
  readonly addresses: readonly PostalAddress[];
}

/** A health-care organisation (FHIR Organization ↔ Veeva business Account). */
export interface Organization {
  readonly kind: 'Organization';
  readonly source: SourceRef;
  readonly npi?: Npi;
  readonly name: string;
  readonly active: boolean;
  readonly addresses: readonly PostalAddress[];
}

/**
 * The de-identified profile of a patient that a CRM may hold: a keyed pseudonym and generalised
 * demographics. It never carries a name, an identifier, a contact detail or an exact date.
 */
export interface PatientProfile {
  readonly kind: 'PatientProfile';
  readonly source: SourceRef;
  readonly pseudonym: Pseudonym;
  /** Birth year, omitted when it would reveal an age over 89. */
  readonly birthYear?: number;
  /** True when the age is over 89 (HIPAA Safe Harbor aggregates those ages into one band). */
  readonly ageOver89: boolean;
  /** First three ZIP digits, `000` for restricted prefixes, omitted when unknown or not a US ZIP. */
  readonly zip3?: string;
  readonly gender: CanonicalGender;
}

export type CanonicalGender = 'male' | 'female' | 'other' | 'unknown';

export type CanonicalRecord = Hcp | Organization | PatientProfile;
export type CanonicalKind = CanonicalRecord['kind'];
