import { isJsonObject, type JsonObject, str } from '../fhir/resource.ts';
import type { SObjectValue, TargetWrite } from '../mapping/canonical-to-veeva.ts';
import { fail, type Issue, issue, type Outcome, ok, warning } from '../mapping/outcome.ts';
import type { CanonicalRecord, SourceRef } from '../model/canonical.ts';
import type { AnyCanonicalRecord } from '../model/entities.ts';
import { asExternalId, asSourceId } from '../model/ids.ts';
import { validateCanonical } from '../model/schemas.ts';
import { type CompiledField, type CompiledMapping, defaultMatrix, type Matrix } from './load.ts';
import { normalise, VALIDATOR_FNS } from './normalise.ts';
import type { Direction } from './schema.ts';
import { type MatrixContext, recordKeyExternalId, TRANSFORMS, type TransformEnv } from './transforms.ts';

export type { MatrixContext } from './transforms.ts';

/**
 * The matrix engine: applies the mapping matrix (config/mappings) to one record. Every verdict is an
 * Outcome; every output records the `id@version` of the matrix file that produced it.
 */

export interface VeevaWrites {
  readonly writes: readonly TargetWrite[];
  readonly mapping: string;
}

export interface FhirOutput {
  readonly resource: JsonObject;
  readonly mapping: string;
}

export interface MatrixEngine {
  readonly matrix: Matrix;
  /** Epic FHIR R4 resource → canonical record (`target` picks e.g. `Person` instead of `PatientProfile`). */
  fhirToCanonical(resource: JsonObject, ctx: MatrixContext, target?: string): Outcome<AnyCanonicalRecord>;
  /** Veeva SObject record (SOQL JSON, `attributes.type` or `object`) → canonical record. */
  veevaToCanonical(record: JsonObject, ctx: MatrixContext, object?: string): Outcome<AnyCanonicalRecord>;
  /** Canonical record → the CRM writes that represent it, parents first. */
  canonicalToVeeva(record: AnyCanonicalRecord, ctx: MatrixContext): Outcome<VeevaWrites>;
  /** Canonical record → a FHIR R4 resource. */
  canonicalToFhir(record: AnyCanonicalRecord, ctx: MatrixContext): Outcome<FhirOutput>;
  /** The mapping versions per direction (`id@version`). */
  versions(): Readonly<Partial<Record<Direction, string>>>;
}

