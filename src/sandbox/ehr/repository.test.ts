import { parseSearchRequest, type SearchRequest } from '@medplum/core';
import { MemoryRepository } from '@medplum/fhir-router';
import type { Bundle, Observation, Patient, Resource } from '@medplum/fhirtypes';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadFhirDefinitions } from './definitions.ts';
import { SandboxRepository } from './repository.ts';
import { seedRepository } from './seed.ts';
import { fakeClock, syntheaBundleFiles } from './testing.ts';

const defs = loadFhirDefinitions();

describe('search answered from the version log', () => {
  const clock = fakeClock(new Date('2026-03-01T08:00:00.000Z'));
  const repo = new SandboxRepository({ now: clock.now });

  beforeAll(async () => {
    // Spread lastUpdated over time so the bounds below cut through the data.
    const files = syntheaBundleFiles(3);
    for (const file of files) {
      await seedRepository(repo, [file], defs.isResourceType);
      clock.advance(1_500);
    }
    const observations = await repo.searchResources<Observation>({ resourceType: 'Observation', count: 40 });
    for (const observation of observations) {
      clock.advance(7);
      await repo.updateResource({ ...observation, status: 'amended' });
    }
    await repo.deleteResource('Observation', observations[0]?.id as string);
  });

  const base = (request: SearchRequest): Promise<Bundle> =>
    MemoryRepository.prototype.search.call(repo, request);
  const ids = (bundle: Bundle) => (bundle.entry ?? []).map((e) => e.resource?.id);

  it.each([
    'Observation',
    'Observation?_lastUpdated=gt2026-03-01T08:00:01.500Z',
    'Observation?_lastUpdated=ge2026-03-01T08:00:01.500Z',
    'Observation?_lastUpdated=lt2026-03-01T08:00:03Z',
    'Observation?_lastUpdated=le2026-03-01T08:00:03Z',
    'Observation?_lastUpdated=gt2026-03-01T08:00&_lastUpdated=le2026-03-01T08:00:04.520Z',
    'Observation?_lastUpdated=gt2026-02-28',
    'Observation?_lastUpdated=gt2026-03-01',
    'Observation?_lastUpdated=ge2026-03-01T10:00:01%2B02:00',
    'Observation?_lastUpdated=lt2027',
    'Observation?_lastUpdated=gt2026-03-01T08:00:04.5Z&_sort=_lastUpdated',
    // The time index (a bisection over current records sorted by lastUpdated) answers these:
    'Observation?_sort=_lastUpdated',
    'Observation?_lastUpdated=ge2026-03-01T08:00:01.500Z&_sort=_lastUpdated',
    'Observation?_lastUpdated=lt2026-03-01T08:00:03Z&_sort=_lastUpdated',
    'Observation?_lastUpdated=le2026-03-01T08:00:04.520Z&_sort=_lastUpdated',
    'Observation?_lastUpdated=gt2026-03-01T08:00:03Z&_lastUpdated=lt2026-03-01T08:00:01Z&_sort=_lastUpdated',
    'Observation?_lastUpdated=gt2027-01-01&_sort=_lastUpdated',
    'Patient?_lastUpdated=ge2026-03-01T10:00:01%2B02:00&_sort=_lastUpdated',
    'Encounter?_sort=-_lastUpdated,_id',
    'Patient?_sort=_id',
  ])('matches MemoryRepository for %s', async (query) => {
    const [type, text = ''] = query.split('?');
    const request = parseSearchRequest(type as 'Observation', Object.fromEntries(new URLSearchParams(text)));
    const sorted = (request.sortRules?.length ?? 0) > 0;
    const ours = await repo.search(request);
    const theirs = await base(request);
    expect(ours.total).toBe(theirs.total);
    if (!/gt2026-03-01$|gt2027|lt2026-03-01T08:00:01Z/.test(query)) expect(ours.total).toBeGreaterThan(0);
    if (sorted) {
      // Same members; the order follows the sort rules (MemoryRepository's own sort is not stable across ties).
      expect(ids(ours).sort()).toEqual(ids(theirs).sort());
      const rules = request.sortRules ?? [];
      const key = (r: Resource | undefined, code: string) =>
        (code === '_id' ? r?.id : r?.meta?.lastUpdated) ?? '';
      const expected = [...(ours.entry ?? [])].sort((a, b) => {
        for (const rule of rules) {
          const [ka, kb] = [key(a.resource, rule.code), key(b.resource, rule.code)];
          if (ka !== kb) return (ka < kb ? -1 : 1) * (rule.descending ? -1 : 1);
        }
        return 0;
      });
      expect(ids(ours)).toEqual(ids({ resourceType: 'Bundle', type: 'searchset', entry: expected }));
    } else {
      expect(ids(ours)).toEqual(ids(theirs));
    }
  });

  it('pages with _count and _offset, and skips deleted resources', async () => {
    const all = await repo.search(parseSearchRequest('Observation', { _sort: '_lastUpdated' }));
    const total = all.total as number;
    const seen: string[] = [];
    for (let offset = 0; offset < total; offset += 97) {
      const page = await repo.search(
        parseSearchRequest('Observation', { _sort: '_lastUpdated', _count: '97', _offset: String(offset) }),
      );
      expect(page.total).toBe(total);
      seen.push(...ids(page).map(String));
    }
    expect(seen).toEqual(ids(all).map(String));
    expect(new Set(seen).size).toBe(total);
    expect(total).toBe(repo.stats().byType.Observation);
  });

  it('sees every write in the next time-sorted search (updates move to the end, deletions leave)', async () => {
    const query = () =>
      repo.search(
        parseSearchRequest('Observation', {
          _sort: '_lastUpdated',
          _lastUpdated: 'gt2026-02-28',
          _count: '1000',
        }),
      );
    const before = ids(await query());
    expect(before.length).toBeGreaterThan(2);
    const [first, second] = before as [string, string];
    clock.advance(1000);
    const read = await repo.readResource<Observation>('Observation', first);
    await repo.updateResource({ ...read, status: 'cancelled' });
    expect(ids(await query())).toEqual([...before.filter((id) => id !== first), first]);
    await repo.deleteResource('Observation', second);
    const after = ids(await query());
    expect(after).toEqual([...before.filter((id) => id !== first && id !== second), first]);
    const theirs = await base(
      parseSearchRequest('Observation', { _lastUpdated: 'gt2026-02-28', _count: '1000' }),
    );
    expect([...after].sort()).toEqual(ids(theirs).sort());
  });
});

