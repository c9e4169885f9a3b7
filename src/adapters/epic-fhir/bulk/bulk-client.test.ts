import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SluiceError } from '../../../core/errors/index.ts';
import type { SystemName } from '../../../core/model/ids.ts';
import type { SourcePage } from '../../../core/ports/source.ts';
import { demoPrivateKey } from '../../../sandbox/ehr/testing.ts';
import { SAMPLE_DATA_DIR, sharedDataDir } from '../../../testkit/data.ts';
import { readResourceFile } from '../../files/resource-files.ts';
import { createRetryPolicy } from '../../http/retry-policy.ts';
import { BackendServicesAuth } from '../smart-auth.ts';
import { type BulkClientConfig, BulkExportClient, type ExportProgress } from './bulk-client.ts';
import { BulkExportSource, type BulkSourceConfig } from './bulk-source.ts';
import {
  type FakeBulkOptions,
  type FakeBulkServer,
  type FakeFile,
  ndjson,
  startFakeBulkServer,
} from './testing.ts';

const TRANSACTION_TIME = '2026-11-23T10:00:00.123Z';
const retry = createRetryPolicy({ maxRetries: 3, initialDelayMs: 5, maxDelayMs: 20 });

let patients: Record<string, unknown>[] = [];
const servers: FakeBulkServer[] = [];

beforeAll(async () => {
  // Real Synthea patients (the bundles shipped in examples/data).
  const file = join(SAMPLE_DATA_DIR, 'synthea', 'Abdul_Koepp_e925b0f3-8006-43f6-aa31-94bd215e55e7.json.gz');
  const all: Record<string, unknown>[] = [];
  for await (const item of readResourceFile(file)) if (item.kind === 'resource') all.push(item.resource);
  const patient = all.find((r) => r.resourceType === 'Patient') as Record<string, unknown>;
  // Nine distinct ids over the same real content.
  patients = Array.from({ length: 9 }, (_, i) => ({ ...patient, id: `p${i + 1}` }));
});

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function serve(options: FakeBulkOptions): Promise<FakeBulkServer> {
  const server = await startFakeBulkServer(options);
  servers.push(server);
  return server;
}

interface FileRef {
  readonly name: string;
  readonly type?: string;
  readonly count?: number;
}

function manifest(
  output: readonly FileRef[],
  more: { deleted?: readonly FileRef[]; error?: readonly FileRef[]; requiresAccessToken?: boolean } = {},
  fileOrigin?: string,
): (origin: string) => unknown {
  const entry = (origin: string, f: FileRef) => ({
    type: f.type ?? 'Patient',
    url: `${fileOrigin ?? origin}/files/${f.name}`,
    ...(f.count === undefined ? {} : { count: f.count }),
  });
  return (origin) => ({
    transactionTime: TRANSACTION_TIME,
    request: `${origin}/fhir/$export?_type=Patient`,
    requiresAccessToken: more.requiresAccessToken ?? true,
    output: output.map((f) => entry(origin, f)),
    deleted: (more.deleted ?? []).map((f) => entry(origin, { type: 'Bundle', ...f })),
    error: (more.error ?? []).map((f) => entry(origin, { type: 'OperationOutcome', ...f })),
  });
}

function client(server: FakeBulkServer, extra: Partial<BulkClientConfig> = {}): BulkExportClient {
  return new BulkExportClient({
    baseUrl: server.url,
    retry,
    downloadRetryDelayMs: 5,
    minPollIntervalMs: 0,
    maxPollIntervalMs: 20,
    ...extra,
  });
}

function source(c: BulkExportClient, extra: Partial<BulkSourceConfig> = {}): BulkExportSource {
  return new BulkExportSource({
    system: 'epic' as SystemName,
    client: c,
    resourceTypes: ['Patient'],
    pageSize: 3,
    ...extra,
  });
}

async function readAll(
  s: BulkExportSource,
  since?: string,
  signal = new AbortController().signal,
): Promise<SourcePage[]> {
  const pages: SourcePage[] = [];
  for await (const page of s.read('Patient', since, signal)) pages.push(page);
  return pages;
}

