import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Patient, Practitioner } from '@medplum/fhirtypes';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SluiceError } from '../../../core/errors/index.ts';
import type { SystemName } from '../../../core/model/ids.ts';
import type { SourcePage } from '../../../core/ports/source.ts';
import { DEMO_CLIENT_ID, type EhrSandbox, startEhrSandbox } from '../../../sandbox/ehr/index.ts';
import { demoPrivateKey } from '../../../sandbox/ehr/testing.ts';
import { SAMPLE_DATA_DIR } from '../../../testkit/data.ts';
import { createRetryPolicy } from '../../http/retry-policy.ts';
import { BackendServicesAuth } from '../smart-auth.ts';
import { BulkExportClient, type ExportLevel } from './bulk-client.ts';
import { BulkExportSource } from './bulk-source.ts';

const PER_FILE = 100;

let ehr: EhrSandbox;

beforeAll(async () => {
  ehr = await startEhrSandbox({
    seed: [join(SAMPLE_DATA_DIR, 'synthea'), join(SAMPLE_DATA_DIR, 'directory')],
    bulkExport: { maxResourcesPerFile: PER_FILE },
  });
});

afterAll(async () => {
  await ehr?.close();
});

beforeEach(() => {
  ehr.faults.clear();
});

function bulkSource(
  options: {
    scope?: string;
    level?: ExportLevel;
    pageSize?: number;
    types?: string[];
    exportsAhead?: number;
  } = {},
): BulkExportSource {
  const auth = new BackendServicesAuth({
    baseUrl: ehr.url,
    clientId: DEMO_CLIENT_ID,
    privateKey: demoPrivateKey('RS384'),
    scope: options.scope ?? 'system/Patient.rs system/Practitioner.rs',
  });
  const client = new BulkExportClient({
    baseUrl: ehr.url,
    auth,
    retry: createRetryPolicy({ maxRetries: 5, initialDelayMs: 5, maxDelayMs: 20 }),
    downloadRetryDelayMs: 5,
    minPollIntervalMs: 5,
    maxPollIntervalMs: 20,
  });
  return new BulkExportSource({
    system: 'epic' as SystemName,
    client,
    resourceTypes: options.types ?? ['Patient', 'Practitioner'],
    pageSize: options.pageSize ?? 40,
    ...(options.level ? { level: options.level } : {}),
    ...(options.exportsAhead === undefined ? {} : { exportsAhead: options.exportsAhead }),
  });
}

async function readAll(source: BulkExportSource, stream: string, since?: string): Promise<SourcePage[]> {
  const pages: SourcePage[] = [];
  for await (const page of source.read(stream, since, new AbortController().signal)) pages.push(page);
  return pages;
}

function recordIds(pages: readonly SourcePage[]): string[] {
  return pages.flatMap((p) => p.records.map((r) => (r.resource as { id: string }).id));
}

/** Ids of the resources of a type that exist now (the repository also remembers deleted ones). */
function presentIds(type: string): string[] {
  return ehr.repo.recordedIds(type).filter((id) => ehr.repo.versionIdOf(type, id) !== undefined);
}

function requestsSince(start: number, method: string, prefix: string) {
  return ehr.requests.entries({ since: start, pathPrefix: prefix }).filter((e) => e.method === method);
}

describe('a full export', () => {
  it.each(['Patient', 'Practitioner'])(
    'yields every %s exactly once, checkpointed on the last page',
    async (type) => {
      const start = performance.timeOrigin + performance.now();
      const pages = await readAll(bulkSource(), type);
      const ids = recordIds(pages);
      expect(new Set(ids).size).toBe(ids.length);
      expect([...ids].sort()).toEqual(presentIds(type).sort());
      expect(ids.length).toBeGreaterThan(0);
      expect(pages.every((p) => p.records.length <= 40)).toBe(true);
      expect(pages.every((p) => p.total === ids.length)).toBe(true);
      expect(
        pages.every((p) =>
          p.records.every((r) => (r.resource as { resourceType: string }).resourceType === type),
        ),
      ).toBe(true);

      const checkpoint = pages.at(-1)?.checkpoint;
      expect(Date.parse(checkpoint ?? '')).toBeGreaterThanOrEqual(Math.floor(start));
      expect(pages.slice(0, -1).every((p) => p.checkpoint === undefined)).toBe(true);

      const origins = pages.flatMap((p) => p.records.map((r) => r.origin));
      expect(new Set(origins).size).toBe(origins.length);
      expect(origins[0]).toBe(`${type}-1.ndjson line 1`);
      expect(origins.at(-1)).toBe(
        `${type}-${Math.ceil(ids.length / PER_FILE)}.ndjson line ${ids.length % PER_FILE || PER_FILE}`,
      );

      expect(requestsSince(start, 'GET', '/fhir/$export')).toHaveLength(1);
      expect(requestsSince(start, 'DELETE', '/fhir/bulkstatus')).toHaveLength(1);
    },
  );
});

