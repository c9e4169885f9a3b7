import { describe, expect, it } from 'vitest';
import { loadR4Definitions } from '../fhir/definitions.ts';
import type { JsonObject } from '../fhir/resource.ts';
import { ClassificationCache } from './classification-cache.ts';
import { anonymize, anonymizeBundle } from './pipeline.ts';
import { PROFILE_NAMES } from './profile.ts';
import { bundleResources, exampleRuleSet, readBundle, syntheaBundleFiles, testContext } from './testing.ts';

// Classifications are reused across records: the same resources anonymized with nothing kept (each
// element classified afresh) and through a cache, cold and warm, come out the same in every profile.

loadR4Definitions();
const bundles = syntheaBundleFiles()
  .slice(0, 4)
  .map((file) => readBundle(file));

describe('ClassificationCache', () => {
  it('changes nothing an anonymization decides, for every shipped profile, cold or warm', () => {
    for (const name of PROFILE_NAMES) {
      const ruleSet = exampleRuleSet(name);
      const fresh = testContext({ classifications: new ClassificationCache(0) });
      const cached = testContext({ classifications: new ClassificationCache() });
      for (const bundle of bundles) {
        const expected = anonymizeBundle(bundle, ruleSet, fresh);
        expect(anonymizeBundle(bundle, ruleSet, cached)).toEqual(expected);
        expect(anonymizeBundle(bundle, ruleSet, cached)).toEqual(expected);
      }
      expect(cached.classifications?.size).toBeGreaterThan(0);
      expect(fresh.classifications?.size).toBe(0);
    }
  });

  it('keeps at most its limit, and classifies past it all the same', () => {
    const ruleSet = exampleRuleSet('analytics');
    const small = testContext({ classifications: new ClassificationCache(40) });
    const fresh = testContext({ classifications: new ClassificationCache(0) });
    const resources = bundles.flatMap((b) => bundleResources(b));
    for (const resource of resources) {
      expect(anonymize(resource, ruleSet, small)).toEqual(anonymize(resource, ruleSet, fresh));
    }
    expect(small.classifications?.size).toBe(40);
  });

  it('does not keep what made-up keys and resource types bring', () => {
    const ruleSet = exampleRuleSet('safe-harbor');
    const cache = new ClassificationCache();
    const ctx = testContext({ classifications: cache });
    const patient = bundleResources(bundles[0] as JsonObject).find((r) => r.resourceType === 'Patient');
    anonymize(patient, ruleSet, ctx);
    const kept = cache.size;
    for (let i = 0; i < 200; i++) {
      // Unknown keys are removed as unknown; a made-up type is withheld: neither grows the cache.
      expect(anonymize({ ...patient, [`x${i}`]: { y: i } }, ruleSet, ctx).resource).not.toHaveProperty(
        `x${i}`,
      );
      expect(anonymize({ resourceType: `Made${i}`, id: 'a' }, ruleSet, ctx).resource).toBeNull();
    }
    // One unknown-element classification under the Patient root, kept once.
    expect(cache.size).toBeLessThanOrEqual(kept + 1);
  });
});
