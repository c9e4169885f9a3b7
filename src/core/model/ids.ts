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
