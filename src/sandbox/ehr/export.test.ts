import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Operator } from '@medplum/core';
import type { Encounter, Observation, Patient } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoClient, type EhrSandbox, startEhrSandbox } from './index.ts';
import {
  fhirFetch,
  generateClient,
  getToken,
  kickOffExport,
  readNdjson,
  syntheaBundleDir,
  syntheaBundleFiles,
  waitForExport,
} from './testing.ts';

const PER_FILE = 1000;

let sandbox: EhrSandbox;
let token: string;
let control: string;
let other: Awaited<ReturnType<typeof generateClient>>;

beforeAll(async () => {
  other = await generateClient('other-client', 'system/*.read');
  sandbox = await startEhrSandbox({
    seed: [syntheaBundleDir()],
    clients: [demoClient(), other.client],
    bulkExport: { maxResourcesPerFile: PER_FILE },
  });
  token = await getToken(sandbox, { scope: 'system/*.read' });
  control = `${new URL(sandbox.url).origin}/__sandbox`;
});

afterAll(async () => {
  await sandbox?.close();
});

async function exportAll(path: string, bearer = token) {
  const manifest = await waitForExport(await kickOffExport(sandbox, path, bearer), bearer);
  const byType = new Map<string, Record<string, unknown>[]>();
  for (const file of manifest.output) {
    const lines = await readNdjson(file.url, bearer);
    expect(lines).toHaveLength(file.count);
    byType.set(file.type, [...(byType.get(file.type) ?? []), ...lines]);
  }
  return { manifest, byType };
}

function counts(byType: Map<string, unknown[]>): Record<string, number> {
  return Object.fromEntries([...byType].map(([type, lines]) => [type, lines.length]));
}

describe('kick-off', () => {
  it('requires Prefer: respond-async, a known _outputFormat, a valid _since and known types', async () => {
    const noPrefer = await fhirFetch(sandbox, '$export', token);
    expect(noPrefer.status).toBe(400);
    expect(((await noPrefer.json()) as { resourceType: string }).resourceType).toBe('OperationOutcome');

    const prefer = { headers: { prefer: 'respond-async' } };
    for (const path of [
      '$export?_outputFormat=application/fhir%2Bjson',
      '$export?_outputFormat=text/csv',
      '$export?_since=yesterday',
      '$export?_since=2026-01-01',
      '$export?_type=Patient,Nonsense',
      '$export?_typeFilter=Observation%3Fstatus%3Dfinal',
      'Patient/$export?_elements=id',
    ]) {
      const response = await fhirFetch(sandbox, path, token, prefer);
      expect(response.status, path).toBe(400);
    }
    for (const format of ['application/fhir+ndjson', 'application/ndjson', 'ndjson']) {
      const response = await fhirFetch(
        sandbox,
        `$export?_type=Patient&_outputFormat=${encodeURIComponent(format)}`,
        token,
        prefer,
      );
      expect(response.status, format).toBe(202);
    }
    const lenient = await fhirFetch(sandbox, '$export?_type=Patient&_elements=id', token, {
      headers: { prefer: 'respond-async, handling=lenient' },
    });
    expect(lenient.status).toBe(202);
  });

  it('needs a bearer token, and answers 202 with an absolute Content-Location', async () => {
    const anonymous = await fhirFetch(sandbox, '$export', undefined, {
      headers: { prefer: 'respond-async' },
    });
    expect(anonymous.status).toBe(401);
    const response = await fhirFetch(sandbox, '$export?_type=Patient', token, {
      headers: { prefer: 'respond-async' },
    });
    expect(response.status).toBe(202);
    expect(response.headers.get('content-location')).toMatch(
      /^http:\/\/127\.0\.0\.1:\d+\/fhir\/bulkstatus\/[0-9a-f-]+$/,
    );
  });
});

