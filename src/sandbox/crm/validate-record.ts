import { type SfError, sfError } from './errors.ts';
import { type FieldSpec, type ObjectSpec, recordTypeOf, type Schema } from './schema.ts';
import { checkValue, coerceValue, type StoredFields, type StoredValue } from './values.ts';

/**
 * Record validation, pure over plain data: a request body is first *parsed* (unknown fields and
 * values that cannot be read fail the whole request, like Salesforce's JSON reader), then *validated*
 * against the object's rules, collecting every problem the record has. Database checks that need the
 * store (uniqueness, locks) are the caller's; lookups of parents go through `RecordLookups`.
 */

/** A parent named by one of its external ids: `"Account_vod__r": {"External_ID_vod__c": "…"}`. */
export interface ParentByKey {
  readonly field: FieldSpec;
  readonly keyField: string;
  readonly keyValue: unknown;
}

export interface ParsedRecord {
  readonly object: ObjectSpec;
  /** Coerced values by canonical field name, in body order. */
  readonly values: ReadonlyMap<string, StoredValue>;
  readonly parents: readonly ParentByKey[];
  /** Problems found while reading values that belong to this record rather than the request. */
  readonly problems: readonly SfError[];
}

export type ParseOutcome =
  | { readonly ok: true; readonly record: ParsedRecord }
  | { readonly ok: false; readonly errors: readonly SfError[] };

export interface RecordLookups {
  /** Ids of live records of `object` whose key field `field` holds `value` (as the key index folds it). */
  findByKey(object: ObjectSpec, field: FieldSpec, value: StoredValue): readonly string[];
  /** Whether a live record with this id exists on `object`. */
  exists(object: ObjectSpec, id: string): boolean;
}

export type ValidationOutcome =
  | { readonly ok: true; readonly fields: StoredFields }
  | { readonly ok: false; readonly errors: readonly SfError[] };

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** Reads a request body for `object`. The key `attributes` is metadata and skipped. */
export function parseRecord(schema: Schema, object: ObjectSpec, body: unknown): ParseOutcome {
  if (!isPlainObject(body)) {
    return {
      ok: false,
      errors: [
        sfError(
          'JSON_PARSER_ERROR',
          `Cannot deserialize instance of ${object.name} from a value that is not a JSON object`,
        ),
      ],
    };
  }
  const values = new Map<string, StoredValue>();
  const parents: ParentByKey[] = [];
  const problems: SfError[] = [];
  const errors: SfError[] = [];
  for (const [key, raw] of Object.entries(body)) {
    if (key === 'attributes') continue;
    const field = schema.field(object, key);
    if (field) {
      const coerced = coerceValue(field, raw);
      if (coerced.ok) values.set(field.name, coerced.value);
      else if (coerced.phase === 'parse') errors.push(coerced.error);
      else problems.push(coerced.error);
      continue;
    }
    const relationship = schema.relationship(object, key);
    if (!relationship) {
      errors.push(
        sfError('INVALID_FIELD', `No such column '${key}' on sobject of type ${object.name}`, [key]),
      );
      continue;
    }
    if (raw === null) {
      values.set(relationship.name, null);
      continue;
    }
    const keys = isPlainObject(raw) ? Object.keys(raw).filter((k) => k !== 'attributes') : [];
    const keyField = keys[0];
    if (!isPlainObject(raw) || keyField === undefined || keys.length !== 1) {
      errors.push(
        sfError(
          'JSON_PARSER_ERROR',
          `The relationship ${key} must be an object naming exactly one external id field of the parent`,
        ),
      );
      continue;
    }
    parents.push({ field: relationship, keyField, keyValue: raw[keyField] });
  }
  if (errors.length > 0) return { ok: false, errors };
  return { ok: true, record: { object, values, parents, problems } };
}

export interface ValidationContext {
  readonly mode: 'insert' | 'update';
  /** The stored fields of the record being updated. */
  readonly existing?: StoredFields;
}

/**
 * Validates a parsed record and returns the full field set to store (existing fields merged with the
 * written ones, computed fields set), or every problem found.
 */
