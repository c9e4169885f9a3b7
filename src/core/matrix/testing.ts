import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readResourceFile } from '../../adapters/files/resource-files.ts';
import { SAMPLE_DATA_DIR, sharedDataDir } from '../../testkit/data.ts';
import type { PseudonymKey } from '../anonymize/pseudonym.ts';
import type { JsonObject } from '../fhir/resource.ts';
import type { VeevaMappingConfig } from '../mapping/canonical-to-veeva.ts';
import { asSystemName } from '../model/ids.ts';
import type { MatrixContext } from './transforms.ts';

/** Shared helpers for the matrix and identity tests and the identity benchmark. */

export const TEST_PSEUDONYM_KEY: PseudonymKey = { id: 'matrix-test', secret: new Uint8Array(32).fill(11) };

export const VEEVA_CONFIG: VeevaMappingConfig = {
  recordTypes: { hcp: '0128d0000005HcPAAU', hco: '0128d0000005HcOAAU' },
  patientProfileObject: 'Patient_Profile__c',
  lineageField: 'Sluice_Lineage__c',
};

export function epicContext(restrictedZip3: ReadonlySet<string> = new Set()): MatrixContext {
  return {
    system: asSystemName('epic'),
    verifiedAt: '2025-06-01T00:00:00.000Z',
    asOf: new Date('2025-06-01T00:00:00Z'),
    pseudonymKey: TEST_PSEUDONYM_KEY,
    restrictedZip3,
  };
}

export function veevaContext(config: VeevaMappingConfig = VEEVA_CONFIG): MatrixContext {
  return {
    system: asSystemName('veeva'),
    verifiedAt: '2025-06-01T00:00:00.000Z',
    pseudonymKey: TEST_PSEUDONYM_KEY,
    config: config as unknown as Readonly<Record<string, unknown>>,
  };
}

export async function readResources(file: string): Promise<JsonObject[]> {
  const out: JsonObject[] = [];
  for await (const item of readResourceFile(file)) {
    if (item.kind === 'resource') out.push(item.resource as JsonObject);
  }
  return out;
}

/** The Synthea bundles: the shared set (60 patients) when present, else the repository sample. */
export function syntheaFiles(): string[] {
  const shared = sharedDataDir();
  const dir = shared ? join(shared, 'synthea', 'bundles') : join(SAMPLE_DATA_DIR, 'synthea');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json.gz') || f.endsWith('.json'))
    .sort()
    .map((f) => join(dir, f));
}

export async function syntheaPatients(): Promise<JsonObject[]> {
  const out: JsonObject[] = [];
  for (const file of syntheaFiles()) {
    out.push(...(await readResources(file)).filter((r) => r.resourceType === 'Patient'));
  }
  return out;
}

/** Official FHIR R4 examples of the given types (from the shared data or its copy in test/fixtures). */
export function r4Examples(types: readonly string[]): { name: string; resource: JsonObject }[] {
  const shared = sharedDataDir();
  if (shared === undefined) return [];
  const dir = join(shared, 'fhir-r4-examples');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json') && types.includes(f.split('-')[0] as string))
    .sort()
    .map((name) => ({ name, resource: JSON.parse(readFileSync(join(dir, name), 'utf8')) as JsonObject }));
}
