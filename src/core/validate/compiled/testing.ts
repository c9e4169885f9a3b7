import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { OperationOutcomeError, validateResource } from '@medplum/core';
import type { OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';
import { SAMPLE_DATA_DIR, sharedDataDir } from '../../../testkit/data.ts';

/** Real public FHIR R4 resources for the validator's tests and benchmark. */
export interface CorpusItem {
  /** File name, plus `#entry` index for Synthea bundle entries. */
  readonly source: string;
  readonly resource: object;
}

function readJsonDir(dir: string): CorpusItem[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => ({ source: f, resource: JSON.parse(readFileSync(join(dir, f), 'utf8')) as object }));
}

/** Official R4 examples (top level and terminology/) and the captured Epic sandbox samples. */
export function exampleCorpus(): CorpusItem[] {
  const shared = sharedDataDir();
  if (!shared) return [];
  return [
    ...readJsonDir(join(shared, 'fhir-r4-examples')),
    ...readJsonDir(join(shared, 'fhir-r4-examples', 'terminology')),
    ...readJsonDir(join(shared, 'epic', 'samples')),
  ];
}

/** Every entry resource of the Synthea bundles (the shared 60 patients, else the repository's samples). */
export function syntheaCorpus(limit = Number.POSITIVE_INFINITY): CorpusItem[] {
  const shared = sharedDataDir();
  const dir = shared ? join(shared, 'synthea', 'bundles') : join(SAMPLE_DATA_DIR, 'synthea');
  const out: CorpusItem[] = [];
  for (const file of readdirSync(dir)
    .filter((f) => f.endsWith('.json.gz'))
    .sort()) {
    const bundle = JSON.parse(gunzipSync(readFileSync(join(dir, file))).toString('utf8')) as {
      entry?: { resource?: object }[];
    };
    for (const [i, entry] of (bundle.entry ?? []).entries()) {
      if (entry.resource) out.push({ source: `${file}#${i}`, resource: entry.resource });
      if (out.length >= limit) return out;
    }
  }
  return out;
}

/** Medplum's verdict: its error-severity issues (empty when it accepts). Needs `loadR4Definitions()`. */
export function medplumErrors(resource: unknown): OperationOutcomeIssue[] {
  try {
    validateResource(resource as Resource);
    return [];
  } catch (err) {
    if (err instanceof OperationOutcomeError) {
      return (err.outcome.issue ?? []).filter((i) => i.severity === 'error' || i.severity === 'fatal');
    }
    // Medplum throws plain errors on some malformed shapes (e.g. an unknown contained type): a rejection.
    return [{ severity: 'fatal', code: 'exception', diagnostics: 'medplum threw' }];
  }
}
