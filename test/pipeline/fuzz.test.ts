import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadR4Definitions } from '../../src/core/fhir/definitions.ts';
import type { JsonObject } from '../../src/core/fhir/resource.ts';
import { MUTATION_KINDS, mutate } from '../../src/core/validate/compiled/mutations.ts';
import { validateFast } from '../../src/core/validate/compiled/validate.ts';
import { runFlow } from '../../src/engine/pipeline/run-flow.ts';
import { SqliteStateStore } from '../../src/engine/store/sqlite-store.ts';
import { MemorySource, MemoryTarget, sampleResources, silentLogger, stageContext, stamp } from './fakes.ts';

let seeds: JsonObject[];

beforeAll(async () => {
  loadR4Definitions();
  seeds = [
    ...stamp(await sampleResources('Organization', 3)),
    ...stamp(await sampleResources('Practitioner', 3)),
    ...stamp(await sampleResources('Patient', 1)),
  ];
});

/** A record as a broken source might send it: a mutated real resource, or any JSON value at all. */
const anyRecord = () =>
  fc.oneof(
    fc
      .record({
        seed: fc.nat(),
        kind: fc.constantFrom(...MUTATION_KINDS),
        node: fc.nat(),
        variant: fc.nat(),
      })
      .map(({ seed, kind, node, variant }) => {
        const base = seeds[seed % seeds.length] as JsonObject;
        return (mutate(base, kind, node, variant) ?? base) as unknown;
      }),
    fc.jsonValue(),
    fc.constantFrom<unknown>(
      'not json at all',
      null,
      [],
      {},
      { resourceType: 'Patient' },
      { resourceType: 42 },
    ),
  );

describe('fuzzing the pipeline with random and mutated FHIR JSON', () => {
  it('never crashes; every input is delivered valid, withheld, or quarantined with a code', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(anyRecord(), { minLength: 1, maxLength: 25 }), async (records) => {
        // Give every record its own id so that de-duplication by id does not hide anything.
        const prepared = records.map((r, i) =>
          r !== null && typeof r === 'object' && !Array.isArray(r) && typeof (r as JsonObject).id === 'string'
            ? { ...(r as JsonObject), id: `fuzz-${i}` }
            : r,
        );
        const byStream: Record<string, unknown[]> = { Organization: [], Practitioner: [], Patient: [] };
        prepared.forEach((r, i) => {
          const type = (r as { resourceType?: unknown } | null)?.resourceType;
          const stream =
            typeof type === 'string' && type in byStream
              ? type
              : ['Organization', 'Practitioner', 'Patient'][i % 3];
          byStream[stream as string]?.push(r);
        });
        const target = new MemoryTarget();
        const store = SqliteStateStore.open(':memory:');
        const summary = await runFlow({
          flow: 'fuzz',
          definitionHash: 'h',
          source: new MemorySource(byStream, 7),
          target,
          store,
          stages: stageContext(),
          maxBatch: 50,
          logger: silentLogger,
        });
        expect(summary.status).toBe('succeeded');
        expect(summary.read).toBe(records.length);
        // Accounted for: each record is delivered (and its CRM records exist), withheld or quarantined.
        const quarantined = await store.listQuarantine({ flow: 'fuzz' });
        expect(quarantined.length).toBe(summary.quarantined);
        for (const c of Object.values(summary.byStream))
          expect(c.read).toBeGreaterThanOrEqual(c.quarantined + c.withheld);
        const quarantineCodes = Object.keys(summary.quarantineReasons);
        for (const code of quarantineCodes) expect(code).toMatch(/^[A-Z][A-Z0-9_]+$/);
        // Every quarantine entry says why; whatever reached the target passed validation.
        for (const q of quarantined) expect(q.issues.length).toBeGreaterThan(0);
        for (const r of prepared) {
          if (r === null || typeof r !== 'object' || Array.isArray(r)) continue;
          const o = r as JsonObject;
          const sent = [...target.records.keys()].some((k) => k.endsWith(`/${String(o.id)}`));
          if (sent) expect(validateFast(o).filter((i) => i.severity === 'error')).toEqual([]);
        }
        await store.close();
      }),
      { numRuns: 60 },
    );
  }, 120_000);
});
