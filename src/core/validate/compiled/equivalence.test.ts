import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadR4Definitions } from '../../fhir/definitions.ts';
import type { Issue } from '../../mapping/outcome.ts';
import { MUTATION_KINDS, type MutationKind, mutate } from './mutations.ts';
import { type CorpusItem, exampleCorpus, medplumErrors, syntheaCorpus } from './testing.ts';
import { validateFast } from './validate.ts';

/**
 * The compiled validator against medplum's `validateResource` (the reference it must not fall behind):
 * on every real resource we have, and on thousands of mutated ones.
 *
 * Known, deliberate differences in *paths* (verdicts must agree, paths are reported only):
 * - medplum reports cardinality problems at the element's definition path without array indexes
 *   (`Patient.name.given`), we at the instance (`Patient.name[0].given`);
 * - medplum names choice elements by definition (`Observation.value[x]`), we by JSON key
 *   (`Observation.valueQuantity`), which says which variant is wrong;
 * - where medplum reports a failed invariant of the parent after a child was emptied, we report the
 *   emptied child itself (FHIR's ele-1), which is where the fix goes;
 * - an object where a primitive choice value belongs (`occurrenceDateTime: {x: 1}`): medplum reports
 *   the object's keys (`Immunization.occurrence[x].x`), we the type mismatch at
 *   `Immunization.occurrenceDateTime`. This is the only kind left in the "different paths" line.
 *
 * Where we reject and medplum accepts, each case is a real R4 rule medplum does not check: empty
 * strings/arrays (medplum drops them before validating), codes outside required value sets, ids
 * breaking the id format (medplum types Resource.id as plain string), `resourceType` inside datatypes
 * and choice keys of a type the element does not allow (`effectiveString`; medplum accepts them when a
 * valid variant is also present), datatype invariants on nested values (per-1, qty-3, cpt-2: medplum only
 * evaluates those at the root), dom-3 (medplum skips it), dateTimes with a time but no zone.
 */

const errors = (issues: readonly Issue[]): Issue[] => issues.filter((i) => i.severity === 'error');

/**
 * Same place, modulo the differences above: indexes are dropped, a medplum `[x]` matches our typed key,
 * and either path may be the other's ancestor.
 */
function samePlace(ours: string, theirs: string): boolean {
  const strip = (p: string) => p.replace(/\[\d+\]/g, '');
  const a = strip(ours);
  const b = strip(theirs);
  const pattern = b.replace(/[.[\]]/g, (c) => `\\${c}`).replace(/\\\[x\\\]/g, '(\\[x\\]|[A-Z][A-Za-z]*)');
  return new RegExp(`^${pattern}`).test(a) || b.replace(/\[x\]/g, '').startsWith(a.replace(/\[x\]/g, ''));
}

let examples: CorpusItem[] = [];
let synthea: CorpusItem[] = [];

beforeAll(() => {
  loadR4Definitions();
  examples = exampleCorpus();
  synthea = syntheaCorpus();
});

describe('real resources: medplum and the compiled validator agree', () => {
  it('rejects everything medplum rejects and accepts every official example, Epic sample and Synthea entry', () => {
    const corpus = [...examples, ...synthea];
    expect(synthea.length).toBeGreaterThan(1000);
    const missed: string[] = [];
    const extra: string[] = [];
    let medplumRejected = 0;
    let pathAgreement = 0;
    const ourWarnings = new Map<string, number>();
    for (const { source, resource } of corpus) {
      const theirs = medplumErrors(resource);
      const issues = validateFast(resource);
      const ours = errors(issues);
      for (const w of issues.filter((i) => i.severity === 'warning')) {
        ourWarnings.set(`${w.code} ${w.path}`, (ourWarnings.get(`${w.code} ${w.path}`) ?? 0) + 1);
      }
      if (theirs.length > 0) {
        medplumRejected++;
        if (ours.length === 0) missed.push(source);
        else if (theirs.every((t) => ours.some((o) => samePlace(o.path, t.expression?.[0] ?? ''))))
          pathAgreement++;
      } else if (ours.length > 0) {
        extra.push(`${source}: ${ours.map((o) => `${o.code} ${o.path}`).join(', ')}`);
      }
    }
    console.info(
      `equivalence: ${corpus.length} real resources (${examples.length} examples/Epic, ${synthea.length} Synthea); ` +
        `medplum rejected ${medplumRejected} (same paths for ${pathAgreement}); we rejected ${extra.length} more; ` +
        `our warnings: ${[...ourWarnings].map(([k, n]) => `${k} x${n}`).join('; ') || 'none'}`,
    );
    expect(missed).toEqual([]);
    // The corpus is valid R4: no extra rule of ours may fire on it.
    expect(extra).toEqual([]);
  }, 180_000);

  it('accepts the official examples that carry contained resources, local references and Bundles', () => {
    const withContained = examples.filter((e) => 'contained' in e.resource);
    const bundles = examples.filter(
      (e) => (e.resource as { resourceType?: string }).resourceType === 'Bundle',
    );
    expect(withContained.length).toBeGreaterThan(3);
    expect(bundles.length).toBeGreaterThan(3);
    for (const { resource } of [...withContained, ...bundles])
      expect(errors(validateFast(resource))).toEqual([]);
  });
});

