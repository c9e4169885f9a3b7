import { type SfError, sfError } from './errors.ts';
import { normalizeId, recordId } from './ids.ts';
import type { FieldSpec, ObjectSpec, Schema } from './schema.ts';
import type { KeyEntry, RecordStore, StoredRecord } from './store.ts';
import {
  type ParsedRecord,
  parseRecord,
  type RecordLookups,
  type ValidationContext,
  validateRecord,
} from './validate-record.ts';
import {
  checkValue,
  coerceValue,
  keyValue,
  parseDatetime,
  type StoredFields,
  type StoredValue,
} from './values.ts';

/**
 * Record operations of the CRM: create, update, upsert by external id, delete. They return outcomes
 * as values (HTTP status and Salesforce errors included) so the single-record routes and sObject
 * Collections share them; every write runs in a transaction (a savepoint inside a batch).
 */
export type WriteOutcome =
  | { readonly kind: 'created'; readonly id: string }
  | { readonly kind: 'updated'; readonly id: string }
  | { readonly kind: 'deleted'; readonly id: string }
  /** An upsert's external id matched several records; nothing was written. */
  | { readonly kind: 'ambiguous'; readonly ids: readonly string[] }
  | { readonly kind: 'rejected'; readonly status: number; readonly errors: readonly SfError[] };

const rejected = (status: number, errors: readonly SfError[]): WriteOutcome => ({
  kind: 'rejected',
  status,
  errors,
});

export interface UpsertOptions {
  readonly updateOnly?: boolean;
}

export class CrmRecords {
  readonly schema: Schema;
  readonly #store: RecordStore;
  readonly #now: () => Date;
  readonly lookups: RecordLookups;

  constructor(schema: Schema, store: RecordStore, now: () => Date) {
    this.schema = schema;
    this.#store = store;
    this.#now = now;
    this.lookups = {
      findByKey: (object, field, value) => {
        const key = keyValue(field, value);
        return key === undefined ? [] : store.idsByKey(object.name, field.name, key);
      },
      exists: (object, id) => {
        const record = store.get(id);
        return record !== undefined && record.object === object.name && !record.isDeleted;
      },
    };
  }

  get store(): RecordStore {
    return this.#store;
  }

  /** A live or deleted record by id. */
  get(id: string): StoredRecord | undefined {
    return this.#store.get(id);
  }

  transaction<T>(fn: () => T): T {
    return this.#store.transaction(fn);
  }

  parse(
    object: ObjectSpec,
    body: unknown,
  ): { ok: true; record: ParsedRecord } | { ok: false; errors: readonly SfError[] } {
    return parseRecord(this.schema, object, body);
  }

  /**
   * The external-id field an upsert names, or the error Salesforce gives: 404 for a field the object
   * does not have, 400 INVALID_FIELD for one that is not an External ID.
   */
  externalIdField(
    object: ObjectSpec,
    name: string,
  ): { field: FieldSpec } | { status: number; error: SfError } {
    const field = this.schema.field(object, name);
    if (!field) {
      return {
        status: 404,
        error: sfError(
          'NOT_FOUND',
          `Provided external ID field does not exist or is not accessible: ${name}`,
        ),
      };
    }
    if (!field.externalId) {
      return {
        status: 400,
        error: sfError(
          'INVALID_FIELD',
          `Field ${field.name} is not an External ID or indexed field for ${object.name}`,
          [field.name],
        ),
      };
    }
    return { field };
  }

  /** The key value an upsert matches on, coerced and checked, or the error for this record. */
  upsertKey(field: FieldSpec, raw: unknown): { value: StoredValue } | { error: SfError } {
    if (raw === undefined)
      return { error: sfError('MISSING_ARGUMENT', `${field.name} not specified`, [field.name]) };
    const coerced = coerceValue(field, raw);
    if (!coerced.ok) return { error: coerced.error };
    if (coerced.value === null)
      return { error: sfError('MISSING_ARGUMENT', `${field.name} not specified`, [field.name]) };
    const checked = checkValue(field, coerced.value);
    return checked.ok ? { value: checked.value } : { error: checked.error };
  }

  /** Ids of the live records an upsert key matches. */
  matches(object: ObjectSpec, field: FieldSpec, value: StoredValue): readonly string[] {
    return this.lookups.findByKey(object, field, value);
  }