export function createMatrixEngine(matrix: Matrix = defaultMatrix()): MatrixEngine {
  const byDirection = new Map<Direction, readonly CompiledMapping[]>();
  for (const f of matrix.files) byDirection.set(f.file.direction, f.mappings);

  function select(
    direction: Direction,
    sourceType: string,
    input: object,
    target?: string,
  ): CompiledMapping | undefined {
    for (const m of byDirection.get(direction) ?? []) {
      if (m.spec.source !== sourceType) continue;
      if (target !== undefined && m.spec.target !== target) continue;
      if (m.when !== undefined && !truthy(m.when(input))) continue;
      return m;
    }
    return undefined;
  }

  function noEntry<T>(direction: Direction, type: string): Outcome<T> {
    return fail('MAP_NO_MATRIX_ENTRY', [
      issue('MAP_NO_MATRIX_ENTRY', 'resourceType', `no ${direction} mapping for ${type}`),
    ]);
  }

  function toCanonical(
    direction: 'fhir-r4->canonical' | 'veeva->canonical',
    input: JsonObject,
    sourceType: string,
    ctx: MatrixContext,
    target?: string,
  ): Outcome<AnyCanonicalRecord> {
    const mapping = select(direction, sourceType, input, target);
    if (mapping === undefined) return noEntry(direction, sourceType);
    const issues: Issue[] = [];
    const warnings: Issue[] = [];
    const identity = mapping.identity ? firstString(mapping.identity(input)) : undefined;
    const identitySpec = mapping.spec.identity;
    if (identity === undefined && identitySpec !== undefined) {
      const code = identitySpec.onMissing;
      return fail(code as never, [
        issue(code, identitySpec.rule, `${sourceType} has no ${identitySpec.rule}`),
      ]);
    }
    const source = sourceRef(direction, input, sourceType, identity as string, ctx, mapping.version);
    const env: TransformEnv = { input, ctx, index: 0 };
    const out: Record<string, unknown> = { kind: mapping.spec.target, source };
    if (mapping.spec.builder !== undefined) {
      const built = (TRANSFORMS[mapping.spec.builder] as NonNullable<(typeof TRANSFORMS)[string]>)([], env);
      if ('problem' in built)
        return fail(built.problem.code as never, [
          issue(built.problem.code, sourceType, built.problem.message),
        ]);
      out.consent = built.values[0];
    }
    applyFields(mapping.fields, input, env, matrix, out, issues, warnings);
    if (issues.length > 0) return fail((issues[0] as Issue).code as never, issues);
    const checked = validateCanonical(out);
    if (!checked.ok) return checked;
    return ok(out as unknown as AnyCanonicalRecord, warnings);
  }

  return {
    matrix,
    fhirToCanonical: (resource, ctx, target) =>
      toCanonical('fhir-r4->canonical', resource, String(resource.resourceType), ctx, target),
    veevaToCanonical: (record, ctx, object) => {
      const type = object ?? (isJsonObject(record.attributes) ? str(record.attributes.type) : undefined);
      if (type === undefined) return noEntry('veeva->canonical', '(record without attributes.type)');
      return toCanonical('veeva->canonical', record, type, ctx);
    },
    canonicalToVeeva: (record, ctx) => {
      const input = record as unknown as JsonObject;
      const mapping = select('canonical->veeva', record.kind, input);
      if (mapping === undefined) return noEntry('canonical->veeva', record.kind);
      return veevaWrites(mapping, input, ctx, matrix);
    },
    canonicalToFhir: (record, ctx) => {
      const input = record as unknown as JsonObject;
      const mapping = select('canonical->fhir-r4', record.kind, input);
      if (mapping === undefined) return noEntry('canonical->fhir-r4', record.kind);
      const issues: Issue[] = [];
      const warnings: Issue[] = [];
      const fields: Record<string, unknown> = {};
      applyFields(mapping.fields, input, { input, ctx, index: 0 }, matrix, fields, issues, warnings);
      if (issues.length > 0) return fail((issues[0] as Issue).code as never, issues);
      const resource: JsonObject = { resourceType: mapping.spec.target };
      for (const [path, value] of Object.entries(fields)) {
        // FHIR forbids empty arrays and nulls: an absent value is left out.
        if (value === null || (Array.isArray(value) && value.length === 0)) continue;
        setPath(resource, path, value);
      }
      return ok({ resource, mapping: mapping.version }, warnings);
    },
    versions: () =>
      Object.fromEntries(matrix.files.map((f) => [f.file.direction, `${f.file.id}@${f.file.version}`])),
  };
}

function truthy(result: unknown[]): boolean {
  return result.length === 1 && result[0] === true;
}

function firstString(values: unknown[]): string | undefined {
  const v = values[0];
  return typeof v === 'string' && v.trim() !== '' ? v.trim() : undefined;
}

function sourceRef(
  direction: Direction,
  input: JsonObject,
  resourceType: string,
  id: string,
  ctx: MatrixContext,
  mapping: string,
): SourceRef {
  const ref: { -readonly [K in keyof SourceRef]: SourceRef[K] } = {
    system: ctx.system,
    resourceType,
    id: asSourceId(id),
    verifiedAt: ctx.verifiedAt,
  };
  if (direction === 'fhir-r4->canonical') {
    const meta = isJsonObject(input.meta) ? input.meta : {};
    const versionId = str(meta.versionId);
    const lastUpdated = str(meta.lastUpdated);
    if (versionId !== undefined) ref.versionId = versionId;
    if (lastUpdated !== undefined) ref.lastUpdated = lastUpdated;
  } else {
    const lastUpdated = str(input.LastModifiedDate);
    if (lastUpdated !== undefined) ref.lastUpdated = lastUpdated;
  }
  ref.mapping = mapping;
  return ref;
}

function configValue(config: Readonly<Record<string, unknown>> | undefined, path: string): unknown {
  let node: unknown = config;
  for (const part of path.split('.')) node = isJsonObject(node) ? node[part] : undefined;
  return node;
}

const SINGLE = new Set(['0..1', '1..1']);

