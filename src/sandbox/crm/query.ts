import { SfHttpError, sfError } from './errors.ts';
import { normalizeId } from './ids.ts';
import { fieldValue, recordUrl } from './present.ts';
import type { FieldSpec, ObjectSpec, Schema } from './schema.ts';
import {
  type CompareOp,
  type Condition,
  type FieldPath,
  type Literal,
  parseSoql,
  positionOf,
  SoqlSyntaxError,
} from './soql.ts';
import type { RecordStore, StoredRecord, TimeBound } from './store.ts';
import { formatDatetime, type StoredValue } from './values.ts';

/**
 * Query planning and evaluation: resolves a parsed SOQL query against the schema (unknown objects
 * and fields, literal types), narrows by indexed system dates where it can, then filters, sorts and
 * projects in memory.
 */
export interface ResolvedPath {
  /** Reference fields followed from the queried object, then the field read. */
  readonly hops: readonly FieldSpec[];
  readonly field: FieldSpec;
  /** Canonical names along the path: relationship names, then the field name. */
  readonly names: readonly string[];
}

type ResolvedCondition =
  | { readonly kind: 'and' | 'or'; readonly items: readonly ResolvedCondition[] }
  | { readonly kind: 'not'; readonly item: ResolvedCondition }
  | { readonly kind: 'compare'; readonly path: ResolvedPath; readonly op: CompareOp; readonly value: Literal }
  | {
      readonly kind: 'in';
      readonly path: ResolvedPath;
      readonly negate: boolean;
      readonly values: readonly Literal[];
    };

export interface QueryPlan {
  readonly object: ObjectSpec;
  readonly select: readonly ResolvedPath[];
  readonly where: ResolvedCondition | undefined;
  readonly orderBy: readonly { path: ResolvedPath; descending: boolean; nullsFirst: boolean }[];
  readonly limit: number | undefined;
  readonly offset: number;
  readonly bounds: readonly TimeBound[];
}

const MAX_OFFSET = 2000;

function queryError(text: string, code: string, pos: number, detail: string): SfHttpError {
  const { row, column } = positionOf(text, pos);
  return new SfHttpError(400, [sfError(code, `\nERROR at Row:${row}:Column:${column}\n${detail}`)]);
}

/** Parses and resolves a query; failures are 400 answers (MALFORMED_QUERY, INVALID_FIELD, INVALID_TYPE). */
export function planQuery(schema: Schema, text: string): QueryPlan {
  if (text.trim() === '')
    throw new SfHttpError(400, [sfError('MALFORMED_QUERY', 'A query string has to be specified')]);
  let parsed: ReturnType<typeof parseSoql>;
  try {
    parsed = parseSoql(text);
  } catch (err) {
    if (err instanceof SoqlSyntaxError) throw queryError(text, 'MALFORMED_QUERY', err.pos, err.detail);
    throw err;
  }
  const object = schema.object(parsed.from.name);
  if (!object) {
    throw queryError(
      text,
      'INVALID_TYPE',
      parsed.from.pos,
      `sObject type '${parsed.from.name}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names.`,
    );
  }
  const resolve = (p: FieldPath): ResolvedPath => resolvePath(schema, object, p, text);
  const select = parsed.select.map(resolve);
  const seen = new Set<string>();
  for (const [i, path] of select.entries()) {
    const key = path.names.join('.').toLowerCase();
    if (seen.has(key)) {
      throw queryError(
        text,
        'MALFORMED_QUERY',
        parsed.select[i]?.pos ?? 0,
        `duplicate field selected: ${path.names.join('.')}`,
      );
    }
    seen.add(key);
  }
  const where = parsed.where ? resolveCondition(parsed.where, resolve, text) : undefined;
  if (parsed.offset !== undefined && parsed.offset > MAX_OFFSET) {
    throw new SfHttpError(400, [
      sfError('NUMBER_OUTSIDE_VALID_RANGE', `Maximum SOQL offset allowed is ${MAX_OFFSET}`),
    ]);
  }
  return {
    object,
    select,
    where,
    orderBy: parsed.orderBy.map((o) => ({
      path: resolve(o.field),
      descending: o.descending,
      nullsFirst: o.nullsFirst,
    })),
    limit: parsed.limit,
    offset: parsed.offset ?? 0,
    bounds: where ? timeBounds(where) : [],
  };
}

function resolvePath(schema: Schema, root: ObjectSpec, p: FieldPath, text: string): ResolvedPath {
  let object = root;
  const hops: FieldSpec[] = [];
  const names: string[] = [];
  let segments = p.path;
  // A path may start with the object's own name: SELECT Account.Name FROM Account.
  if (segments.length > 1 && segments[0]?.toLowerCase() === root.name.toLowerCase())
    segments = segments.slice(1);
  for (const [i, segment] of segments.entries()) {
    if (i < segments.length - 1) {
      const ref = schema.relationship(object, segment);
      const target = ref?.type.kind === 'reference' ? schema.object(ref.type.to) : undefined;
      if (ref?.type.kind !== 'reference' || !target) {
        throw queryError(
          text,
          'INVALID_FIELD',
          p.pos,
          `Didn't understand relationship '${segment}' in field path. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe call for the appropriate names.`,
        );
      }
      hops.push(ref);
      names.push(ref.type.relationshipName);
      object = target;
      continue;
    }
    const field = schema.field(object, segment);
    if (!field) {
      throw queryError(
        text,
        'INVALID_FIELD',
        p.pos,
        `No such column '${segment}' on entity '${object.name}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.`,
      );
    }
    names.push(field.name);
    return { hops, field, names };
  }
  throw queryError(text, 'MALFORMED_QUERY', p.pos, `unexpected token: ${p.text}`);
}