function ids(pages: readonly SourcePage[]): unknown[] {
  return pages.flatMap((p) => p.records.map((r) => (r.resource as { id?: unknown }).id));
}

function fileGets(server: FakeBulkServer, name: string): number {
  return server.requests.filter((r) => r.method === 'GET' && r.path === `/files/${name}`).length;
}

function released(server: FakeBulkServer): boolean {
  return server.requests.some((r) => r.method === 'DELETE' && r.path === '/fhir/status/1');
}

async function failure(promise: Promise<unknown>): Promise<SluiceError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SluiceError);
  return err as SluiceError;
}

describe('records from NDJSON files', () => {
  it('pages records with file-and-line origins, the checkpoint on the last page only, then releases the job', async () => {
    const body = ndjson(patients.slice(0, 4));
    const server = await serve({
      manifest: manifest([{ name: 'Patient-1.ndjson', count: 4 }, { name: 'Patient-2.ndjson' }]),
      files: { 'Patient-1.ndjson': { body }, 'Patient-2.ndjson': { body: ndjson(patients.slice(4)) } },
    });
    const pages = await readAll(source(client(server)), '2026-01-01T00:00:00Z');
    expect(pages.map((p) => p.records.length)).toEqual([3, 3, 3]);
    expect(ids(pages)).toEqual(patients.map((p) => p.id));
    expect(pages.map((p) => p.checkpoint)).toEqual([undefined, undefined, TRANSACTION_TIME]);
    expect(pages[0]?.records[0]?.origin).toBe('Patient-1.ndjson line 1');
    expect(pages[2]?.records[2]?.origin).toBe('Patient-2.ndjson line 5');
    expect(pages.every((p) => p.records.every((r) => r.stream === 'Patient'))).toBe(true);
    const kickOff = server.requests.find((r) => r.path === '/fhir/$export');
    expect(new URLSearchParams(kickOff?.query).get('_type')).toBe('Patient');
    expect(new URLSearchParams(kickOff?.query).get('_since')).toBe('2026-01-01T00:00:00Z');
    expect(released(server)).toBe(true);
  });

  it('turns malformed, non-UTF-8 and truncated lines into raw-text records and reads on', async () => {
    const [a, b, c] = patients;
    const body = Buffer.concat([
      Buffer.from(`${JSON.stringify(a)}\n{"resourceType":"Patient",\n\n`),
      Buffer.from([0xff, 0x0a]),
      Buffer.from(
        `${JSON.stringify(b)}\r\n${'x'.repeat(60_000)}\n${JSON.stringify(c)}\n{"resourceType":"Pat`,
      ),
    ]);
    const server = await serve({
      manifest: manifest([{ name: 'Patient-1.ndjson' }]),
      files: { 'Patient-1.ndjson': { body } },
    });
    const pages = await readAll(source(client(server, { maxLineBytes: 50_000 }), { pageSize: 100 }));
    expect(pages).toHaveLength(1);
    const records = pages[0]?.records ?? [];
    expect(records.map((r) => r.origin)).toEqual(
      [1, 2, 4, 5, 6, 7, 8].map((n) => `Patient-1.ndjson line ${n}`),
    );
    expect(records.map((r) => typeof r.resource)).toEqual([
      'object',
      'string',
      'string',
      'object',
      'string',
      'object',
      'string',
    ]);
    expect(records[1]?.resource).toBe('{"resourceType":"Patient",');
    expect(records[4]?.resource).not.toContain('xxx');
    expect(records[6]?.resource).toBe('{"resourceType":"Pat');
    expect(pages[0]?.checkpoint).toBe(TRANSACTION_TIME);
    // A last line cut short may be a dropped connection: read again (5 attempts), then let it through.
    expect(fileGets(server, 'Patient-1.ndjson')).toBe(5);
  });

  it('decodes gzip, with and without Content-Encoding', async () => {
    const server = await serve({
      manifest: manifest([{ name: 'a.ndjson' }, { name: 'b.ndjson.gz' }]),
      files: {
        'a.ndjson': { body: ndjson(patients.slice(0, 5)), gzip: 'encoding' },
        'b.ndjson.gz': { body: ndjson(patients.slice(5)), gzip: 'raw' },
      },
    });
    expect(ids(await readAll(source(client(server))))).toEqual(patients.map((p) => p.id));
  });

  it('checkpoints the transactionTime as a UTC instant, whatever offset the server used', async () => {
    const server = await serve({
      manifest: (origin) => ({
        ...(manifest([])(origin) as object),
        transactionTime: '2026-11-23T11:00:00.1239+01:00',
      }),
    });
    const pages = await readAll(source(client(server)));
    expect(pages.at(-1)?.checkpoint).toBe('2026-11-23T10:00:00.123Z');
  });

  it('yields one empty page with the checkpoint when the export has no files', async () => {
    const server = await serve({ manifest: manifest([]) });
    const pages = await readAll(source(client(server)));
    expect(pages).toEqual([{ records: [], total: 0, checkpoint: TRANSACTION_TIME }]);
  });

  it('ignores output files of types other than the stream, with a note', async () => {
    const server = await serve({
      manifest: manifest([{ name: 'p.ndjson' }, { name: 'o.ndjson', type: 'Observation' }]),
      files: { 'p.ndjson': { body: ndjson(patients.slice(0, 2)) }, 'o.ndjson': { body: '{}\n' } },
    });
    const pages = await readAll(source(client(server)));
    expect(ids(pages)).toEqual(['p1', 'p2']);
    expect(pages[0]?.notes).toEqual(['bulk export listed 1 output file(s) of other types; ignored']);
    expect(fileGets(server, 'o.ndjson')).toBe(0);
  });
});

