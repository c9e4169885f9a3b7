/**
 * Identity resolution quality on the labelled Synthea test set (typos, swapped names, moved addresses,
 * changed phones, twins, an HCP with two NPIs): pairwise precision and recall, review-band size and
 * throughput. Runnable alone with `node bench/identity.bench.ts`.
 */
import { join } from 'node:path';
import { DEFAULT_IDENTITY_CONFIG, type IdentityConfig } from '../src/core/identity/config.ts';
import { IdentityResolver } from '../src/core/identity/resolver.ts';
import { buildIdentityTestSet, type IdentityMetrics, scoreClusters } from '../src/core/identity/testset.ts';
import { createMatrixEngine } from '../src/core/matrix/engine.ts';
import { epicContext, readResources, syntheaPatients } from '../src/core/matrix/testing.ts';
import type { Hcp } from '../src/core/model/canonical.ts';
import type { Person } from '../src/core/model/entities.ts';
import { SAMPLE_DATA_DIR } from '../src/testkit/data.ts';

export interface IdentityBenchResult extends IdentityMetrics {
  readonly name: string;
  readonly recordsPerSec: number;
}

export async function benchIdentity(
  config: IdentityConfig = DEFAULT_IDENTITY_CONFIG,
): Promise<IdentityBenchResult> {
  const engine = createMatrixEngine();
  const persons: Person[] = [];
  for (const patient of await syntheaPatients()) {
    const mapped = engine.fhirToCanonical(patient, epicContext(), 'Person');
    if (mapped.ok) persons.push(mapped.value as Person);
  }
  const hcps: Hcp[] = [];
  for (const practitioner of await readResources(
    join(SAMPLE_DATA_DIR, 'directory', 'Practitioner.ndjson.gz'),
  )) {
    const mapped = engine.fhirToCanonical(practitioner, epicContext());
    if (mapped.ok && mapped.value.kind === 'HCP' && mapped.value.npi !== undefined) hcps.push(mapped.value);
    if (hcps.length >= 25) break;
  }
  const set = buildIdentityTestSet(persons, hcps);
  const resolver = new IdentityResolver(config);
  const started = performance.now();
  for (const { record } of set) resolver.resolve(record);
  const elapsed = performance.now() - started;
  const linksByMethod: Record<string, number> = {};
  let reviewRequested = 0;
  for (const event of resolver.events) {
    if (event.type === 'review-requested') reviewRequested++;
    if (event.type === 'linked') {
      const e = event.explanation;
      const method = e.method === 'deterministic' ? `deterministic:${e.rule}` : e.method;
      linksByMethod[method] = (linksByMethod[method] ?? 0) + 1;
    }
  }
  return {
    name: 'identity resolution (Synthea + noise)',
    ...scoreClusters(set, (key) => resolver.personOf(key)),
    reviewRequested,
    linksByMethod,
    recordsPerSec: Math.round((set.length / elapsed) * 1000),
  };
}

if (import.meta.main) {
  console.log(JSON.stringify(await benchIdentity(), null, 2));
}
