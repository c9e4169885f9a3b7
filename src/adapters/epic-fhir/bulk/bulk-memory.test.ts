import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Observation } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SystemName } from '../../../core/model/ids.ts';
import { DEMO_CLIENT_ID, type EhrSandbox, startEhrSandbox } from '../../../sandbox/ehr/index.ts';
import { demoPrivateKey } from '../../../sandbox/ehr/testing.ts';
import { SAMPLE_DATA_DIR } from '../../../testkit/data.ts';
import { createRetryPolicy } from '../../http/retry-policy.ts';
import { BackendServicesAuth } from '../smart-auth.ts';
import { BulkExportClient } from './bulk-client.ts';
import { BulkExportSource } from './bulk-source.ts';

/**
 * Memory stays bounded by a page while ~50k resources stream from a single NDJSON file: streaming
 * retains ~6 MB (mostly the id set below), a reader that buffered the file ~70 MB, hence the 50 MB
 * bound. About 6 s in all (seeding, cloning, the sandbox writing the export, reading it); a file of
 * its own so the heap measured is this test's.
 */

const CLONES = 50_000;
const PAGE = 500;
const MB = 1024 * 1024;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

let ehr: EhrSandbox;

beforeAll(async () => {
  ehr = await startEhrSandbox({
    seed: [join(SAMPLE_DATA_DIR, 'synthea')],
    // One file for everything: a reader that buffered a file would hold all of it.
    bulkExport: { maxResourcesPerFile: CLONES * 2 },
  });
  const originals = await ehr.repo.searchResources<Observation>({ resourceType: 'Observation' });
  for (let n = 0; n < CLONES; n++) {
    const { id: _id, meta: _meta, ...content } = originals[n % originals.length] as Observation;
    await ehr.repo.createResource<Observation>({ ...content, id: `clone-${n}` });
  }
}, 120_000);

afterAll(async () => {
  await ehr?.close();
});

describe('memory', () => {
  it('reads ~50k resources with bounded heap growth, each exactly once', async () => {
    const auth = new BackendServicesAuth({
      baseUrl: ehr.url,
      clientId: DEMO_CLIENT_ID,
      privateKey: demoPrivateKey('ES384'),
      scope: 'system/Observation.rs',
    });
    const source = new BulkExportSource({
      system: 'epic' as SystemName,
      client: new BulkExportClient({
        baseUrl: ehr.url,
        auth,
        retry: createRetryPolicy({ initialDelayMs: 5 }),
        minPollIntervalMs: 10,
        maxPollIntervalMs: 50,
      }),
      resourceTypes: ['Observation'],
      pageSize: PAGE,
    });
    const expected = ehr.stats().byType.Observation ?? 0;
    expect(expected).toBeGreaterThan(CLONES);

    gc();
    const baseline = process.memoryUsage().heapUsed;
    let peak = 0;
    let pages = 0;
    let records = 0;
    const ids = new Set<string>();
    for await (const page of source.read('Observation', undefined, new AbortController().signal)) {
      pages++;
      records += page.records.length;
      for (const r of page.records) ids.add((r.resource as { id: string }).id);
      expect(page.records.length).toBeLessThanOrEqual(PAGE);
      if (pages % 25 === 0) {
        // Retained memory only: what the reader holds, not garbage waiting for a collection.
        gc();
        peak = Math.max(peak, process.memoryUsage().heapUsed - baseline);
      }
    }
    expect(records).toBe(expected);
    expect(ids.size).toBe(expected);
    expect(pages).toBe(Math.ceil(expected / PAGE));
    console.log(`bulk memory: ${records} records, peak retained growth ${(peak / MB).toFixed(1)} MB`);
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThan(50 * MB);
  }, 120_000);
});