describe('versions and tombstones', () => {
  it('numbers concurrent writes 1, 2, 3… without gaps or repeats', async () => {
    const repo = new SandboxRepository();
    const patient = await repo.createResource<Patient>({ resourceType: 'Patient', id: 'p' });
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        repo.updateResource<Patient>({ ...patient, gender: i % 2 ? 'male' : 'female' }),
      ),
    );
    expect(results.map((r) => r.meta?.versionId).sort((a, b) => Number(a) - Number(b))).toEqual(
      Array.from({ length: 20 }, (_, i) => String(i + 2)),
    );
    const history = await repo.readHistory('Patient', 'p');
    expect(history.entry?.map((e) => e.resource?.meta?.versionId)).toEqual(
      Array.from({ length: 21 }, (_, i) => String(21 - i)),
    );
  });

  it('answers versionAt as of an instant, across a deletion', async () => {
    const clock = fakeClock(new Date('2026-05-01T00:00:00.000Z'));
    const repo = new SandboxRepository({ now: clock.now });
    await repo.createResource<Patient>({ resourceType: 'Patient', id: 'p', gender: 'female' });
    const t1 = clock.now().getTime();
    clock.advance(1000);
    await repo.updateResource<Patient>({ resourceType: 'Patient', id: 'p', gender: 'male' });
    clock.advance(1000);
    await repo.deleteResource('Patient', 'p');
    const t3 = clock.now().getTime();

    expect(await repo.versionAt('Patient', 'p', t1 - 1)).toBeUndefined();
    expect(await repo.versionAt('Patient', 'p', t1)).toMatchObject({
      kind: 'present',
      resource: { gender: 'female' },
    });
    expect(await repo.versionAt('Patient', 'p', t1 + 1500)).toMatchObject({
      kind: 'present',
      resource: { gender: 'male' },
    });
    expect(await repo.versionAt('Patient', 'p', t3)).toMatchObject({
      kind: 'deleted',
      tombstone: { versionId: '3', lastVersionId: '2' },
      last: { gender: 'male' },
    });
    expect(repo.stats()).toEqual({ resources: 0, byType: {}, deleted: 1 });
    await expect(repo.readResource('Patient', 'p')).rejects.toThrow('Gone');
    await expect(repo.updateResource({ resourceType: 'Patient', id: 'p' }, { ifMatch: '2' })).rejects.toThrow(
      'Precondition Failed',
    );

    clock.advance(1000);
    const revived = await repo.updateResource<Patient>({ resourceType: 'Patient', id: 'p' });
    expect(revived.meta?.versionId).toBe('4');
    expect(repo.stats()).toEqual({ resources: 1, byType: { Patient: 1 }, deleted: 0 });
    expect(repo.tombstones()).toEqual([]);
    expect((await repo.readHistory('Patient', 'p')).entry?.map((e) => e.response?.status)).toEqual([
      '201 Created',
      '410 Gone',
      '200 OK',
      '201 Created',
    ]);
  });

  it('stamps meta from its clock and ignores versionId/lastUpdated sent by the writer', async () => {
    const clock = fakeClock(new Date('2026-06-01T12:00:00.000Z'));
    const repo = new SandboxRepository({ now: clock.now });
    const written = await repo.createResource<Patient>({
      resourceType: 'Patient',
      meta: { versionId: '99', lastUpdated: '1999-01-01T00:00:00Z', tag: [{ code: 'kept' }] },
    });
    expect(written.meta).toEqual({
      versionId: '1',
      lastUpdated: '2026-06-01T12:00:00.000Z',
      tag: [{ code: 'kept' }],
    });
  });
});