describe('download failures', () => {
  it('re-reads a file whose connection drops mid-stream, yielding every line exactly once', async () => {
    const body = ndjson(patients);
    const server = await serve({
      manifest: manifest([{ name: 'Patient-1.ndjson', count: 9 }]),
      files: {
        'Patient-1.ndjson': {
          body,
          attempts: [
            { kind: 'drop', afterBytes: Math.floor(body.length * 0.6) },
            { kind: 'status', status: 503, retryAfter: '0' },
            { kind: 'drop', afterBytes: Math.floor(body.length * 0.3) },
          ],
        },
      },
    });
    const pages = await readAll(source(client(server), { pageSize: 2 }));
    expect(ids(pages)).toEqual(patients.map((p) => p.id));
    expect(pages.flatMap((p) => p.records.map((r) => r.origin))).toEqual(
      patients.map((_, i) => `Patient-1.ndjson line ${i + 1}`),
    );
    expect(fileGets(server, 'Patient-1.ndjson')).toBe(4);
    expect(server.requests.filter((r) => r.path === '/fhir/$export')).toHaveLength(1);
  });

  it('detects a file cut short (fewer lines than its count) and reads it again', async () => {
    const body = ndjson(patients);
    const server = await serve({
      manifest: manifest([{ name: 'Patient-1.ndjson', count: 9 }]),
      files: {
        'Patient-1.ndjson': {
          body,
          // Once mid-line, once exactly at a line boundary.
          attempts: [
            { kind: 'short', afterBytes: Math.floor(body.length / 2) },
            { kind: 'short', afterBytes: body.indexOf('\n') + 1 },
          ],
        },
      },
    });
    const pages = await readAll(source(client(server)));
    expect(ids(pages)).toEqual(patients.map((p) => p.id));
    expect(pages.flatMap((p) => p.records).every((r) => typeof r.resource === 'object')).toBe(true);
    expect(fileGets(server, 'Patient-1.ndjson')).toBe(3);
  });

  it('fails with SRC_EXPORT_INCOMPLETE (no checkpoint) when a file keeps failing, and still releases the job', async () => {
    const body = ndjson(patients);
    // Cut in the last line (which would otherwise complete the count), then twice after line 8.
    const midLine = { kind: 'short', afterBytes: body.length - 10 } as const;
    const atLine = {
      kind: 'short',
      afterBytes: body.length - JSON.stringify(patients[8]).length - 1,
    } as const;
    const server = await serve({
      manifest: manifest([{ name: 'Patient-1.ndjson', count: 9 }]),
      files: { 'Patient-1.ndjson': { body, attempts: [midLine, atLine, atLine] } },
    });
    const pages: SourcePage[] = [];
    const err = await failure(
      (async () => {
        for await (const page of source(client(server, { downloadAttempts: 3 })).read(
          'Patient',
          undefined,
          new AbortController().signal,
        ))
          pages.push(page);
      })(),
    );
    expect(err.code).toBe('SRC_EXPORT_INCOMPLETE');
    expect(err.message).toContain('Patient-1.ndjson');
    expect(pages.some((p) => p.checkpoint !== undefined)).toBe(false);
    expect(fileGets(server, 'Patient-1.ndjson')).toBe(3);
    expect(released(server)).toBe(true);
  });

  it.each([404, 410])(
    'maps a file answering %i to SRC_EXPORT_INCOMPLETE without retrying',
    async (status) => {
      const server = await serve({
        manifest: manifest([{ name: 'gone.ndjson' }]),
        files: { 'gone.ndjson': { body: '', attempts: [{ kind: 'status', status }] } },
      });
      const err = await failure(readAll(source(client(server))));
      expect(err.code).toBe('SRC_EXPORT_INCOMPLETE');
      expect(err.details.status).toBe(status);
      expect(fileGets(server, 'gone.ndjson')).toBe(1);
      expect(released(server)).toBe(true);
    },
  );

  it('refuses a file on another origin (the token would go there) unless that origin is allowed', async () => {
    const storage = await serve({
      manifest: manifest([]),
      files: { 'Patient-1.ndjson': { body: ndjson(patients.slice(0, 2)) } },
    });
    const server = await serve({ manifest: manifest([{ name: 'Patient-1.ndjson' }], {}, storage.origin) });
    const err = await failure(readAll(source(client(server))));
    expect(err.code).toBe('SRC_EXPORT_FOREIGN_URL');
    expect(storage.requests).toHaveLength(0);
    expect(released(server)).toBe(true);

    const allowed = await readAll(source(client(server, { allowedOrigins: [storage.origin] })));
    expect(ids(allowed)).toEqual(['p1', 'p2']);
  });
});

