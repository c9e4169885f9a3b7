/**
 * Test helpers for the anonymizer: the Synthea bundles (the shared set when present, else the copies in
 * examples/data), the Safe Harbor ZIP3 lists from the shared data, and a context with fixed test keys.
 * Test-only: production code does not import this module.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { SAMPLE_DATA_DIR, sharedDataDir } from '../../testkit/data.ts';
import type { JsonObject } from '../fhir/resource.ts';
import type { AnonymizeContext, RestrictedZip3 } from './context.ts';
import { loadProfile } from './profile.ts';
import type { PseudonymKey } from './pseudonym.ts';
import type { RuleSet } from './rules.ts';

export const RULE_SET_DIR = fileURLToPath(new URL('../../../config/anonymize/', import.meta.url));

export function exampleRuleSet(name: 'crm-follow-up' | 'analytics' | 'safe-harbor'): RuleSet {
  return loadProfile(name).ruleSet;
}

export function syntheaBundleFiles(): string[] {
  const shared = sharedDataDir();
  const dir = shared ? join(shared, 'synthea', 'bundles') : join(SAMPLE_DATA_DIR, 'synthea');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json.gz') || f.endsWith('.json'))
    .sort()
    .map((f) => join(dir, f));
}

export function readBundle(file: string): JsonObject {
  const raw = readFileSync(file);
  const text = file.endsWith('.gz') ? gunzipSync(raw).toString('utf8') : raw.toString('utf8');
  return JSON.parse(text) as JsonObject;
}

export function bundleResources(bundle: JsonObject): JsonObject[] {
  const entries = Array.isArray(bundle.entry) ? bundle.entry : [];
  return entries.flatMap((e) =>
    e !== null && typeof e === 'object' && !Array.isArray(e) && e.resource && typeof e.resource === 'object'
      ? [e.resource as JsonObject]
      : [],
  );
}

interface SafeHarborFile {
  restrictedZip3: string[];
  otherPublishedLists: { hrsaUdsPlus2020Census: { restrictedZip3: string[] } };
}

/** The HHS (2000 census) list, and the HRSA 2020 one, from the shared public data (or the repo config). */
export function restrictedZip3(list: 'hhs-2000' | 'hrsa-2020' = 'hhs-2000'): RestrictedZip3 {
  const shared = sharedDataDir();
  if (shared) {
    const file = JSON.parse(
      readFileSync(join(shared, 'safe-harbor-restricted-zip3.json'), 'utf8'),
    ) as SafeHarborFile;
    const prefixes =
      list === 'hhs-2000'
        ? file.restrictedZip3
        : file.otherPublishedLists.hrsaUdsPlus2020Census.restrictedZip3;
    return { listIds: [list], prefixes: new Set(prefixes) };
  }
  return { listIds: [list], prefixes: new Set(configZip3Lists()[list]) };
}

/** The lists in config/restricted-zip3.json. */
export function configZip3Lists(): Record<string, string[]> {
  const file = fileURLToPath(new URL('../../../config/restricted-zip3.json', import.meta.url));
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as { lists: Record<string, { prefixes: string[] }> };
  return Object.fromEntries(Object.entries(parsed.lists).map(([k, v]) => [k, v.prefixes]));
}

export function testKey(id: string, fill: number): PseudonymKey {
  return { id, secret: new Uint8Array(32).fill(fill) };
}

/** A context with two keys (k1 current, k0 the rotated-out one), a salt and the HHS ZIP3 list. */
export function testContext(overrides: Partial<AnonymizeContext> = {}): AnonymizeContext {
  return {
    system: 'epic',
    asOf: new Date('2025-01-01T00:00:00Z'),
    keyring: { currentKeyId: 'k1', keys: [testKey('k1', 7), testKey('k0', 3)] },
    hashSalt: new Uint8Array(16).fill(9),
    restrictedZip3: restrictedZip3('hhs-2000'),
    ...overrides,
  };
}
