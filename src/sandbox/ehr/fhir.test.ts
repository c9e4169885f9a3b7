import { setTimeout as sleep } from 'node:timers/promises';
import type { Bundle, CapabilityStatement, Observation, OperationOutcome, Patient } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { demoClient, type EhrSandbox, startEhrSandbox } from './index.ts';
import { fhirFetch, fhirGetJson, generateClient, getToken, syntheaBundleDir } from './testing.ts';

let sandbox: EhrSandbox;
let readToken: string;
let writeToken: string;
let seededAt: string;

beforeAll(async () => {
  const writer = await generateClient('writer', 'system/*.cruds');
  const started = new Date();
  sandbox = await startEhrSandbox({ seed: [syntheaBundleDir()], clients: [demoClient(), writer.client] });
  seededAt = started.toISOString();
  readToken = await getToken(sandbox, { scope: 'system/*.read' });
  writeToken = await getToken(sandbox, {
    clientId: 'writer',
    alg: writer.alg,
    key: writer.privateKey,
    scope: 'system/*.cruds',
  });
});

afterAll(async () => {
  await sandbox?.close();
});

async function firstId(resourceType: string): Promise<string> {
  const found = await sandbox.repo.searchResources({ resourceType: resourceType as 'Patient', count: 1 });
  return found[0]?.id as string;
}

function links(bundle: Bundle): Record<string, string> {
  return Object.fromEntries((bundle.link ?? []).map((l) => [l.relation, l.url]));
}

describe('discovery', () => {
  it('serves a CapabilityStatement at /metadata', async () => {
    const response = await fhirFetch(sandbox, 'metadata', undefined);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('application/fhir+json');
    const cs = (await response.json()) as CapabilityStatement;
    expect(cs.resourceType).toBe('CapabilityStatement');
    expect(cs.kind).toBe('instance');
    expect(cs.fhirVersion).toBe('4.0.1');
    const rest = cs.rest?.[0];
    expect(rest?.security?.service?.[0]?.coding?.[0]?.code).toBe('SMART-on-FHIR');
    const oauth = rest?.security?.extension?.find(
      (e) => e.url === 'http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris',
    );
    expect(oauth?.extension?.find((e) => e.url === 'token')?.valueUri).toBe(sandbox.tokenUrl);
    const types = rest?.resource?.map((r) => r.type) ?? [];
    expect(types).toEqual(
      expect.arrayContaining(['Patient', 'Practitioner', 'Observation', 'Consent', 'Group']),
    );
    const patient = rest?.resource?.find((r) => r.type === 'Patient');
    expect(patient?.interaction?.map((i) => i.code)).toEqual(
      expect.arrayContaining(['read', 'vread', 'history-instance', 'search-type']),
    );
    expect(patient?.searchParam?.map((p) => p.name)).toEqual(
      expect.arrayContaining(['_id', '_lastUpdated', '_count', '_sort']),
    );
    expect(patient?.operation?.map((o) => o.name)).toContain('export');
    expect(rest?.resource?.find((r) => r.type === 'Group')?.operation?.map((o) => o.name)).toContain(
      'export',
    );
    expect(rest?.operation?.map((o) => o.name)).toContain('export');
  });

  it('serves the SMART configuration', async () => {
    const response = await fetch(`${sandbox.url}/.well-known/smart-configuration`);
    expect(response.status).toBe(200);
    const config = (await response.json()) as Record<string, unknown>;
    expect(config.token_endpoint).toBe(sandbox.tokenUrl);
    expect(config.grant_types_supported).toEqual(['client_credentials']);
    expect(config.token_endpoint_auth_methods_supported).toEqual(['private_key_jwt']);
    expect(config.token_endpoint_auth_signing_alg_values_supported).toEqual(['RS384', 'ES384']);
    expect(config.capabilities).toEqual(
      expect.arrayContaining(['client-confidential-asymmetric', 'permission-v1', 'permission-v2']),
    );
    expect(config.scopes_supported).toEqual(expect.arrayContaining(['system/*.read', 'system/*.rs']));
  });
});