  /**
   * Upserts a parsed record by `field` = `value`: no match inserts, one match updates, several answer
   * `ambiguous`. A different value for the key field in the body is refused.
   */
  upsert(
    parsed: ParsedRecord,
    field: FieldSpec,
    value: StoredValue,
    options: UpsertOptions = {},
  ): WriteOutcome {
    const object = parsed.object;
    const inBody = parsed.values.get(field.name);
    if (inBody !== undefined && keyValue(field, inBody) !== keyValue(field, value)) {
      return rejected(400, [
        sfError(
          'INVALID_FIELD',
          `The value of ${field.name} in the body does not match the value in the URL`,
          [field.name],
        ),
      ]);
    }
    const ids = this.matches(object, field, value);
    if (ids.length > 1) return { kind: 'ambiguous', ids };
    const id = ids[0];
    if (id !== undefined) {
      const existing = this.#store.get(id);
      if (existing) return this.update(parsed, existing);
    }
    if (options.updateOnly)
      return rejected(404, [sfError('NOT_FOUND', 'The requested resource does not exist')]);
    const values = new Map(parsed.values);
    values.set(field.name, value);
    return this.insert({ ...parsed, values });
  }

  insert(parsed: ParsedRecord): WriteOutcome {
    const object = parsed.object;
    const validated = validateRecord(this.schema, parsed, { mode: 'insert' }, this.lookups);
    if (!validated.ok) return rejected(400, validated.errors);
    const fields = validated.fields;
    return this.#store.transaction(() => {
      for (const f of object.fields) {
        if (f.autoNumber && (fields[f.name] === undefined || fields[f.name] === null)) {
          fields[f.name] = formatAutoNumber(
            f.autoNumber,
            this.#store.nextSequence(`${object.name}.${f.name}`),
          );
        }
      }
      const duplicate = this.#duplicate(object, fields, undefined);
      if (duplicate) return rejected(400, [duplicate]);
      const ms = this.#now().getTime();
      const id = recordId(object.keyPrefix, this.#store.nextSequence(object.name));
      const record: StoredRecord = {
        id,
        object: object.name,
        fields,
        createdMs: ms,
        modifiedMs: ms,
        modstampMs: ms,
        isDeleted: false,
      };
      this.#store.insert(record, this.#keys(object, fields));
      return { kind: 'created', id };
    });
  }

  update(parsed: ParsedRecord, existing: StoredRecord): WriteOutcome {
    const object = parsed.object;
    const locked = this.#locked(object, existing);
    if (locked) return rejected(400, [locked]);
    const context: ValidationContext = { mode: 'update', existing: existing.fields };
    const validated = validateRecord(this.schema, parsed, context, this.lookups);
    if (!validated.ok) return rejected(400, validated.errors);
    const fields = validated.fields;
    return this.#store.transaction(() => {
      const duplicate = this.#duplicate(object, fields, existing.id);
      if (duplicate) return rejected(400, [duplicate]);
      const ms = this.#now().getTime();
      const keys = this.#keys(object, fields);
      const unchanged = sameKeys(keys, this.#keys(object, existing.fields));
      this.#store.update(
        { ...existing, fields, modifiedMs: ms, modstampMs: ms },
        unchanged ? undefined : keys,
      );
      return { kind: 'updated', id: existing.id };
    });
  }

  /** Moves a record and its master-detail children to the recycle bin. */
  delete(existing: StoredRecord): WriteOutcome {
    const object = this.schema.object(existing.object);
    if (!object) return rejected(404, [sfError('NOT_FOUND', 'The requested resource does not exist')]);
    if (existing.isDeleted) return rejected(404, [sfError('ENTITY_IS_DELETED', 'entity is deleted')]);
    const locked = this.#locked(object, existing) ?? this.#lockedReferrer(object, existing);
    if (locked) return rejected(400, [locked]);
    const ms = this.#now().getTime();
    this.#store.transaction(() => this.#cascadeDelete(object, existing.id, ms));
    return { kind: 'deleted', id: existing.id };
  }

  #cascadeDelete(object: ObjectSpec, id: string, ms: number): void {
    for (const detail of this.schema.detailsOf(object)) {
      for (const childId of this.#store.idsByKey(detail.object.name, detail.field.name, id)) {
        this.#cascadeDelete(detail.object, childId, ms);
      }
    }
    this.#store.markDeleted(id, ms);
  }

  /**
   * Stores a record as given, bypassing uniqueness, required fields and locks (tests use it to create
   * the duplicates real orgs accumulate). Values are still read by type; an explicit Id and system
   * dates are honoured.
   */
  insertRaw(
    object: ObjectSpec,
    body: Record<string, unknown>,
  ): { id: string } | { errors: readonly SfError[] } {
    const { Id, CreatedDate, LastModifiedDate, SystemModstamp, IsDeleted, ...rest } = body;
    const parsed = parseRecord(this.schema, object, rest);
    if (!parsed.ok) return { errors: parsed.errors };
    if (parsed.record.problems.length > 0) return { errors: parsed.record.problems };
    const fields: StoredFields = {};
    for (const [name, value] of parsed.record.values) fields[name] = value;
    const recordType = object.recordTypes?.find((rt) => rt.id === fields.RecordTypeId);
    if (recordType && object.fields.some((f) => f.name === 'IsPersonAccount'))
      fields.IsPersonAccount = recordType.person;
    const system = (name: string, raw: unknown): number | { error: SfError } => {
      if (raw === undefined || raw === null) return this.#now().getTime();
      const ms = typeof raw === 'string' ? parseDatetime(raw) : undefined;
      return ms === undefined
        ? { error: sfError('JSON_PARSER_ERROR', `${name} is not a date-time`, [name]) }
        : ms;
    };
    const created = system('CreatedDate', CreatedDate);
    const modified = system('LastModifiedDate', LastModifiedDate ?? CreatedDate);
    const modstamp = system('SystemModstamp', SystemModstamp ?? LastModifiedDate ?? CreatedDate);
    for (const v of [created, modified, modstamp]) if (typeof v !== 'number') return { errors: [v.error] };
    let id = recordId(object.keyPrefix, this.#store.nextSequence(object.name));
    if (Id !== undefined) {
      if (typeof Id !== 'string' || !Id.startsWith(object.keyPrefix) || normalizeId(Id) !== Id) {
        return {
          errors: [
            sfError('MALFORMED_ID', `Id must be an 18-character id with key prefix ${object.keyPrefix}`, [
              'Id',
            ]),
          ],
        };
      }
      if (this.#store.get(Id))
        return { errors: [sfError('DUPLICATE_VALUE', `A record with id ${Id} already exists`, ['Id'])] };
      id = Id;
    }
    this.#store.insert(
      {
        id,
        object: object.name,
        fields,
        createdMs: created as number,
        modifiedMs: modified as number,
        modstampMs: modstamp as number,
        isDeleted: IsDeleted === true,
      },
      this.#keys(object, fields),
    );
    return { id };
  }

  #keys(object: ObjectSpec, fields: StoredFields): KeyEntry[] {
    const keys: KeyEntry[] = [];
    for (const field of this.schema.keyFields(object)) {
      const value = keyValue(field, fields[field.name] ?? null);
      if (value !== undefined) keys.push({ field: field.name, value });
    }
    return keys;
  }

  #duplicate(object: ObjectSpec, fields: StoredFields, self: string | undefined): SfError | undefined {
    for (const field of this.schema.keyFields(object)) {
      if (!field.unique) continue;
      const other = this.lookups
        .findByKey(object, field, fields[field.name] ?? null)
        .find((id) => id !== self);
      if (other !== undefined) {
        return sfError(
          'DUPLICATE_VALUE',
          `duplicate value found: ${field.name} duplicates value on record with id: ${other}`,
          [],
        );
      }
    }
    return undefined;
  }

  /**
   * A record a locked one refers to (an account with a submitted call) cannot be deleted, as Veeva CRM
   * protects submitted calls: DELETE_FAILED.
   */
  #lockedReferrer(object: ObjectSpec, existing: StoredRecord): SfError | undefined {
    for (const { object: other, field } of this.schema.lockingReferencesTo(object)) {
      for (const id of this.#store.idsByKey(other.name, field.name, existing.id)) {
        const referrer = this.#store.get(id);
        if (referrer && !referrer.isDeleted && this.#locked(other, referrer)) {
          return sfError(
            'DELETE_FAILED',
            `Your attempt to delete this ${object.label} could not be completed because it is associated with a locked ${other.label}.`,
            [],
          );
        }
      }
    }
    return undefined;
  }

  #locked(object: ObjectSpec, existing: StoredRecord): SfError | undefined {
    if (object.lock && existing.fields[object.lock.field] === object.lock.value) {
      return sfError(
        'ENTITY_IS_LOCKED',
        'This record is locked. If you need to edit it, contact your admin.',
        [],
      );
    }
    return undefined;
  }
}

function sameKeys(a: readonly KeyEntry[], b: readonly KeyEntry[]): boolean {
  return a.length === b.length && a.every((k, i) => k.field === b[i]?.field && k.value === b[i]?.value);
}

/** `PP-{000000}` with 42 → `PP-000042`. */
export function formatAutoNumber(format: string, n: number): string {
  return format.replace(/\{(0+)\}/, (_, zeros: string) => String(n).padStart(zeros.length, '0'));
}