describe('access tokens', () => {
  it.each([true, false])(
    'sends the bearer token to files only when requiresAccessToken is %s',
    async (requires) => {
      const server = await serve({
        manifest: manifest([{ name: 'Patient-1.ndjson' }], { requiresAccessToken: requires }),
        files: { 'Patient-1.ndjson': { body: ndjson(patients.slice(0, 1)) } },
      });
      const auth = new BackendServicesAuth({
        baseUrl: server.url,
        tokenUrl: `${server.origin}/token`,
        clientId: 'sluice-test',
        privateKey: demoPrivateKey('RS384'),
        scope: 'system/Patient.rs',
      });
      expect(ids(await readAll(source(client(server, { auth }))))).toEqual(['p1']);
      const file = server.requests.find((r) => r.path === '/files/Patient-1.ndjson');
      expect(file?.authorization).toBe(requires ? 'Bearer fake-token' : undefined);
      const status = server.requests.find((r) => r.path === '/fhir/status/1' && r.method === 'GET');
      expect(status?.authorization).toBe('Bearer fake-token');
    },
  );
});

describe('token renewal', () => {
  it('renews an expired token once when a file answers 401, then reads on', async () => {
    const server = await serve({
      manifest: manifest([{ name: 'Patient-1.ndjson' }]),
      files: {
        'Patient-1.ndjson': {
          body: ndjson(patients.slice(0, 2)),
          attempts: [{ kind: 'status', status: 401 }],
        },
      },
    });
    const auth = new BackendServicesAuth({
      baseUrl: server.url,
      tokenUrl: `${server.origin}/token`,
      clientId: 'sluice-test',
      privateKey: demoPrivateKey('ES384'),
      scope: 'system/Patient.rs',
    });
    expect(ids(await readAll(source(client(server, { auth, downloadAttempts: 1 }))))).toEqual(['p1', 'p2']);
    expect(server.requests.filter((r) => r.path === '/token')).toHaveLength(2);
    expect(fileGets(server, 'Patient-1.ndjson')).toBe(2);
  });

  it('maps a file that keeps answering 401 to SRC_FORBIDDEN', async () => {
    const denied = { kind: 'status', status: 401 } as const;
    const server = await serve({
      manifest: manifest([{ name: 'Patient-1.ndjson' }]),
      files: { 'Patient-1.ndjson': { body: '', attempts: [denied, denied, denied] } },
    });
    const auth = new BackendServicesAuth({
      baseUrl: server.url,
      tokenUrl: `${server.origin}/token`,
      clientId: 'sluice-test',
      privateKey: demoPrivateKey('ES384'),
      scope: 'system/Patient.rs',
    });
    expect((await failure(readAll(source(client(server, { auth }))))).code).toBe('SRC_FORBIDDEN');
    expect(fileGets(server, 'Patient-1.ndjson')).toBe(2);
  });
});