describe('exports kicked off ahead (a planned run)', () => {
  const plan = [
    { stream: 'Patient', since: undefined },
    { stream: 'Practitioner', since: undefined },
  ];

  it('kicks off the next stream while one is read, yields the same records, and releases both', async () => {
    const start = performance.timeOrigin + performance.now();
    const source = bulkSource();
    const signal = new AbortController().signal;
    source.plan(plan, signal);
    const patients: SourcePage[] = [];
    let kickOffsWhileReading = 0;
    for await (const page of source.read('Patient', undefined, signal)) {
      patients.push(page);
      kickOffsWhileReading = requestsSince(start, 'GET', '/fhir/$export').length;
    }
    expect(kickOffsWhileReading).toBe(2);
    const practitioners = await readAll(source, 'Practitioner');
    await source.close();
    expect(recordIds(patients).sort()).toEqual(presentIds('Patient').sort());
    expect(recordIds(practitioners).sort()).toEqual(presentIds('Practitioner').sort());
    expect(practitioners.at(-1)?.checkpoint).toBeDefined();
    expect(requestsSince(start, 'GET', '/fhir/$export')).toHaveLength(2);
    expect(requestsSince(start, 'DELETE', '/fhir/bulkstatus')).toHaveLength(2);
  });

  it.each([
    [2, 3],
    [1, 2],
    [0, 1],
  ])(
    'with exportsAhead %i, has %i exports under way while the first stream is read',
    async (ahead, expected) => {
      const start = performance.timeOrigin + performance.now();
      const types = ['Organization', 'Practitioner', 'Patient'];
      const source = bulkSource({
        scope: 'system/Patient.rs system/Practitioner.rs system/Organization.rs',
        types,
        exportsAhead: ahead,
      });
      const signal = new AbortController().signal;
      source.plan(
        types.map((stream) => ({ stream, since: undefined })),
        signal,
      );
      let during = 0;
      for await (const _page of source.read('Organization', undefined, signal)) {
        during = requestsSince(start, 'GET', '/fhir/$export').length;
      }
      expect(during).toBe(expected);
      expect(recordIds(await readAll(source, 'Practitioner')).sort()).toEqual(
        presentIds('Practitioner').sort(),
      );
      expect(recordIds(await readAll(source, 'Patient')).sort()).toEqual(presentIds('Patient').sort());
      await source.close();
      expect(requestsSince(start, 'GET', '/fhir/$export')).toHaveLength(3);
      expect(requestsSince(start, 'DELETE', '/fhir/bulkstatus')).toHaveLength(3);
    },
  );

  it('releases an export kicked off ahead that the run never read', async () => {
    const start = performance.timeOrigin + performance.now();
    const source = bulkSource();
    source.plan(plan, new AbortController().signal);
    await readAll(source, 'Patient');
    await source.close();
    expect(requestsSince(start, 'GET', '/fhir/$export')).toHaveLength(2);
    expect(requestsSince(start, 'DELETE', '/fhir/bulkstatus')).toHaveLength(2);
  });

  it('reads a stream from another position than planned with its own export', async () => {
    const start = performance.timeOrigin + performance.now();
    const source = bulkSource();
    source.plan(plan, new AbortController().signal);
    await readAll(source, 'Patient');
    const since = new Date(Date.now() + 60_000).toISOString();
    expect(recordIds(await readAll(source, 'Practitioner', since))).toEqual([]);
    await source.close();
    // Patient, Practitioner ahead (never read, released), Practitioner since.
    expect(requestsSince(start, 'GET', '/fhir/$export')).toHaveLength(3);
    expect(requestsSince(start, 'DELETE', '/fhir/bulkstatus')).toHaveLength(3);
  });
});

describe('_since', () => {
  it('yields exactly the changed resources and the deletions, with the export instant as checkpoint', async () => {
    const source = bulkSource();
    const patientCheckpoint = (await readAll(source, 'Patient')).at(-1)?.checkpoint as string;
    const practitionerCheckpoint = (await readAll(source, 'Practitioner')).at(-1)?.checkpoint as string;
    await sleep(5);

    const [changed, removed] = presentIds('Patient');
    const [gone] = presentIds('Practitioner');
    const patient = await ehr.repo.readResource<Patient>('Patient', changed as string);
    await ehr.repo.updateResource<Patient>({ ...patient, active: false });
    await ehr.repo.deleteResource('Patient', removed as string);
    await ehr.repo.deleteResource('Practitioner', gone as string);
    const created = await ehr.repo.createResource<Practitioner>({
      resourceType: 'Practitioner',
      name: [{ family: 'New' }],
    });
    await sleep(5);

    const before = Date.now();
    const patients = await readAll(source, 'Patient', patientCheckpoint);
    expect(recordIds(patients)).toEqual([changed]);
    expect(patients.flatMap((p) => p.deletions ?? [])).toEqual([
      { resourceType: 'Patient', id: removed, origin: 'deleted-1.ndjson line 1' },
    ]);
    const next = patients.at(-1)?.checkpoint as string;
    expect(next > patientCheckpoint).toBe(true);
    expect(Date.parse(next)).toBeGreaterThanOrEqual(before);

    const practitioners = await readAll(source, 'Practitioner', practitionerCheckpoint);
    expect(recordIds(practitioners)).toEqual([created.id]);
    expect(practitioners.flatMap((p) => p.deletions ?? []).map((d) => d.id)).toEqual([gone]);

    // From the new checkpoint, nothing changed: one empty page that moves the checkpoint on.
    const quiet = await readAll(source, 'Patient', next);
    expect(quiet).toHaveLength(1);
    expect(quiet[0]?.records).toEqual([]);
    expect(quiet[0]?.deletions).toBeUndefined();
    expect((quiet[0]?.checkpoint as string) >= next).toBe(true);
  });
});

