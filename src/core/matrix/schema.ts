import { z } from 'zod';

/**
 * The published schema of a mapping matrix file (config/mappings/*.yaml). The matrix is data so that
 * reviewers, not code, decide what flows: each target field names its source, rule, cardinality,
 * normalisation, allowed values, owner and compliance note. `matrixJsonSchema()` exports it as JSON Schema.
 */

export const NORMALISERS = [
  'trim',
  'upper',
  'lower',
  'digits-only',
  'e164-phone',
  'collapse-space',
  'zip5',
] as const;
export type Normaliser = (typeof NORMALISERS)[number];

export const DRIVES = ['consent', 'eligibility', 'phi'] as const;
export type Drive = (typeof DRIVES)[number];

export const CARDINALITIES = ['0..1', '1..1', '0..*', '1..*'] as const;
export type Cardinality = (typeof CARDINALITIES)[number];

export const VALIDATORS = [
  'npi',
  'iso-date',
  'fhir-date',
  'iso-instant',
  'e164',
  'email',
  'external-id',
  'reference',
  'fhir-address',
  'fhir-identifier',
  'fhir-reference',
  'year',
  'zip3',
] as const;
export type ValidatorName = (typeof VALIDATORS)[number];

const code = z.string().regex(/^[A-Z][A-Z0-9_]+$/, 'an UPPER_SNAKE error code');

export const fieldSchema = z.strictObject({
  /** Target key: a canonical property, an SObject field or a FHIR element path (dots, `[n]`). */
  target: z.string().min(1),
  /** Where the value comes from, for reviewers and for issue paths (defaults to the rule). */
  source: z.string().min(1).optional(),
  /** FHIRPath evaluated on the input (compiled once when the matrix loads). */
  rule: z.string().min(1).optional(),
  /** A constant instead of a rule. */
  constant: z.union([z.string(), z.number(), z.boolean(), z.null()]).optional(),
  /** A dot path into the engine's mapping configuration instead of a rule (e.g. recordTypes.hcp). */
  config: z.string().min(1).optional(),
  cardinality: z.enum(CARDINALITIES),
  normalise: z.array(z.enum(NORMALISERS)).default([]),
  /** Named validation rule applied after normalisation. */
  validate: z.enum(VALIDATORS).optional(),
  /** Issue code when validation fails (default MAP_INVALID_VALUE). */
  onInvalid: code.optional(),
  /** Issue code when a single-valued field gets several distinct values (default MAP_CONFLICTING_VALUES). */
  onConflict: code.optional(),
  /** Issue code when a required field is missing (default MAP_REQUIRED_MISSING). */
  onMissing: code.optional(),
  allowedValues: z.array(z.union([z.string(), z.number(), z.boolean()])).optional(),
  /** Name of a concept map (concept-maps.yaml) that translates codes; unknown codes fail the record. */
  conceptMap: z.string().min(1).optional(),
  /** Named structural transform (see engine transforms) applied to the selected values. */
  transform: z.string().min(1).optional(),
  default: z.union([z.string(), z.number(), z.boolean(), z.null()]).optional(),
  /** Written as null when absent (Salesforce clears the field) instead of being omitted. */
  nullWhenAbsent: z.boolean().optional(),
  /** Warning code when the field is absent (the record still maps). */
  warnIfAbsent: code.optional(),
  drives: z.array(z.enum(DRIVES)).default([]),
  owner: z.string().min(1).optional(),
  compliance: z.string().min(1).optional(),
});
export type MatrixField = z.infer<typeof fieldSchema>;

export const childSchema = z.strictObject({
  /** FHIRPath on the input selecting the items, one child write each. */
  forEach: z.string().min(1),
  object: z.string().min(1),
  externalIdField: z.string().min(1),
  /** `{parent}` and `{index}` are replaced. */
  externalId: z.string().min(1),
  /** Relationship field set to the parent's external id. */
  parentRelationship: z.string().min(1),
  rank: z.number().int(),
  lineageSuffix: z.string().default(''),
  fields: z.array(fieldSchema).min(1),
});

export const mappingSchema = z.strictObject({
  /** Source type: FHIR resourceType, SObject name or canonical kind. */
  source: z.string().min(1),
  target: z.string().min(1),
  /** FHIRPath filter: the mapping applies only when it is true (e.g. person vs business Account). */
  when: z.string().min(1).optional(),
  description: z.string().optional(),
  /** Where the record's identity comes from (FHIR id, Veeva external id, canonical source). */
  identity: z
    .strictObject({
      rule: z.string().min(1),
      onMissing: code,
      owner: z.string().min(1),
    })
    .optional(),
  /** SObject writes only. */
  object: z.string().min(1).optional(),
  objectConfig: z.string().min(1).optional(),
  externalIdField: z.string().min(1).optional(),
  /** Named transform computing the external id for a write. */
  externalId: z.string().min(1).optional(),
  rank: z.number().int().optional(),
  /** Lineage label for SObject writes: `source-label` or `patient-label`. */
  lineage: z.enum(['source-label', 'patient-label']).optional(),
  /** Named builder for records whose structure a dedicated importer owns (e.g. consent). */
  builder: z.string().min(1).optional(),
  fields: z.array(fieldSchema).default([]),
  children: z.array(childSchema).default([]),
});
export type MatrixMapping = z.infer<typeof mappingSchema>;

export const DIRECTIONS = [
  'fhir-r4->canonical',
  'veeva->canonical',
  'canonical->veeva',
  'canonical->fhir-r4',
] as const;
export type Direction = (typeof DIRECTIONS)[number];

export const matrixFileSchema = z.strictObject({
  id: z.string().regex(/^[a-z0-9-]+$/),
  version: z.string().regex(/^\d+\.\d+\.\d+$/, 'semantic version'),
  direction: z.enum(DIRECTIONS),
  owner: z.string().min(1),
  description: z.string().min(1),
  mappings: z.array(mappingSchema).min(1),
});
export type MatrixFile = z.infer<typeof matrixFileSchema>;

export const conceptMapSchema = z.strictObject({
  description: z.string().min(1),
  owner: z.string().min(1),
  source: z.string().min(1),
  target: z.string().min(1),
  /** source code → target code; null maps to "absent". */
  entries: z.record(z.string(), z.union([z.string(), z.null()])),
});
export type ConceptMap = z.infer<typeof conceptMapSchema>;

export const conceptMapsFileSchema = z.strictObject({
  version: z.string().regex(/^\d+\.\d+\.\d+$/),
  maps: z.record(z.string().regex(/^[a-z0-9-]+$/), conceptMapSchema),
});
export type ConceptMapsFile = z.infer<typeof conceptMapsFileSchema>;

/** The matrix file schema as JSON Schema (draft 2020-12), for editors and reviewers. */
export function matrixJsonSchema(): unknown {
  return z.toJSONSchema(matrixFileSchema, { io: 'input' });
}