describe('system export', () => {
  it('exports every resource, split into files of at most the configured size', async () => {
    const stats = sandbox.stats();
    const { manifest, byType } = await exportAll('$export');
    expect(manifest.requiresAccessToken).toBe(true);
    expect(manifest.request).toBe(`${sandbox.url}/$export`);
    expect(Date.parse(manifest.transactionTime)).not.toBeNaN();
    expect(manifest.error).toEqual([]);
    expect(manifest.deleted).toEqual([]);
    expect(counts(byType)).toEqual(stats.byType);

    for (const [type, lines] of byType) {
      expect(lines.every((r) => r.resourceType === type)).toBe(true);
      expect(new Set(lines.map((r) => r.id)).size).toBe(lines.length);
      const files = manifest.output.filter((f) => f.type === type);
      expect(files).toHaveLength(Math.ceil(lines.length / PER_FILE));
      expect(files.every((f) => f.count <= PER_FILE)).toBe(true);
    }
    // Seeded transaction bundles arrive with resolved references, never urn:uuid.
    expect(JSON.stringify(byType.get('Encounter')?.slice(0, 50))).not.toContain('urn:uuid:');
  });

  it('exports only the requested _type', async () => {
    const { byType } = await exportAll('$export?_type=Patient,Practitioner');
    expect([...byType.keys()].sort()).toEqual(['Patient', 'Practitioner']);
    expect(byType.get('Patient')).toHaveLength(sandbox.stats().byType.Patient ?? -1);
  });

  it('refuses a _type the token cannot read (403) and, without _type, exports only readable types', async () => {
    const patientOnly = await getToken(sandbox, { scope: 'system/Patient.read' });
    const refused = await fhirFetch(sandbox, '$export?_type=Patient,Observation', patientOnly, {
      headers: { prefer: 'respond-async' },
    });
    expect(refused.status).toBe(403);
    const { byType } = await exportAll('$export', patientOnly);
    expect([...byType.keys()]).toEqual(['Patient']);
  });

  it('serves files only with a token of the same client', async () => {
    const manifest = await waitForExport(await kickOffExport(sandbox, '$export?_type=Patient', token), token);
    const url = manifest.output[0]?.url as string;
    expect((await fetch(url)).status).toBe(401);
    const otherToken = await getToken(sandbox, {
      clientId: 'other-client',
      alg: other.alg,
      key: other.privateKey,
    });
    const asOther = { headers: { authorization: `Bearer ${otherToken}` } };
    expect((await fetch(url, asOther)).status).toBe(404);
    const statusUrl = url.replace(/bulkfiles\/([^/]+)\/.*$/, 'bulkstatus/$1');
    expect((await fetch(statusUrl, asOther)).status).toBe(404);
    expect((await fetch(statusUrl, { ...asOther, method: 'DELETE' })).status).toBe(404);
    const response = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('application/fhir+ndjson');
  });

  it('does not block the event loop while exporting', async () => {
    const histogram = monitorEventLoopDelay({ resolution: 10 });
    histogram.enable();
    await exportAll('$export');
    histogram.disable();
    // Seeding-sized chunks keep each turn of the loop short; 13k resources take about a second in all.
    expect(histogram.max / 1e6).toBeLessThan(250);
  });
});