export function validateRecord(
  schema: Schema,
  parsed: ParsedRecord,
  context: ValidationContext,
  lookups: RecordLookups,
): ValidationOutcome {
  const { object } = parsed;
  const errors: SfError[] = [...parsed.problems];
  const written = new Map(parsed.values);

  const readOnly = [...written.keys()].filter((name) => schema.field(object, name)?.readOnly);
  if (readOnly.length > 0) errors.push(unableToWrite(readOnly));
  for (const name of readOnly) written.delete(name);

  for (const parent of parsed.parents) {
    const resolved = resolveParent(schema, parent, written, lookups);
    if ('error' in resolved) errors.push(resolved.error);
    else written.set(parent.field.name, resolved.id);
  }

  for (const [name, value] of written) {
    const field = schema.field(object, name);
    if (!field) continue;
    const checked = checkValue(field, value);
    if (!checked.ok) {
      errors.push(checked.error);
      continue;
    }
    written.set(name, checked.value);
    const problem = referenceProblem(schema, field, checked.value, context, lookups);
    if (problem) errors.push(problem);
  }

  const merged: StoredFields = { ...(context.existing ?? {}) };
  for (const [name, value] of written) merged[name] = value;
  if (context.mode === 'insert') {
    for (const field of object.fields) {
      if (field.type.kind === 'boolean' && !field.readOnly && merged[field.name] === undefined)
        merged[field.name] = false;
    }
  }

  errors.push(...applyRecordType(object, merged, written, context));

  // A field already reported (bad type, too long…) is not reported missing as well.
  const reported = new Set(errors.flatMap((e) => e.fields ?? []));
  const missing = object.fields.filter(
    (f) =>
      f.required &&
      !reported.has(f.name) &&
      !f.autoNumber &&
      (f.variant === undefined || f.variant === variantOf(object, merged)) &&
      (merged[f.name] === undefined || merged[f.name] === null),
  );
  if (missing.length > 0) {
    const names = missing.map((f) => f.name);
    errors.push(
      sfError('REQUIRED_FIELD_MISSING', `Required fields are missing: [${names.join(', ')}]`, names),
    );
  }
  return errors.length > 0 ? { ok: false, errors } : { ok: true, fields: merged };
}

function unableToWrite(names: readonly string[]): SfError {
  return sfError(
    'INVALID_FIELD_FOR_INSERT_UPDATE',
    `Unable to create/update fields: ${names.join(', ')}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.`,
    names,
  );
}

function resolveParent(
  schema: Schema,
  parent: ParentByKey,
  written: ReadonlyMap<string, StoredValue>,
  lookups: RecordLookups,
): { id: StoredValue } | { error: SfError } {
  const { field } = parent;
  if (field.type.kind !== 'reference')
    return { error: sfError('INVALID_FIELD', `${field.name} is not a relationship`) };
  const relationshipName = field.type.relationshipName;
  if (written.has(field.name)) {
    return {
      error: sfError(
        'INVALID_FIELD',
        `Cannot specify both an external ID reference ${relationshipName} and a salesforce id, ${field.name}`,
        [field.name],
      ),
    };
  }
  const target = schema.object(field.type.to);
  const keyField = target ? schema.field(target, parent.keyField) : undefined;
  if (!target || !keyField?.externalId) {
    return {
      error: sfError(
        'INVALID_FIELD',
        `Field name provided, ${parent.keyField} is not an External ID or indexed field for ${field.type.to}`,
        [field.name],
      ),
    };
  }
  const coerced = coerceValue(keyField, parent.keyValue);
  if (!coerced.ok) return { error: coerced.error };
  if (coerced.value === null) return { id: null };
  const ids = lookups.findByKey(target, keyField, coerced.value);
  if (ids.length === 0) {
    return {
      error: sfError(
        'INVALID_FIELD',
        `Foreign key external ID not found for field ${keyField.name} in entity ${target.name}`,
        [field.name],
      ),
    };
  }
  if (ids.length > 1) {
    return {
      error: sfError(
        'DUPLICATE_EXTERNAL_ID',
        `Foreign key external ID for field ${keyField.name} in entity ${target.name} matched more than one record: [${ids.join(', ')}]`,
        [field.name],
      ),
    };
  }
  return { id: ids[0] ?? null };
}