describe('polling', () => {
  it('waits as long as Retry-After asks and reports X-Progress', async () => {
    const server = await serve({
      manifest: manifest([]),
      pollsBeforeReady: 1,
      retryAfter: '1',
    });
    const progress: ExportProgress[] = [];
    const c = client(server, { minPollIntervalMs: undefined, maxPollIntervalMs: undefined });
    const pages = await readAll(source(c, { onProgress: (_stream, p) => progress.push(p) }));
    const polls = server.requests.filter((r) => r.method === 'GET' && r.path === '/fhir/status/1');
    expect(polls).toHaveLength(2);
    expect((polls[1]?.at ?? 0) - (polls[0]?.at ?? 0)).toBeGreaterThanOrEqual(950);
    expect(progress).toEqual([{ polls: 1, elapsedMs: expect.any(Number), text: 'step 1' }]);
    expect(pages[0]?.notes).toEqual(['bulk export was ready after 2 status polls (last progress: step 1)']);
  });

  it('gives up after the maximum wait with SRC_EXPORT_TIMEOUT and cancels the job', async () => {
    const server = await serve({ manifest: manifest([]), pollsBeforeReady: Number.POSITIVE_INFINITY });
    const err = await failure(readAll(source(client(server, { maxWaitMs: 150 }))));
    expect(err.code).toBe('SRC_EXPORT_TIMEOUT');
    expect(released(server)).toBe(true);
  });

  it('rejects an invalid manifest with SRC_BAD_RESPONSE naming keys, not values', async () => {
    const server = await serve({
      manifest: () => ({ transactionTime: 'Jane Roe 1970-01-01', request: 7, output: 'Smith', error: [] }),
    });
    const err = await failure(readAll(source(client(server))));
    expect(err.code).toBe('SRC_BAD_RESPONSE');
    expect(err.message).toMatch(/transactionTime/);
    expect(err.message).toMatch(/requiresAccessToken/);
    expect(err.message).toMatch(/output/);
    expect(JSON.stringify(err.toJSON())).not.toMatch(/Jane|Smith|1970/);
  });

  it('stops on abort, and still releases the job', async () => {
    const server = await serve({ manifest: manifest([]), pollsBeforeReady: Number.POSITIVE_INFINITY });
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('stop')), 60);
    await expect(readAll(source(client(server)), undefined, controller.signal)).rejects.toThrow('stop');
    expect(released(server)).toBe(true);
  });
});

describe('kick-off', () => {
  it('maps a refused kick-off to a catalog code', async () => {
    const bad = await serve({ manifest: manifest([]), kickOffStatus: 400 });
    const err = await failure(readAll(source(client(bad))));
    expect(err.code).toBe('SRC_HTTP_ERROR');
    expect(err.details).toMatchObject({ status: 400, codes: ['invalid'] });
    const forbidden = await serve({ manifest: manifest([]), kickOffStatus: 403 });
    expect((await failure(readAll(source(client(forbidden))))).code).toBe('SRC_FORBIDDEN');
    const ok = await serve({ manifest: manifest([]), kickOffStatus: 200 });
    expect((await failure(readAll(source(client(ok))))).code).toBe('SRC_BAD_RESPONSE');
  });

  it('kicks off at Group level when configured', async () => {
    const server = await serve({ manifest: manifest([]) });
    const c = client(server);
    await expect(
      c.kickOff(
        { level: { kind: 'group', groupId: 'cohort a' }, types: ['Patient', 'Observation'] },
        AbortSignal.timeout(5000),
      ),
    ).rejects.toMatchObject({ code: 'SRC_HTTP_ERROR' });
    const request = server.requests.at(-1);
    expect(request?.path).toBe('/fhir/Group/cohort%20a/$export');
    expect(new URLSearchParams(request?.query).get('_type')).toBe('Patient,Observation');
  });
});

