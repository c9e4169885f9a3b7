/**
 * Branded identifiers: values that must never be mixed get distinct types, so passing an EHR patient
 * id where a pseudonym is expected is a compile error. Brands exist only at the type level.
 */
declare const brand: unique symbol;
export type Brand<T, B extends string> = T & { readonly [brand]: B };

/** A logical id of a resource in a source system, e.g. an Epic FHIR id. PHI for patients. */
export type SourceId = Brand<string, 'SourceId'>;
/** A keyed pseudonym (HMAC) standing in for a person's source identity. Not PHI on its own. */
export type Pseudonym = Brand<string, 'Pseudonym'>;
/** A National Provider Identifier: ten digits with a valid check digit. */
export type Npi = Brand<string, 'Npi'>;
/** The external id Sluice writes to the target for upsert, e.g. `epic:Practitioner/123`. */
export type ExternalId = Brand<string, 'ExternalId'>;
/** A record id assigned by the CRM (Salesforce 18-character id). */
export type CrmRecordId = Brand<string, 'CrmRecordId'>;
/** The stable name of a source or target system in a flow, e.g. `epic`, `veeva`. */
export type SystemName = Brand<string, 'SystemName'>;

/**
 * A value that is protected health information. Wrapping it keeps it out of template strings and
 * `JSON.stringify` by accident: only `reveal` gives the value back.
 */
export class Phi<T> {
  readonly #value: T;
  constructor(value: T) {
    this.#value = value;
  }
  reveal(): T {
    return this.#value;
  }
  toString(): string {
    return '[PHI]';
  }
  toJSON(): string {
    return '[PHI]';
  }
}

export const asSourceId = (value: string): SourceId => value as SourceId;
export const asSystemName = (value: string): SystemName => value as SystemName;
export const asExternalId = (value: string): ExternalId => value as ExternalId;
export const asCrmRecordId = (value: string): CrmRecordId => value as CrmRecordId;

/** Sluice's own id for a resolved person (an identity cluster); never an id from a source system. */
export type PersonId = Brand<string, 'PersonId'>;
/** An enterprise (master patient index) id assigned by the EHR organisation. PHI. */
export type EnterpriseId = Brand<string, 'EnterpriseId'>;
/** A medical record number; meaningful only with its assigning system. PHI. */
export type Mrn = Brand<string, 'Mrn'>;
/** A Veeva Network VID (18 digits) for an HCP, HCO or address. */
export type VeevaVid = Brand<string, 'VeevaVid'>;

export const asPersonId = (value: string): PersonId => value as PersonId;
export const asEnterpriseId = (value: string): EnterpriseId => value as EnterpriseId;
export const asMrn = (value: string): Mrn => value as Mrn;
export const asPseudonym = (value: string): Pseudonym => value as Pseudonym;