/** Evaluates the fields of a mapping into `out` (keys = targets), collecting issues. */
function applyFields(
  fields: readonly CompiledField[],
  input: object,
  env: TransformEnv,
  matrix: Matrix,
  out: Record<string, unknown>,
  issues: Issue[],
  warnings: Issue[],
): void {
  for (const field of fields) {
    const result = evaluateField(field, input, env, matrix);
    if ('issue' in result) {
      issues.push(result.issue);
      continue;
    }
    const { spec } = field;
    const single = SINGLE.has(spec.cardinality);
    if (result.values.length === 0) {
      if (spec.warnIfAbsent !== undefined)
        warnings.push(warning(spec.warnIfAbsent, field.path, `${spec.target} is absent`));
      if (!single) out[spec.target] = [];
      else if (spec.nullWhenAbsent === true) out[spec.target] = null;
      continue;
    }
    out[spec.target] = single ? result.values[0] : result.values;
  }
}

type FieldResult = { readonly values: unknown[] } | { readonly issue: Issue };

function evaluateField(field: CompiledField, input: object, env: TransformEnv, matrix: Matrix): FieldResult {
  const { spec, path } = field;
  let found: readonly unknown[];
  if (field.rule !== undefined) found = field.rule(input);
  else if (spec.config !== undefined) found = [configValue(env.ctx.config, spec.config)];
  else found = [spec.constant];
  // Absent values dropped, strings normalised (blank ones dropped), in one pass.
  let values: unknown[] = [];
  for (const v of found) {
    if (v === null || v === undefined) continue;
    if (typeof v !== 'string') values.push(v);
    else {
      const n = spec.normalise.length > 0 ? normalise(v, spec.normalise) : v.trim() === '' ? undefined : v;
      if (n !== undefined) values.push(n);
    }
  }
  const single = SINGLE.has(spec.cardinality);
  const conflict = (vs: unknown[]): Issue | undefined => {
    if (!single || vs.length <= 1) return undefined;
    const distinct = new Set(vs.map((v) => JSON.stringify(v)));
    if (distinct.size <= 1) return undefined;
    const code = spec.onConflict ?? 'MAP_CONFLICTING_VALUES';
    return issue(code, path, `${distinct.size} different values for ${spec.target}; expected one`);
  };
  if (spec.transform === undefined) {
    const c = conflict(values);
    if (c) return { issue: c };
    if (values.length > 1) values = [...new Map(values.map((v) => [JSON.stringify(v), v])).values()];
  }
  if (spec.validate !== undefined) {
    const check = VALIDATOR_FNS[spec.validate];
    if (values.some((v) => !check(v))) {
      return {
        issue: issue(
          spec.onInvalid ?? 'MAP_INVALID_VALUE',
          path,
          `${spec.target} fails rule ${spec.validate}`,
        ),
      };
    }
  }
  if (spec.conceptMap !== undefined) {
    const map = matrix.conceptMaps[spec.conceptMap];
    const mapped: unknown[] = [];
    for (const v of values) {
      const key = String(v);
      if (map === undefined || !Object.hasOwn(map.entries, key)) {
        return { issue: issue('MAP_UNKNOWN_CODE', path, `code not in concept map ${spec.conceptMap}`) };
      }
      const target = map.entries[key];
      if (target !== null && target !== undefined) mapped.push(target);
    }
    values = mapped;
  }
  if (spec.allowedValues !== undefined) {
    const allowed: readonly unknown[] = spec.allowedValues;
    if (values.some((v) => !allowed.includes(v))) {
      return { issue: issue('MAP_INVALID_VALUE', path, `${spec.target} is not one of its allowed values`) };
    }
  }
  if (spec.transform !== undefined) {
    const result = (TRANSFORMS[spec.transform] as NonNullable<(typeof TRANSFORMS)[string]>)(values, env);
    if ('problem' in result) return { issue: issue(result.problem.code, path, result.problem.message) };
    values = result.values;
    const c = conflict(values);
    if (c) return { issue: c };
  }
  if (values.length === 0 && spec.default !== undefined && spec.default !== null) values = [spec.default];
  if (values.length === 0 && (spec.cardinality === '1..1' || spec.cardinality === '1..*')) {
    const code = spec.onMissing ?? 'MAP_REQUIRED_MISSING';
    return { issue: issue(code, path, `required ${spec.target} is missing`) };
  }
  return { values };
}