describe('deleted and error files', () => {
  const shared = sharedDataDir();
  const example = (name: string): unknown => {
    if (!shared) throw new Error('these tests need the shared public data (../shared/data)');
    return JSON.parse(readFileSync(join(shared, 'fhir-r4-examples', name), 'utf8'));
  };

  it('turns DELETE entries of the stream type into deletions on the last page', async () => {
    // The official transaction example: one DELETE Patient/234, one conditional DELETE, eight other entries.
    const transaction = example('Bundle-bundle-transaction.json');
    const own = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        {
          request: { method: 'DELETE', url: 'Patient/p-old' },
          response: { lastModified: '2026-11-23T09:00:00Z' },
        },
        { request: { method: 'DELETE', url: 'Observation/o-1' } },
      ],
    };
    const server = await serve({
      manifest: manifest([{ name: 'Patient-1.ndjson' }], { deleted: [{ name: 'del-1.ndjson' }] }),
      files: {
        'Patient-1.ndjson': { body: ndjson(patients.slice(0, 3)) },
        'del-1.ndjson': { body: `${ndjson([transaction, own])}not json\n` },
      },
    });
    const pages = await readAll(source(client(server), { pageSize: 2 }));
    expect(pages.map((p) => [p.records.length, p.deletions?.length ?? 0])).toEqual([
      [2, 0],
      [1, 1],
      [0, 1],
    ]);
    expect(pages.flatMap((p) => p.deletions ?? [])).toEqual([
      { resourceType: 'Patient', id: '234', origin: 'del-1.ndjson line 1' },
      { resourceType: 'Patient', id: 'p-old', at: '2026-11-23T09:00:00Z', origin: 'del-1.ndjson line 2' },
    ]);
    expect(pages.at(-1)?.checkpoint).toBe(TRANSACTION_TIME);
    expect(pages.at(-1)?.notes).toEqual([
      'bulk export deleted files: 10 entr(ies) that are not a DELETE of Type/id skipped',
      'bulk export deleted files: 1 entr(ies) of other types ignored',
    ]);
  });

  it('reports error-file issue codes as notes without their text, or fails when configured to', async () => {
    const outcomes = [
      'OperationOutcome-101.json',
      'OperationOutcome-exception.json',
      'OperationOutcome-searchfail.json',
      'OperationOutcome-allok.json',
    ].map(example);
    const options: FakeBulkOptions = {
      manifest: manifest([{ name: 'Patient-1.ndjson' }], { error: [{ name: 'err-1.ndjson' }] }),
      files: {
        'Patient-1.ndjson': { body: ndjson(patients.slice(0, 1)) },
        'err-1.ndjson': { body: `${ndjson(outcomes)}{oops\n` } satisfies FakeFile,
      },
    };
    const server = await serve(options);
    const pages = await readAll(source(client(server)));
    expect(ids(pages)).toEqual(['p1']);
    expect(pages[0]?.notes).toEqual([
      'bulk export error files (err-1.ndjson): error:code-invalid x1, error:exception x1, ' +
        'fatal:code-invalid x1, information:informational x1, unreadable x1',
    ]);
    expect(JSON.stringify(pages[0]?.notes)).not.toMatch(/Acme|SQL|"W"/);

    const strict = await serve(options);
    const err = await failure(readAll(source(client(strict), { exportErrors: 'fail' })));
    expect(err.code).toBe('SRC_EXPORT_INCOMPLETE');
    expect(fileGets(strict, 'Patient-1.ndjson')).toBe(0);
    expect(released(strict)).toBe(true);
  });
});