describe('mutated resources: every mutation medplum flags, we flag', () => {
  const runs = Number(process.env.SLUICE_VALIDATE_MUTATION_RUNS ?? 3000);

  it(`holds on ${runs} random mutations of real resources (fast-check)`, () => {
    const pool = [...examples, ...synthea.filter((_, i) => i % 7 === 0)].map((c) => c.resource);
    const stats = { tried: 0, medplum: 0, ours: 0, samePath: 0 };
    const differentPaths = new Map<string, number>();
    fc.assert(
      fc.property(
        fc.nat({ max: pool.length - 1 }),
        fc.constantFrom(...MUTATION_KINDS),
        fc.nat(),
        fc.nat(),
        (which, kind, node, variant) => {
          const mutated = mutate(pool[which] as object, kind, node, variant);
          if (!mutated) return;
          stats.tried++;
          const theirs = medplumErrors(mutated);
          const ours = errors(validateFast(mutated));
          if (ours.length > 0) stats.ours++;
          if (theirs.length === 0) return;
          stats.medplum++;
          expect(ours.length, `${kind}: medplum rejects, we accept`).toBeGreaterThan(0);
          if (theirs.some((t) => ours.some((o) => samePlace(o.path, t.expression?.[0] ?? ''))))
            stats.samePath++;
          else differentPaths.set(kind, (differentPaths.get(kind) ?? 0) + 1);
        },
      ),
      { numRuns: runs, seed: 20_240_611 },
    );
    console.info(
      `mutations: ${stats.tried} applied; medplum rejected ${stats.medplum}, we rejected ${stats.ours}; ` +
        `same path for ${stats.samePath} of medplum's; different paths by kind: ` +
        `${[...differentPaths].map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}`,
    );
    expect(stats.medplum).toBeGreaterThan(runs / 5);
    expect(stats.ours).toBeGreaterThan(stats.medplum);
    // Paths are reported rather than required to match, but they do in practice.
    expect(stats.samePath).toBeGreaterThanOrEqual(stats.medplum * 0.95);
  }, 300_000);

  /** Mutations that always break R4, whatever node they hit: we must reject every one, medplum does not. */
  const ALWAYS_INVALID: readonly MutationKind[] = [
    'emptyString',
    'emptyArray',
    'emptyObject',
    'wrapInArray',
    'unwrapArray',
    'duplicateChoice',
    'numberAsString',
    'badId',
    'wrongPrimitiveType',
    'unknownKey',
  ];

  it.each(ALWAYS_INVALID)('rejects every %s mutation', (kind) => {
    const pool = [...examples, ...synthea.filter((_, i) => i % 29 === 0)].map((c) => c.resource);
    let applied = 0;
    let medplumMissed = 0;
    fc.assert(
      fc.property(fc.nat({ max: pool.length - 1 }), fc.nat(), fc.nat(), (which, node, variant) => {
        const mutated = mutate(pool[which] as object, kind, node, variant);
        if (!mutated) return;
        applied++;
        if (medplumErrors(mutated).length === 0) medplumMissed++;
        expect(errors(validateFast(mutated)).length, `${kind} accepted`).toBeGreaterThan(0);
      }),
      { numRuns: 300, seed: 7 },
    );
    console.info(`${kind}: ${applied} mutations, all rejected by us; medplum accepted ${medplumMissed}`);
    expect(applied).toBeGreaterThan(100);
  });
});