function resolveCondition(
  c: Condition,
  resolve: (p: FieldPath) => ResolvedPath,
  text: string,
): ResolvedCondition {
  switch (c.kind) {
    case 'and':
    case 'or':
      return { kind: c.kind, items: c.items.map((i) => resolveCondition(i, resolve, text)) };
    case 'not':
      return { kind: 'not', item: resolveCondition(c.item, resolve, text) };
    case 'compare': {
      const path = resolve(c.field);
      checkFilterable(path, c.field, text);
      return { kind: 'compare', path, op: c.op, value: checkLiteral(path, c.value, text) };
    }
    case 'in': {
      const path = resolve(c.field);
      checkFilterable(path, c.field, text);
      return { kind: 'in', path, negate: c.negate, values: c.values.map((v) => checkLiteral(path, v, text)) };
    }
  }
}

function checkFilterable(path: ResolvedPath, p: FieldPath, text: string): void {
  if (path.field.type.kind === 'textarea') {
    throw queryError(
      text,
      'INVALID_FIELD',
      p.pos,
      `field '${path.field.name}' can not be filtered in a query call`,
    );
  }
}

/** The literal kind a field compares with. */
function literalKindFor(field: FieldSpec): { kind: Literal['kind']; label: string } {
  switch (field.type.kind) {
    case 'boolean':
      return { kind: 'boolean', label: 'boolean' };
    case 'int':
    case 'double':
      return { kind: 'number', label: 'number' };
    case 'date':
      return { kind: 'date', label: 'date' };
    case 'datetime':
      return { kind: 'datetime', label: 'dateTime' };
    default:
      return { kind: 'string', label: 'string' };
  }
}

function checkLiteral(path: ResolvedPath, value: Literal, text: string): Literal {
  if (value.kind === 'null') return value;
  const expected = literalKindFor(path.field);
  if (value.kind !== expected.kind) {
    const quoting =
      expected.kind === 'string' ? 'should be enclosed in quotes' : 'should not be enclosed in quotes';
    throw queryError(
      text,
      'INVALID_FIELD',
      value.pos,
      `value of filter criterion for field '${path.field.name}' must be of type ${expected.label} and ${quoting}`,
    );
  }
  const kind = path.field.type.kind;
  if (value.kind === 'string' && (kind === 'id' || kind === 'reference' || kind === 'recordType')) {
    const id = normalizeId(value.value);
    if (id === undefined) {
      throw queryError(text, 'INVALID_QUERY_FILTER_OPERATOR', value.pos, 'invalid ID field');
    }
    return { ...value, value: id };
  }
  return value;
}

const COLUMN_OF: Record<string, TimeBound['column']> = {
  CreatedDate: 'created',
  LastModifiedDate: 'modified',
  SystemModstamp: 'modstamp',
};

/** Conditions on indexed system dates that every matching record satisfies (top-level AND only). */
function timeBounds(where: ResolvedCondition): TimeBound[] {
  const items = where.kind === 'and' ? where.items : [where];
  const bounds: TimeBound[] = [];
  for (const item of items) {
    if (
      item.kind !== 'compare' ||
      item.path.hops.length > 0 ||
      item.value.kind !== 'datetime' ||
      item.op === '!='
    )
      continue;
    const column = COLUMN_OF[item.path.field.name];
    if (column) bounds.push({ column, op: item.op, ms: item.value.ms });
  }
  return bounds;
}

/** Reads records of the store for one query run, caching parents followed by relationship paths. */
export class QueryReader {
  readonly #schema: Schema;
  readonly #store: RecordStore;
  readonly #parents = new Map<string, StoredRecord | null>();

  constructor(schema: Schema, store: RecordStore) {
    this.#schema = schema;
    this.#store = store;
  }

  /** The record at the end of the hops, null when a reference on the way is empty. */
  follow(record: StoredRecord, hops: readonly FieldSpec[]): StoredRecord | null {
    let current: StoredRecord | null = record;
    for (const hop of hops) {
      if (!current) return null;
      const id: StoredValue | undefined = current.fields[hop.name];
      if (typeof id !== 'string') return null;
      let parent = this.#parents.get(id);
      if (parent === undefined) {
        parent = this.#store.get(id) ?? null;
        this.#parents.set(id, parent);
      }
      current = parent;
    }
    return current;
  }

