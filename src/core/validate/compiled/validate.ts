import type { Issue } from '../../mapping/outcome.ts';
import { resourceSpec, validateResourceObject } from './compile.ts';
import { type FastValidateOptions, ValidationContext } from './context.ts';
import type { Json } from './invariants.ts';

export type { FastValidateOptions } from './context.ts';

/**
 * Validates a parsed FHIR R4 resource against the base StructureDefinitions with compiled validators:
 * structure, cardinality, primitive formats, empty values, choice types, required bindings with
 * enumerable codes, invariants, and contained resources and Bundle entries recursively. Returns every
 * issue found (up to `maxIssues`); an empty list or warnings only means valid. Paths are FHIRPath-like
 * (`Patient.name[0].given[1]`, choice elements by their JSON name such as `Observation.valueQuantity`);
 * messages never quote record values.
 *
 * Medplum's `validateResource` (src/core/validate/fhir-schema.ts) remains the slow path for a second
 * opinion; this one is meant for the pipeline's hot path.
 */
export function validateFast(resource: unknown, options?: FastValidateOptions): Issue[] {
  const ctx = new ValidationContext(options);
  if (typeof resource !== 'object' || resource === null || Array.isArray(resource)) {
    ctx.error('VAL_NOT_A_RESOURCE', 'not a JSON object');
    return ctx.issues;
  }
  const type = (resource as Json).resourceType;
  // The root of every path; an unknown type is named only if it is shaped like one (never record content).
  ctx.enter(typeof type === 'string' && /^[A-Z][A-Za-z]{0,63}$/.test(type) ? type : 'Resource');
  validateResourceObject(resource as Json, ctx, false);
  return ctx.issues;
}

/**
 * Reads the R4 definitions and terminology and compiles the validators of these resource types now
 * instead of at their first record (about a second, once per process). Unknown types are ignored.
 */
export function prepareValidators(types: readonly string[]): void {
  for (const type of types) resourceSpec(type);
}

/** True when the issues contain an error (warnings alone leave a resource valid). */
export function hasErrors(issues: readonly Issue[]): boolean {
  return issues.some((i) => i.severity === 'error');
}
