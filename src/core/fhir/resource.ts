/** Small, pure helpers for reading plain FHIR JSON (already parsed, not yet trusted). */

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function asArray(value: unknown): unknown[] {
  if (value === undefined || value === null) return [];
  return Array.isArray(value) ? value : [value];
}

export function str(value: unknown): string | undefined {
  return typeof value === 'string' && value.trim() !== '' ? value : undefined;
}

/** The identifier values of a resource for one system (trimmed; Epic pads some ids with spaces). */
export function identifierValues(resource: JsonObject, system: string): string[] {
  const out: string[] = [];
  for (const identifier of asArray(resource.identifier)) {
    if (!isJsonObject(identifier) || identifier.system !== system) continue;
    const value = str(identifier.value);
    if (value !== undefined) out.push(value.trim());
  }
  return out;
}

/** `Type/id` of a relative or absolute literal reference, or undefined. */
export function parseReference(reference: unknown): { resourceType: string; id: string } | undefined {
  if (typeof reference !== 'string') return undefined;
  const match = /(?:^|\/)([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,256})(?:\/_history\/[^/]+)?$/.exec(reference);
  if (!match) return undefined;
  return { resourceType: match[1] as string, id: match[2] as string };
}
