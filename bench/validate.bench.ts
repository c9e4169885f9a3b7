/**
 * Schema validation throughput: the compiled validator (src/core/validate/compiled) against medplum's
 * `validateResource` on the same Synthea bundle entries, in the same process (target: ratio >= 10).
 * Runnable alone with `node bench/validate.bench.ts`; prints one line.
 */
import { loadR4Definitions } from '../src/core/fhir/definitions.ts';
import { medplumErrors, syntheaCorpus } from '../src/core/validate/compiled/testing.ts';
import { validateFast } from '../src/core/validate/compiled/validate.ts';

export interface ValidateBenchResult {
  readonly medplumPerSec: number;
  readonly fastPerSec: number;
  readonly ratio: number;
  readonly resources: number;
}

const medplumValid = (resource: unknown): boolean => medplumErrors(resource).length === 0;

/** Runs `fn` over the set until at least `minMs` have passed; returns resources per second. */
function rate(resources: readonly unknown[], fn: (r: unknown) => unknown, minMs: number): number {
  let done = 0;
  const started = performance.now();
  let elapsed = 0;
  do {
    for (const r of resources) fn(r);
    done += resources.length;
    elapsed = performance.now() - started;
  } while (elapsed < minMs);
  return (done / elapsed) * 1000;
}

export async function benchValidate(
  options: { resources?: number; minMs?: number } = {},
): Promise<ValidateBenchResult> {
  loadR4Definitions();
  const resources = syntheaCorpus(options.resources ?? 3000).map((item) => item.resource);
  const minMs = options.minMs ?? 1500;
  // Warm-up: compiles the validators, loads the terminology and lets the JIT settle for both.
  for (const r of resources) medplumValid(r);
  rate(resources, validateFast, 500);
  // Interleaved halves, so a noisy neighbour on a shared machine hits both sides alike.
  let medplum = 0;
  let fast = 0;
  for (let round = 0; round < 2; round++) {
    medplum += rate(resources, medplumValid, minMs / 2);
    fast += rate(resources, validateFast, minMs / 2);
  }
  const medplumPerSec = Math.round(medplum / 2);
  const fastPerSec = Math.round(fast / 2);
  return {
    medplumPerSec,
    fastPerSec,
    ratio: Math.round((fastPerSec / medplumPerSec) * 10) / 10,
    resources: resources.length,
  };
}

if (import.meta.main) {
  const r = await benchValidate();
  console.log(
    `validate: ${r.resources} Synthea resources, medplum ${r.medplumPerSec}/s, compiled ${r.fastPerSec}/s, ratio ${r.ratio}x`,
  );
}