describe('read and vread', () => {
  it('reads with ETag, Last-Modified and the FHIR content type', async () => {
    const id = await firstId('Patient');
    const response = await fhirFetch(sandbox, `Patient/${id}`, readToken);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/fhir+json; charset=utf-8');
    const patient = (await response.json()) as Patient;
    expect(patient.id).toBe(id);
    expect(response.headers.get('etag')).toBe(`W/"${patient.meta?.versionId}"`);
    const lastModified = response.headers.get('last-modified') as string;
    expect(new Date(lastModified).getTime()).toBe(
      Math.floor(Date.parse(patient.meta?.lastUpdated ?? '') / 1000) * 1000,
    );
    // Synthea ids are kept as they were in the bundles.
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('answers 404 with an OperationOutcome for unknown ids, versions and types', async () => {
    const id = await firstId('Patient');
    for (const path of [
      'Patient/does-not-exist',
      `Patient/${id}/_history/999`,
      'NotAType/1',
      'NotAType?x=1',
    ]) {
      const response = await fhirFetch(sandbox, path, readToken);
      expect(response.status, path).toBe(404);
      expect(((await response.json()) as OperationOutcome).resourceType).toBe('OperationOutcome');
    }
  });
});

describe('update, If-Match and history', () => {
  it('creates with 201, Location and ETag', async () => {
    const response = await fhirFetch(sandbox, 'Patient', writeToken, {
      method: 'POST',
      body: JSON.stringify({ resourceType: 'Patient', id: 'client-chosen', gender: 'unknown' }),
    });
    expect(response.status).toBe(201);
    const created = (await response.json()) as Patient;
    expect(created.id).not.toBe('client-chosen');
    expect(created.meta?.versionId).toBe('1');
    expect(response.headers.get('etag')).toBe('W/"1"');
    expect(response.headers.get('location')).toBe(`${sandbox.url}/Patient/${created.id}/_history/1`);
  });

  it('honours If-Match: 200 with a new ETag on a match, 412 on a stale version', async () => {
    const id = await firstId('Practitioner');
    const current = await fhirGetJson<{ meta: { versionId: string } }>(
      sandbox,
      `Practitioner/${id}`,
      readToken,
    );
    const v = Number(current.meta.versionId);
    const body = JSON.stringify({ ...current, active: false });

    const ok = await fhirFetch(sandbox, `Practitioner/${id}`, writeToken, {
      method: 'PUT',
      body,
      headers: { 'if-match': `W/"${v}"` },
    });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('etag')).toBe(`W/"${v + 1}"`);

    const stale = await fhirFetch(sandbox, `Practitioner/${id}`, writeToken, {
      method: 'PUT',
      body,
      headers: { 'if-match': `W/"${v}"` },
    });
    expect(stale.status).toBe(412);
    expect(((await stale.json()) as OperationOutcome).resourceType).toBe('OperationOutcome');

    const bare = await fhirFetch(sandbox, `Practitioner/${id}`, writeToken, {
      method: 'PUT',
      body,
      headers: { 'if-match': String(v + 1) },
    });
    expect(bare.status).toBe(200);
    expect(bare.headers.get('etag')).toBe(`W/"${v + 2}"`);

    const old = await fhirGetJson<{ active?: boolean; meta: { versionId: string } }>(
      sandbox,
      `Practitioner/${id}/_history/${v}`,
      readToken,
    );
    expect(old.meta.versionId).toBe(String(v));
    expect(old.active).not.toBe(false);
  });

  it('keeps a tombstone on delete: 410 on read, the deletion in history, out of search', async () => {
    const id = await firstId('Observation');
    const before = sandbox.stats();
    const put = await fhirFetch(sandbox, `Observation/${id}`, writeToken, {
      method: 'PUT',
      body: JSON.stringify({ ...(await sandbox.repo.readResource('Observation', id)), status: 'amended' }),
    });
    expect(put.status).toBe(200);

    const del = await fhirFetch(sandbox, `Observation/${id}`, writeToken, { method: 'DELETE' });
    expect(del.status).toBe(200);

    const read = await fhirFetch(sandbox, `Observation/${id}`, readToken);
    expect(read.status).toBe(410);
    const outcome = (await read.json()) as OperationOutcome;
    expect(outcome.issue[0]?.code).toBe('deleted');

    const history = await fhirGetJson<Bundle<Observation>>(sandbox, `Observation/${id}/_history`, readToken);
    expect(history.type).toBe('history');
    expect(history.total).toBe(3);
    const [deletion, updated, original] = history.entry ?? [];
    expect(deletion?.request).toEqual({ method: 'DELETE', url: `Observation/${id}` });
    expect(deletion?.response?.status).toBe('410 Gone');
    expect(deletion?.resource).toBeUndefined();
    expect(updated?.resource?.status).toBe('amended');
    expect(updated?.resource?.meta?.versionId).toBe('2');
    expect(original?.resource?.meta?.versionId).toBe('1');
    expect(original?.response?.status).toBe('201 Created');

    // Earlier versions stay readable; the deletion version is gone.
    expect((await fhirFetch(sandbox, `Observation/${id}/_history/1`, readToken)).status).toBe(200);
    expect((await fhirFetch(sandbox, `Observation/${id}/_history/3`, readToken)).status).toBe(410);

    const search = await fhirGetJson<Bundle>(sandbox, `Observation?_id=${id}`, readToken);
    expect(search.total).toBe(0);

    const after = sandbox.stats();
    expect(after.deleted).toBe(before.deleted + 1);
    expect(after.byType.Observation).toBe((before.byType.Observation ?? 0) - 1);
    expect(sandbox.repo.tombstone('Observation', id)).toMatchObject({ lastVersionId: '2', versionId: '3' });

    // Deleting again is a 410; recreating continues the version sequence.
    expect((await fhirFetch(sandbox, `Observation/${id}`, writeToken, { method: 'DELETE' })).status).toBe(
      410,
    );
    const revived = await fhirFetch(sandbox, `Observation/${id}`, writeToken, {
      method: 'PUT',
      body: JSON.stringify({ ...original?.resource, meta: undefined }),
    });
    expect(revived.status).toBe(200);
    expect(revived.headers.get('etag')).toBe('W/"4"');
    expect(sandbox.stats().deleted).toBe(before.deleted);
  });

  it('rejects a body that is not JSON without echoing it', async () => {
    const id = await firstId('Patient');
    const response = await fhirFetch(sandbox, `Patient/${id}`, writeToken, {
      method: 'PUT',
      body: '{"resourceType":"Patient","name":[{"family":"Smithereens"',
    });
    expect(response.status).toBe(400);
    const text = await response.text();
    expect(text).toContain('OperationOutcome');
    expect(text).not.toContain('Smithereens');
  });
});

describe('search paging', () => {
  it('follows next links over _lastUpdated until exhausted, collecting every resource once', async () => {
    const expected = sandbox.stats().byType.Observation ?? 0;
    expect(expected).toBeGreaterThan(500);
    let url: string | undefined = `Observation?_lastUpdated=ge${seededAt}&_sort=_lastUpdated&_count=250`;
    const seen = new Map<string, number>();
    let pages = 0;
    let previous = '';
    while (url) {
      const bundle: Bundle<Observation> = await fhirGetJson(sandbox, url, readToken);
      pages++;
      expect(bundle.type).toBe('searchset');
      expect(bundle.total).toBe(expected);
      expect(links(bundle).self).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/fhir\/Observation\?/);
      for (const entry of bundle.entry ?? []) {
        const id = entry.resource?.id as string;
        seen.set(id, (seen.get(id) ?? 0) + 1);
        expect(entry.fullUrl).toBe(`${sandbox.url}/Observation/${id}`);
        const lastUpdated = entry.resource?.meta?.lastUpdated ?? '';
        expect(lastUpdated >= previous).toBe(true);
        previous = lastUpdated;
      }
      url = links(bundle).next;
      if (url) expect(url.startsWith(`${sandbox.url}/Observation?`)).toBe(true);
    }
    expect(pages).toBe(Math.ceil(expected / 250));
    expect(seen.size).toBe(expected);
    expect([...seen.values()].every((n) => n === 1)).toBe(true);
  });

  it('filters on _lastUpdated with gt/ge/lt/le', async () => {
    await sleep(5);
    const mark = new Date().toISOString();
    await sleep(5);
    const id = await firstId('Condition');
    const condition = await sandbox.repo.readResource('Condition', id);
    await sandbox.repo.updateResource({ ...condition, clinicalStatus: { text: 'changed' } });

    const after = await fhirGetJson<Bundle>(sandbox, `Condition?_lastUpdated=gt${mark}`, readToken);
    expect(after.entry?.map((e) => e.resource?.id)).toEqual([id]);
    const geAfter = await fhirGetJson<Bundle>(sandbox, `Condition?_lastUpdated=ge${mark}`, readToken);
    expect(geAfter.total).toBe(1);
    const before = await fhirGetJson<Bundle>(sandbox, `Condition?_lastUpdated=lt${mark}`, readToken);
    expect(before.total).toBe((sandbox.stats().byType.Condition ?? 0) - 1);
    const le = await fhirGetJson<Bundle>(sandbox, `Condition?_lastUpdated=le${mark}&_count=0`, readToken);
    expect(le.total).toBe(before.total);
    expect(le.entry).toBeUndefined();
    const summary = await fhirGetJson<Bundle>(
      sandbox,
      `Condition?_lastUpdated=le${mark}&_summary=count`,
      readToken,
    );
    expect(summary.total).toBe(before.total);
    expect(summary.entry).toBeUndefined();
  });

  it('sorts descending with _sort=-_lastUpdated', async () => {
    const bundle = await fhirGetJson<Bundle>(sandbox, 'Encounter?_sort=-_lastUpdated&_count=50', readToken);
    const stamps = (bundle.entry ?? []).map((e) => e.resource?.meta?.lastUpdated ?? '');
    expect(stamps).toEqual([...stamps].sort().reverse());
  });

  it('pages 100 by default and at most 1000', async () => {
    const byDefault = await fhirGetJson<Bundle>(sandbox, 'Observation', readToken);
    expect(byDefault.entry).toHaveLength(100);
    expect(links(byDefault).next).toContain('_offset=100');
    const capped = await fhirGetJson<Bundle>(sandbox, 'Observation?_count=5000', readToken);
    expect(capped.entry?.length).toBe(Math.min(1000, capped.total ?? 0));
    expect(links(capped).self).toContain('_count=1000');
    const last = await fhirGetJson<Bundle>(sandbox, `Observation?_offset=${capped.total}`, readToken);
    expect(last.entry).toBeUndefined();
    expect(links(last).next).toBeUndefined();
  });

  it('rejects bad paging values and unknown search parameters with 400', async () => {
    for (const query of [
      'Patient?_count=abc',
      'Patient?_count=-1',
      'Patient?_offset=x',
      'Patient?nonsense=1',
    ]) {
      const response = await fhirFetch(sandbox, query, readToken);
      expect(response.status, query).toBe(400);
      expect(((await response.json()) as OperationOutcome).resourceType).toBe('OperationOutcome');
    }
    expect((await fhirFetch(sandbox, 'Patient?_lastUpdated=gtnot-a-date', readToken)).status).toBe(400);
    expect((await fhirFetch(sandbox, '?_type=Patient', readToken)).status).toBe(400);
  });

  it('searches by reference and identifier as a FHIR client would', async () => {
    const patientId = await firstId('Patient');
    const observations = await fhirGetJson<Bundle<Observation>>(
      sandbox,
      `Observation?subject=Patient/${patientId}&_count=1000`,
      readToken,
    );
    expect(observations.total).toBeGreaterThan(0);
    for (const entry of observations.entry ?? []) {
      expect(entry.resource?.subject?.reference).toBe(`Patient/${patientId}`);
    }
    const patient = await sandbox.repo.readResource<Patient>('Patient', patientId);
    const mrn = patient.identifier?.find((i) => i.type?.coding?.[0]?.code === 'MR');
    const byMrn = await fhirGetJson<Bundle>(
      sandbox,
      `Patient?identifier=${encodeURIComponent(`${mrn?.system}|${mrn?.value}`)}`,
      readToken,
    );
    expect(byMrn.entry?.map((e) => e.resource?.id)).toEqual([patientId]);
  });
});