  value(record: StoredRecord, path: ResolvedPath): StoredValue {
    const target = this.follow(record, path.hops);
    return target ? fieldValue(target, path.field) : null;
  }

  objectOf(record: StoredRecord): ObjectSpec | undefined {
    return this.#schema.object(record.object);
  }
}

/** Runs a plan: the ids of the matching records, in order, limit and offset applied. */
export function executeQuery(
  plan: QueryPlan,
  store: RecordStore,
  reader: QueryReader,
  includeDeleted: boolean,
): string[] {
  const candidates = store.list(plan.object.name, { includeDeleted, bounds: plan.bounds });
  const matching = plan.where ? candidates.filter((r) => matches(plan.where!, r, reader)) : candidates;
  if (plan.orderBy.length > 0) {
    // Sort keys are computed once per record, not per comparison.
    const keyed = matching.map((r) => ({
      r,
      keys: plan.orderBy.map((o) => comparable(reader.value(r, o.path), o.path.field)),
    }));
    keyed.sort((a, b) => {
      for (const [i, o] of plan.orderBy.entries()) {
        const c = compareForSort(a.keys[i] ?? null, b.keys[i] ?? null, o);
        if (c !== 0) return c;
      }
      return a.r.id < b.r.id ? -1 : a.r.id > b.r.id ? 1 : 0;
    });
    matching.splice(0, matching.length, ...keyed.map((k) => k.r));
  }
  const from = plan.offset;
  const to = plan.limit === undefined ? matching.length : from + plan.limit;
  return matching.slice(from, to).map((r) => r.id);
}

/**
 * A value in a form that compares with `<` as SOQL compares it: text case-insensitively, dates and
 * date-times by their canonical text (fixed-width, so lexical order is time order), ids exactly.
 */
function comparable(value: StoredValue, field: FieldSpec): string | number | null {
  if (value === null) return null;
  if (typeof value === 'number') return value;
  if (typeof value === 'boolean') return value ? 1 : 0;
  switch (field.type.kind) {
    case 'date':
    case 'datetime':
    case 'id':
    case 'reference':
    case 'recordType':
      return value;
    default:
      return value.toLowerCase();
  }
}

function compareComparable(a: string | number, b: string | number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function compareForSort(
  a: string | number | null,
  b: string | number | null,
  order: { descending: boolean; nullsFirst: boolean },
): number {
  if (a === null && b === null) return 0;
  if (a === null) return order.nullsFirst ? -1 : 1;
  if (b === null) return order.nullsFirst ? 1 : -1;
  const c = compareComparable(a, b);
  return order.descending ? -c : c;
}

function literalValue(value: Literal): StoredValue {
  switch (value.kind) {
    case 'null':
      return null;
    case 'datetime':
      return formatDatetime(value.ms);
    default:
      return value.value;
  }
}

function compareOp(actual: StoredValue, op: CompareOp, literal: Literal, field: FieldSpec): boolean {
  const expected = comparable(literalValue(literal), field);
  const value = comparable(actual, field);
  if (expected === null) return op === '=' ? value === null : value !== null;
  if (value === null) return op === '!=';
  const c = compareComparable(value, expected);
  switch (op) {
    case '=':
      return c === 0;
    case '!=':
      return c !== 0;
    case '<':
      return c < 0;
    case '<=':
      return c <= 0;
    case '>':
      return c > 0;
    case '>=':
      return c >= 0;
  }
}

function matches(c: ResolvedCondition, record: StoredRecord, reader: QueryReader): boolean {
  switch (c.kind) {
    case 'and':
      return c.items.every((i) => matches(i, record, reader));
    case 'or':
      return c.items.some((i) => matches(i, record, reader));
    case 'not':
      return !matches(c.item, record, reader);
    case 'compare':
      return compareOp(reader.value(record, c.path), c.op, c.value, c.path.field);
    case 'in': {
      const actual = reader.value(record, c.path);
      const found = c.values.some((v) => compareOp(actual, '=', v, c.path.field));
      return c.negate ? !found : found;
    }
  }
}

/** One result row: `attributes`, then the selected fields, parent paths as nested records. */
export function projectRecord(
  plan: QueryPlan,
  record: StoredRecord,
  reader: QueryReader,
  version: string,
): Record<string, unknown> {
  const row: Record<string, unknown> = {
    attributes: { type: plan.object.name, url: recordUrl(version, plan.object.name, record.id) },
  };
  for (const path of plan.select) {
    let container = row;
    let current: StoredRecord | null = record;
    let broken = false;
    for (const [i, hop] of path.hops.entries()) {
      const name = path.names[i]!;
      current = reader.follow(current!, [hop]);
      if (!current) {
        if (!(name in container)) container[name] = null;
        broken = true;
        break;
      }
      let nested = container[name] as Record<string, unknown> | null | undefined;
      if (!nested) {
        const type = reader.objectOf(current)?.name ?? current.object;
        nested = { attributes: { type, url: recordUrl(version, type, current.id) } };
        container[name] = nested;
      }
      container = nested;
    }
    if (!broken && current) container[path.field.name] = fieldValue(current, path.field);
  }
  return row;
}