describe('_since and deletions', () => {
  it('exports only what changed after _since, and lists deletions', async () => {
    await sleep(5);
    const since = new Date().toISOString();
    await sleep(5);

    const patient = (
      await sandbox.repo.searchResources<Patient>({ resourceType: 'Patient', count: 1 })
    )[0] as Patient;
    const observation = (
      await sandbox.repo.searchResources<Observation>({ resourceType: 'Observation', count: 1 })
    )[0] as Observation;
    const encounter = (
      await sandbox.repo.searchResources<Encounter>({ resourceType: 'Encounter', count: 1 })
    )[0] as Encounter;

    const put = await fetch(`${control}/resources/Patient/${patient.id}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/fhir+json' },
      body: JSON.stringify({ ...patient, active: false }),
    });
    expect(put.status).toBe(200);
    const post = await fetch(`${control}/resources`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        resourceType: 'Observation',
        status: 'final',
        code: { text: 'new after since' },
        subject: { reference: `Patient/${patient.id}` },
      }),
    });
    expect(post.status).toBe(200);
    const newId = ((await post.json()) as { resources: { id: string }[] }).resources[0]?.id;
    await sandbox.repo.updateResource({ ...observation, status: 'amended' });
    const del = await fetch(`${control}/resources/Encounter/${encounter.id}`, { method: 'DELETE' });
    expect(del.status).toBe(200);

    const { manifest, byType } = await exportAll(`$export?_since=${encodeURIComponent(since)}`);
    expect(counts(byType)).toEqual({ Patient: 1, Observation: 2 });
    expect(byType.get('Patient')?.[0]).toMatchObject({ id: patient.id, active: false });
    expect(
      byType
        .get('Observation')
        ?.map((o) => o.id)
        .sort(),
    ).toEqual([observation.id, newId].sort());

    expect(manifest.deleted).toHaveLength(1);
    expect(manifest.deleted[0]?.type).toBe('Bundle');
    const bundles = await readNdjson(manifest.deleted[0]?.url as string, token);
    expect(bundles).toEqual([
      {
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [{ request: { method: 'DELETE', url: `Encounter/${encounter.id}` } }],
      },
    ]);

    // Without _since, nothing is listed as deleted and the deleted Encounter is not exported.
    const full = await exportAll('$export?_type=Encounter');
    expect(full.manifest.deleted).toEqual([]);
    expect(full.byType.get('Encounter')?.some((e) => e.id === encounter.id)).toBe(false);

    // A later _since sees nothing.
    await sleep(5);
    const later = await exportAll(`$export?_since=${encodeURIComponent(new Date().toISOString())}`);
    expect(later.manifest.output).toEqual([]);
    expect(later.manifest.deleted).toEqual([]);
  });
});

describe('Patient- and Group-level export', () => {
  it('exports the Patient compartments and nothing outside them', async () => {
    const stats = sandbox.stats();
    const { byType } = await exportAll('Patient/$export');
    expect(byType.has('Practitioner')).toBe(false);
    expect(byType.has('Organization')).toBe(false);
    expect(byType.get('Patient')).toHaveLength(stats.byType.Patient ?? -1);
    expect(byType.get('Observation')).toHaveLength(stats.byType.Observation ?? -1);
    const patientIds = new Set(byType.get('Patient')?.map((p) => p.id));
    for (const encounter of (byType.get('Encounter') ?? []) as unknown as Encounter[]) {
      expect(patientIds.has(encounter.subject?.reference?.replace('Patient/', ''))).toBe(true);
    }
    const withTypes = await exportAll('Patient/$export?_type=Patient,Practitioner');
    expect([...withTypes.byType.keys()]).toEqual(['Patient']);
  });

  it('exports the compartments of a Group’s members only', async () => {
    const patients = await sandbox.repo.searchResources<Patient>({ resourceType: 'Patient', count: 3 });
    const members = patients.slice(0, 2).map((p) => p.id as string);
    const group = await fetch(`${control}/resources/Group/cohort-a`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        resourceType: 'Group',
        type: 'person',
        actual: true,
        member: [
          ...members.map((id) => ({ entity: { reference: `Patient/${id}` } })),
          { entity: { reference: `Patient/${patients[2]?.id}` }, inactive: true },
        ],
      }),
    });
    expect(group.status).toBe(201);

    const { manifest, byType } = await exportAll('Group/cohort-a/$export');
    expect(manifest.request).toBe(`${sandbox.url}/Group/cohort-a/$export`);
    expect(
      byType
        .get('Patient')
        ?.map((p) => p.id)
        .sort(),
    ).toEqual([...members].sort());
    let expectedObservations = 0;
    for (const id of members) {
      expectedObservations += (
        await sandbox.repo.searchResources({
          resourceType: 'Observation',
          filters: [{ code: 'subject', operator: Operator.EQUALS, value: `Patient/${id}` }],
        })
      ).length;
    }
    expect(byType.get('Observation')).toHaveLength(expectedObservations);
    for (const observation of (byType.get('Observation') ?? []) as unknown as Observation[]) {
      expect(members).toContain(observation.subject?.reference?.replace('Patient/', ''));
    }
    expect(byType.has('Practitioner')).toBe(false);

    const missing = await fhirFetch(sandbox, 'Group/no-such-group/$export', token, {
      headers: { prefer: 'respond-async' },
    });
    expect(missing.status).toBe(404);
  });
});

describe('a running job', () => {
  it('reports progress, keeps the kick-off instant, and can be cancelled', async () => {
    let release: () => void = () => undefined;
    let gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const held = await startEhrSandbox({
      seed: syntheaBundleFiles(2),
      bulkExport: { chunkSize: 20, beforeChunk: () => gate },
    });
    try {
      const heldToken = await getToken(held, { scope: 'system/*.read' });
      const patient = (
        await held.repo.searchResources<Patient>({ resourceType: 'Patient', count: 1 })
      )[0] as Patient;

      const statusUrl = await kickOffExport(held, '$export?_type=Patient', heldToken);
      await sleep(20);
      const running = await fetch(statusUrl, { headers: { authorization: `Bearer ${heldToken}` } });
      expect(running.status).toBe(202);
      expect(running.headers.get('x-progress')).toMatch(/%/);
      expect(running.headers.get('retry-after')).toBe('1');

      // Changes after the kick-off are not in this export: it is as of transactionTime.
      await sleep(5);
      await held.repo.updateResource({ ...patient, active: false });
      await held.repo.createResource({ resourceType: 'Patient', gender: 'female' });
      release();
      const manifest = await waitForExport(statusUrl, heldToken);
      const exported = await readNdjson(manifest.output[0]?.url as string, heldToken);
      expect(exported).toHaveLength(2);
      const before = exported.find((p) => p.id === patient.id) as unknown as Patient;
      expect(before.meta?.versionId).toBe('1');
      expect(before.active).not.toBe(false);

      // Cancel: DELETE on the status URL, then the job is gone.
      gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      const second = await kickOffExport(held, '$export', heldToken);
      const cancel = await fetch(second, {
        method: 'DELETE',
        headers: { authorization: `Bearer ${heldToken}` },
      });
      expect(cancel.status).toBe(202);
      release();
      const after = await fetch(second, { headers: { authorization: `Bearer ${heldToken}` } });
      expect(after.status).toBe(404);
      // The finished job's files can be deleted the same way.
      expect(
        (await fetch(statusUrl, { method: 'DELETE', headers: { authorization: `Bearer ${heldToken}` } }))
          .status,
      ).toBe(202);
      expect(
        (
          await fetch(manifest.output[0]?.url as string, {
            headers: { authorization: `Bearer ${heldToken}` },
          })
        ).status,
      ).toBe(404);
    } finally {
      release();
      await held.close();
    }
  });
});