describe('faults', () => {
  it('recovers from a 5xx, a dropped connection and a 429 while polling, without restarting the export', async () => {
    const start = performance.timeOrigin + performance.now();
    const rules = [
      ehr.faults.add({
        fault: { kind: 'status', status: 500 },
        method: 'GET',
        path: '/fhir/bulkstatus',
        times: 1,
      }),
      ehr.faults.add({ fault: { kind: 'drop' }, method: 'GET', path: '/fhir/bulkstatus', times: 1 }),
      ehr.faults.add({
        fault: { kind: 'rate-limit', retryAfter: '0' },
        method: 'GET',
        path: '/fhir/bulkstatus',
        times: 1,
      }),
    ];
    const ids = recordIds(await readAll(bulkSource(), 'Practitioner'));
    expect(rules.map((r) => r.hits)).toEqual([1, 1, 1]);
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(presentIds('Practitioner').sort());
    expect(requestsSince(start, 'GET', '/fhir/$export')).toHaveLength(1);
    expect(requestsSince(start, 'GET', '/fhir/bulkstatus').length).toBeGreaterThanOrEqual(4);
  });

  it('retries a file download that fails (5xx, then a dropped connection), with no duplicate lines', async () => {
    const start = performance.timeOrigin + performance.now();
    const rules = [
      ehr.faults.add({
        fault: { kind: 'status', status: 503 },
        method: 'GET',
        path: '/fhir/bulkfiles',
        times: 1,
      }),
      ehr.faults.add({ fault: { kind: 'drop' }, method: 'GET', path: '/fhir/bulkfiles', times: 1 }),
    ];
    const pages = await readAll(bulkSource(), 'Practitioner');
    const ids = recordIds(pages);
    expect(rules.map((r) => r.hits)).toEqual([1, 1]);
    expect(new Set(ids).size).toBe(ids.length);
    expect([...ids].sort()).toEqual(presentIds('Practitioner').sort());
    const files = Math.ceil(ids.length / PER_FILE);
    expect(requestsSince(start, 'GET', '/fhir/bulkfiles')).toHaveLength(files + 2);
    expect(requestsSince(start, 'GET', '/fhir/$export')).toHaveLength(1);
  });

  it('fails with SRC_EXPORT_INCOMPLETE when a listed file is gone, never yielding the checkpoint', async () => {
    const start = performance.timeOrigin + performance.now();
    ehr.faults.add({
      fault: { kind: 'status', status: 404 },
      method: 'GET',
      path: '/fhir/bulkfiles',
      times: 1,
    });
    const pages: SourcePage[] = [];
    const err = await (async () => {
      for await (const page of bulkSource().read('Patient', undefined, new AbortController().signal))
        pages.push(page);
    })().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SluiceError);
    expect((err as SluiceError).code).toBe('SRC_EXPORT_INCOMPLETE');
    expect(pages.some((p) => p.checkpoint !== undefined)).toBe(false);
    expect(requestsSince(start, 'DELETE', '/fhir/bulkstatus')).toHaveLength(1);
  });

  it('maps a 403 for a type the client may not read to SRC_FORBIDDEN', async () => {
    const source = bulkSource({ scope: 'system/Patient.rs', types: ['Patient', 'Observation'] });
    const err = await readAll(source, 'Observation').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SluiceError);
    expect((err as SluiceError).code).toBe('SRC_FORBIDDEN');
    expect((err as SluiceError).details.status).toBe(403);
    // The Patient stream of the same source still works.
    expect(recordIds(await readAll(source, 'Patient')).length).toBe(presentIds('Patient').length);
  });
});

describe('Patient- and Group-level export', () => {
  it('exports the members of a Group only, and nothing outside the Patient compartment', async () => {
    const members = presentIds('Patient').slice(0, 2);
    await ehr.repo.createResource({
      resourceType: 'Group',
      id: 'bulk-cohort',
      type: 'person',
      actual: true,
      member: members.map((id) => ({ entity: { reference: `Patient/${id}` } })),
    });
    const group = bulkSource({ level: { kind: 'group', groupId: 'bulk-cohort' } });
    expect(recordIds(await readAll(group, 'Patient')).sort()).toEqual([...members].sort());

    const patientLevel = bulkSource({ level: { kind: 'patient' } });
    expect(recordIds(await readAll(patientLevel, 'Patient')).sort()).toEqual(presentIds('Patient').sort());
    const practitioners = await readAll(patientLevel, 'Practitioner');
    expect(practitioners).toHaveLength(1);
    expect(practitioners[0]?.records).toEqual([]);
  });
});
