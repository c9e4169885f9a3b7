import type { FieldSpec, ObjectSpec } from './schema.ts';
import type { StoredRecord } from './store.ts';
import { formatDatetime, type StoredValue } from './values.ts';

/** A record as the REST API shows it: `attributes` first, then fields by API name. */
export interface SObjectRecord {
  readonly attributes: { readonly type: string; readonly url: string };
  readonly Id: string;
  readonly [field: string]: unknown;
}

/** The version used in record URLs when no request names one (control endpoints, `records()`). */
export const DEFAULT_API_VERSION = 'v62.0';

export function recordUrl(version: string, object: string, id: string): string {
  return `/services/data/${version}/sobjects/${object}/${id}`;
}

/** The value of one field of a stored record as the API returns it (unset fields are null). */
export function fieldValue(record: StoredRecord, field: FieldSpec): StoredValue {
  switch (field.name) {
    case 'Id':
      return record.id;
    case 'IsDeleted':
      return record.isDeleted;
    case 'CreatedDate':
      return formatDatetime(record.createdMs);
    case 'LastModifiedDate':
      return formatDatetime(record.modifiedMs);
    case 'SystemModstamp':
      return formatDatetime(record.modstampMs);
    default: {
      const value = record.fields[field.name];
      if (value === undefined || value === null) return field.type.kind === 'boolean' ? false : null;
      return value;
    }
  }
}

/** The whole record (every field of the object, in describe order). */
export function toSObjectRecord(
  object: ObjectSpec,
  record: StoredRecord,
  version = DEFAULT_API_VERSION,
): SObjectRecord {
  const out: Record<string, unknown> = {
    attributes: { type: object.name, url: recordUrl(version, object.name, record.id) },
  };
  for (const field of object.fields) out[field.name] = fieldValue(record, field);
  return out as unknown as SObjectRecord;
}
