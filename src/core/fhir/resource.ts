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

/**
 * Rewrites every `reference` string found in `targets` in place (e.g. a transaction Bundle's
 * `urn:uuid:` references to `Type/id`, as a FHIR server does).
 */
export function rewriteReferences(value: unknown, targets: ReadonlyMap<string, string>): void {
  if (Array.isArray(value)) {
    for (const item of value) rewriteReferences(item, targets);
    return;
  }
  if (typeof value !== 'object' || value === null) return;
  const object = value as Record<string, unknown>;
  for (const key of Object.keys(object)) {
    const child = object[key];
    if (key === 'reference' && typeof child === 'string') {
      const target = targets.get(child);
      if (target !== undefined) object[key] = target;
    } else if (typeof child === 'object' && child !== null) {
      rewriteReferences(child, targets);
    }
  }
}