/** Sets `a.b[0].c` in a JSON object, creating objects and arrays on the way. */
function setPath(root: JsonObject, path: string, value: unknown): void {
  const parts = path.split('.').flatMap((p) => {
    const m = /^([^[]+)\[(\d+)\]$/.exec(p);
    return m ? [m[1] as string, Number(m[2])] : [p];
  });
  let node: Record<string | number, unknown> = root;
  for (let i = 0; i < parts.length - 1; i++) {
    const part = parts[i] as string | number;
    const next = parts[i + 1];
    if (node[part] === undefined) node[part] = typeof next === 'number' ? [] : {};
    node = node[part] as Record<string | number, unknown>;
  }
  node[parts[parts.length - 1] as string | number] = value;
}

function lineageLabel(kind: string | undefined, record: JsonObject): string | undefined {
  const source = isJsonObject(record.source) ? record.source : {};
  const base = `${String(source.system)}:${String(source.resourceType)}/${String(source.id)}`;
  switch (kind) {
    case 'source-label':
      return typeof source.versionId === 'string' ? `${base}/_history/${source.versionId}` : base;
    case 'patient-label':
      return `${String(source.system)}:Patient#${String(record.pseudonym)}`;
    default:
      return undefined;
  }
}

function externalIdOf(rule: string | undefined, record: JsonObject, ctx: MatrixContext): string | undefined {
  const source = isJsonObject(record.source) ? record.source : {};
  switch (rule) {
    case 'source-external-id':
      return recordKeyExternalId(source, ctx.system);
    case 'pseudonym':
      return str(record.pseudonym);
    default:
      return undefined;
  }
}

function veevaWrites(
  mapping: CompiledMapping,
  record: JsonObject,
  ctx: MatrixContext,
  matrix: Matrix,
): Outcome<VeevaWrites> {
  const { spec } = mapping;
  const lineageField = typeof ctx.config?.lineageField === 'string' ? ctx.config.lineageField : undefined;
  const object = spec.object ?? (spec.objectConfig ? configValue(ctx.config, spec.objectConfig) : undefined);
  const externalId = externalIdOf(spec.externalId, record, ctx);
  if (typeof object !== 'string' || externalId === undefined) {
    return fail('MAP_REQUIRED_MISSING', [
      issue('MAP_REQUIRED_MISSING', spec.externalId ?? 'object', 'no target object or external id'),
    ]);
  }
  const issues: Issue[] = [];
  const warnings: Issue[] = [];
  const fields: Record<string, unknown> = {};
  applyFields(mapping.fields, record, { input: record, ctx, index: 0 }, matrix, fields, issues, warnings);
  const label = lineageLabel(spec.lineage, record);
  if (lineageField !== undefined && label !== undefined)
    fields[lineageField] = `sluice;map=${mapping.version};src=${label}`;
  const writes: TargetWrite[] = [
    {
      object,
      externalIdField: spec.externalIdField as string,
      externalId: asExternalId(externalId),
      fields: fields as Record<string, SObjectValue>,
      rank: spec.rank ?? 0,
    },
  ];
  for (const child of mapping.children) {
    child.forEach(record).forEach((item, index) => {
      const childFields: Record<string, unknown> = {
        [child.spec.parentRelationship]: { [spec.externalIdField as string]: externalId },
      };
      const itemInput = isJsonObject(item) ? item : {};
      applyFields(
        child.fields,
        itemInput,
        { input: itemInput, ctx, index },
        matrix,
        childFields,
        issues,
        warnings,
      );
      const suffix = child.spec.lineageSuffix.replaceAll('{index}', String(index));
      if (lineageField !== undefined && label !== undefined)
        childFields[lineageField] = `sluice;map=${mapping.version};src=${label}${suffix}`;
      writes.push({
        object: child.spec.object,
        externalIdField: child.spec.externalIdField,
        externalId: asExternalId(
          child.spec.externalId.replaceAll('{parent}', externalId).replaceAll('{index}', String(index)),
        ),
        fields: childFields as Record<string, SObjectValue>,
        rank: child.spec.rank,
      });
    });
  }
  if (issues.length > 0) return fail((issues[0] as Issue).code as never, issues);
  return ok({ writes, mapping: mapping.version }, warnings);
}

/** True for the kinds the current pipeline delivers (HCP, Organization, PatientProfile). */
export function isLegacyKind(record: AnyCanonicalRecord): record is CanonicalRecord {
  return record.kind === 'HCP' || record.kind === 'Organization' || record.kind === 'PatientProfile';
}
