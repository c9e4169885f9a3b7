import { randomUUID } from 'node:crypto';
import type { Bundle, Observation, OperationOutcome, Patient } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EhrSandbox, startEhrSandbox } from './index.ts';
import { fhirFetch, fhirGetJson, getToken } from './testing.ts';

let sandbox: EhrSandbox;
let token: string;
let control: string;

beforeAll(async () => {
  sandbox = await startEhrSandbox();
  token = await getToken(sandbox);
  control = `${new URL(sandbox.url).origin}/__sandbox`;
});

afterAll(async () => {
  await sandbox?.close();
});

const json = (body: unknown, method = 'POST'): RequestInit => ({
  method,
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify(body),
});

describe('sandbox controls', () => {
  it('starts empty without seed', async () => {
    expect(await (await fetch(`${control}/stats`)).json()).toEqual({ resources: 0, byType: {}, deleted: 0 });
  });

  it('PUT creates, then every PUT makes a new version', async () => {
    const first = await fetch(
      `${control}/resources/Patient/ctl-1`,
      json({ resourceType: 'Patient', gender: 'female' }, 'PUT'),
    );
    expect(first.status).toBe(201);
    expect(first.headers.get('etag')).toBe('W/"1"');
    const second = await fetch(`${control}/resources/Patient/ctl-1`, json({ gender: 'female' }, 'PUT'));
    expect(second.status).toBe(200);
    expect(((await second.json()) as Patient).meta?.versionId).toBe('2');

    const read = await fhirGetJson<Patient>(sandbox, 'Patient/ctl-1', token);
    expect(read).toMatchObject({ id: 'ctl-1', gender: 'female', meta: { versionId: '2' } });

    expect(
      (await fetch(`${control}/resources/Patient/ctl-1`, json({ resourceType: 'Observation' }, 'PUT')))
        .status,
    ).toBe(400);
    expect((await fetch(`${control}/resources/Patient/ctl-1`, json({ id: 'other' }, 'PUT'))).status).toBe(
      400,
    );
    expect((await fetch(`${control}/resources/Nope/1`, json({}, 'PUT'))).status).toBe(404);
  });

  it('POST adds a Bundle, resolving urn:uuid references', async () => {
    const patientUrn = `urn:uuid:${randomUUID()}`;
    const response = await fetch(
      `${control}/resources`,
      json({
        resourceType: 'Bundle',
        type: 'transaction',
        entry: [
          {
            fullUrl: patientUrn,
            resource: { resourceType: 'Patient', gender: 'male' },
            request: { method: 'POST', url: 'Patient' },
          },
          {
            fullUrl: `urn:uuid:${randomUUID()}`,
            resource: {
              resourceType: 'Observation',
              status: 'final',
              code: { text: 'x' },
              subject: { reference: patientUrn },
            },
            request: { method: 'POST', url: 'Observation' },
          },
        ],
      }),
    );
    expect(response.status).toBe(200);
    const body = (await response.json()) as {
      created: number;
      resources: { resourceType: string; id: string; versionId: string }[];
    };
    expect(body.created).toBe(2);
    const patientId = patientUrn.slice('urn:uuid:'.length);
    expect(body.resources[0]).toEqual({ resourceType: 'Patient', id: patientId, versionId: '1' });
    const observations = await fhirGetJson<Bundle<Observation>>(
      sandbox,
      `Observation?subject=Patient/${patientId}`,
      token,
    );
    expect(observations.total).toBe(1);

    // The same content again changes nothing.
    const again = (await (
      await fetch(`${control}/resources`, json({ resourceType: 'Patient', id: patientId, gender: 'male' }))
    ).json()) as { unchanged: number };
    expect(again.unchanged).toBe(1);
  });

  it('POST refuses invalid entries with an OperationOutcome naming each', async () => {
    const response = await fetch(
      `${control}/resources`,
      json({
        resourceType: 'Bundle',
        type: 'collection',
        entry: [{ resource: { resourceType: 'Patient' } }, { resource: { resourceType: 'Bogus' } }, {}],
      }),
    );
    expect(response.status).toBe(400);
    const outcome = (await response.json()) as OperationOutcome;
    expect(outcome.issue.map((i) => i.expression?.[0])).toEqual([
      'Bundle.entry[1].resource',
      'Bundle.entry[2].resource',
    ]);
    expect((await fetch(`${control}/resources`, json([1, 2]))).status).toBe(400);
  });

  it('DELETE leaves a tombstone; deleting again is 410, unknown is 404', async () => {
    await fetch(`${control}/resources/Patient/ctl-del`, json({ resourceType: 'Patient' }, 'PUT'));
    const before = (await (await fetch(`${control}/stats`)).json()) as { deleted: number };
    const deleted = await fetch(`${control}/resources/Patient/ctl-del`, { method: 'DELETE' });
    expect(deleted.status).toBe(200);
    const body = (await deleted.json()) as {
      deleted: {
        resourceType: string;
        id: string;
        versionId: string;
        lastVersionId: string;
        deletedAt: string;
      };
    };
    expect(body.deleted).toMatchObject({
      resourceType: 'Patient',
      id: 'ctl-del',
      versionId: '2',
      lastVersionId: '1',
    });
    expect(Date.parse(body.deleted.deletedAt)).not.toBeNaN();
    expect((await fhirFetch(sandbox, 'Patient/ctl-del', token)).status).toBe(410);
    expect((await fetch(`${control}/resources/Patient/ctl-del`, { method: 'DELETE' })).status).toBe(410);
    expect((await fetch(`${control}/resources/Patient/never-was`, { method: 'DELETE' })).status).toBe(404);
    const after = (await (await fetch(`${control}/stats`)).json()) as { deleted: number };
    expect(after.deleted).toBe(before.deleted + 1);
  });

  it('reports its URLs without a trailing slash, and refuses a port in use', async () => {
    expect(sandbox.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/fhir$/);
    expect(sandbox.tokenUrl).toBe(sandbox.url.replace(/\/fhir$/, '/auth/token'));
    const port = Number(new URL(sandbox.url).port);
    await expect(startEhrSandbox({ port })).rejects.toMatchObject({ code: 'SANDBOX_LISTEN_FAILED' });
  });

  it('answers unknown routes with an OperationOutcome', async () => {
    const response = await fetch(`${new URL(sandbox.url).origin}/nowhere`);
    expect(response.status).toBe(404);
    expect(((await response.json()) as OperationOutcome).resourceType).toBe('OperationOutcome');
  });
});
