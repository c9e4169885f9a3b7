import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (two levels above this file). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** Sample data shipped in the repository (Synthea bundles and a provider directory, with attribution). */
export const SAMPLE_DATA_DIR = join(REPO_ROOT, 'examples', 'data');

/** Fixtures copied into the repository from the project's shared public data (see test/fixtures/README.md). */
export const FIXTURES_DIR = join(REPO_ROOT, 'test', 'fixtures');

/**
 * The full shared public data set (60 Synthea patients, all official FHIR R4 examples), when this machine
 * has it: `SLUICE_SHARED_DATA`, else `../shared/data` beside the checkout, else the copy in
 * `test/fixtures/shared-data` (same files, see its README for sources and licences).
 */
export function sharedDataDir(): string | undefined {
  const candidates = [
    process.env.SLUICE_SHARED_DATA,
    join(REPO_ROOT, '..', 'shared', 'data'),
    // A copy kept in the repository, so a clone anywhere (CI) has the same public test data.
    join(REPO_ROOT, 'test', 'fixtures', 'shared-data'),
  ];
  for (const candidate of candidates) {
    if (candidate && existsSync(join(candidate, 'synthea'))) return candidate;
  }
  return undefined;
}