function referenceProblem(
  schema: Schema,
  field: FieldSpec,
  value: StoredValue,
  context: ValidationContext,
  lookups: RecordLookups,
): SfError | undefined {
  if (field.type.kind !== 'reference') return undefined;
  const before = context.existing?.[field.name];
  if (
    field.type.masterDetail &&
    context.mode === 'update' &&
    before !== undefined &&
    before !== null &&
    before !== value
  ) {
    return unableToWrite([field.name]);
  }
  if (value === null) return undefined;
  const target = schema.object(field.type.to);
  const id = String(value);
  if (!target || !id.startsWith(target.keyPrefix)) {
    return sfError('MALFORMED_ID', `${field.label}: id value of incorrect type`, [field.name]);
  }
  if (!lookups.exists(target, id)) {
    return sfError('INVALID_CROSS_REFERENCE_KEY', `${field.label}: invalid cross reference id`, [field.name]);
  }
  return undefined;
}

function variantOf(object: ObjectSpec, fields: StoredFields): 'person' | 'business' | undefined {
  if (!object.recordTypes) return undefined;
  const type = recordTypeOf(object, String(fields.RecordTypeId ?? ''));
  return type?.person ? 'person' : 'business';
}

/**
 * Record types and person accounts: sets the default record type, refuses unknown ones and a switch
 * between person and business, refuses fields of the other variant, and computes `IsPersonAccount`
 * and a person account's `Name`.
 */
function applyRecordType(
  object: ObjectSpec,
  merged: StoredFields,
  written: ReadonlyMap<string, StoredValue>,
  context: ValidationContext,
): SfError[] {
  if (!object.recordTypes) return [];
  const errors: SfError[] = [];
  const requested = merged.RecordTypeId;
  let type = typeof requested === 'string' ? recordTypeOf(object, requested) : undefined;
  if (requested !== undefined && requested !== null && !type) {
    errors.push(
      sfError(
        'INVALID_CROSS_REFERENCE_KEY',
        `Record Type ID: this ID value isn't valid for the user: ${String(requested)}`,
        ['RecordTypeId'],
      ),
    );
  }
  if (!type && object.defaultRecordType) {
    const before = context.existing?.RecordTypeId;
    type = recordTypeOf(object, typeof before === 'string' ? before : object.defaultRecordType);
  }
  if (!type) return errors;
  const beforeType = recordTypeOf(object, String(context.existing?.RecordTypeId ?? ''));
  if (context.mode === 'update' && beforeType && beforeType.person !== type.person) {
    errors.push(
      sfError(
        'INVALID_FIELD_FOR_INSERT_UPDATE',
        'Cannot change the record type of an account between person and business record types',
        ['RecordTypeId'],
      ),
    );
  }
  merged.RecordTypeId = type.id;
  if (object.fields.some((f) => f.name === 'IsPersonAccount')) merged.IsPersonAccount = type.person;
  const variant = type.person ? 'person' : 'business';
  const wrong = object.fields
    .filter((f) => f.variant !== undefined && f.variant !== variant && isSet(written.get(f.name)))
    .map((f) => f.name);
  if (wrong.length > 0) {
    errors.push(
      sfError(
        'INVALID_FIELD_FOR_INSERT_UPDATE',
        `${object.name}: bad field names on insert/update call: ${wrong.join(', ')}`,
        wrong,
      ),
    );
  }
  if (type.person) {
    const name = [merged.FirstName, merged.LastName]
      .filter((v) => typeof v === 'string' && v !== '')
      .join(' ');
    merged.Name = name === '' ? null : name;
  }
  return errors;
}

/** A written value that counts as setting the field (an unchecked checkbox does not). */
const isSet = (value: StoredValue | undefined): boolean =>
  value !== undefined && value !== null && value !== false;
