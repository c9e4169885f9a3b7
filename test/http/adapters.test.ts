import type { Practitioner } from '@medplum/fhirtypes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FhirClient, serverTimeOf } from '../../src/adapters/epic-fhir/fhir-client.ts';
import { FhirSearchSource } from '../../src/adapters/epic-fhir/fhir-source.ts';
import { BackendServicesAuth } from '../../src/adapters/epic-fhir/smart-auth.ts';
import { createRetryPolicy } from '../../src/adapters/http/retry-policy.ts';
import { CrmAuth } from '../../src/adapters/veeva-crm/crm-auth.ts';
import { VeevaTarget } from '../../src/adapters/veeva-crm/veeva-target.ts';
import { SluiceError } from '../../src/core/errors/index.ts';
import { sourceExternalId } from '../../src/core/mapping/canonical-to-veeva.ts';
import type { SystemName } from '../../src/core/model/ids.ts';
import type { SourcePage } from '../../src/core/ports/source.ts';
import {
  type CrmSandbox,
  DEMO_CRM_CLIENT,
  RECORD_TYPES,
  startCrmSandbox,
} from '../../src/sandbox/crm/index.ts';
import { DEMO_CLIENT_ID, type EhrSandbox, startEhrSandbox } from '../../src/sandbox/ehr/index.ts';
import { demoPrivateKey, generateClient, SAMPLE_DIRECTORY_DIR } from '../../src/sandbox/ehr/testing.ts';

const signal = new AbortController().signal;

async function collect(pages: AsyncIterable<SourcePage>): Promise<SourcePage[]> {
  const out: SourcePage[] = [];
  for await (const page of pages) out.push(page);
  return out;
}

describe('EHR source over HTTP', () => {
  let ehr: EhrSandbox;
  let reader: Awaited<ReturnType<typeof generateClient>>;
  let narrow: Awaited<ReturnType<typeof generateClient>>;
  beforeAll(async () => {
    reader = await generateClient('reader', 'system/*.rs');
    narrow = await generateClient('patients-only', 'system/Patient.rs');
    ehr = await startEhrSandbox({ seed: [SAMPLE_DIRECTORY_DIR], clients: [reader.client, narrow.client] });
  }, 60_000);
  afterAll(async () => {
    await ehr?.close();
  });

  const source = (clientId: string, privateKey: Parameters<typeof toAuth>[2], scope: string, pageSize = 50) =>
    new FhirSearchSource({
      system: 'epic' as SystemName,
      client: new FhirClient({
        baseUrl: ehr.url,
        auth: toAuth(clientId, ehr.url, privateKey, scope),
        retry: createRetryPolicy({ initialDelayMs: 10 }),
      }),
      resourceTypes: ['Practitioner'],
      pageSize,
    });

  it('pages through a _lastUpdated search in ascending order, every resource once', async () => {
    const pages = await collect(
      source('reader', reader.privateKey, 'system/Practitioner.rs').read('Practitioner', undefined, signal),
    );
    const resources = pages.flatMap((p) => p.records.map((r) => r.resource as Practitioner));
    expect(pages.length).toBeGreaterThan(2);
    expect(resources.length).toBe(ehr.repo.recordCount('Practitioner'));
    expect(new Set(resources.map((r) => r.id)).size).toBe(resources.length);
    const stamps = resources.map((r) => r.meta?.lastUpdated ?? '');
    expect([...stamps].sort()).toEqual(stamps);

    // Change three resources later on: a search from the last checkpoint returns them (and the boundary).
    const since = stamps.at(-1) as string;
    await new Promise((resolve) => setTimeout(resolve, 5));
    for (const r of resources.slice(0, 3)) await ehr.repo.updateResource({ ...r, active: !r.active });
    const changed = (
      await collect(
        source('reader', reader.privateKey, 'system/Practitioner.rs').read('Practitioner', since, signal),
      )
    ).flatMap((p) => p.records.map((r) => (r.resource as Practitioner).id));
    expect(changed).toEqual(expect.arrayContaining(resources.slice(0, 3).map((r) => r.id)));
    // `ge` repeats the resources stamped exactly at the checkpoint (the ledger skips them); nothing older.
    const changedIds = new Set(resources.slice(0, 3).map((r) => r.id));
    const atBoundary = resources.filter((r) => r.meta?.lastUpdated === since && !changedIds.has(r.id)).length;
    expect(changed.length).toBe(atBoundary + 3);
  });

  it('checkpoints a complete search on the time the server answered its first page, on the last page only', async () => {
    const before = Date.now();
    const pages = await collect(
      source('reader', reader.privateKey, 'system/Practitioner.rs').read('Practitioner', undefined, signal),
    );
    expect(pages.length).toBeGreaterThan(2);
    expect(pages.slice(0, -1).every((p) => p.checkpoint === undefined)).toBe(true);
    const at = Date.parse(pages.at(-1)?.checkpoint as string);
    // The sandbox gives the HTTP Date header (whole seconds) and no searchset meta.lastUpdated.
    expect(at).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
    expect(at).toBeLessThanOrEqual(Date.now());
    expect(at % 1000).toBe(0);
    const off = new FhirSearchSource({
      system: 'epic' as SystemName,
      client: new FhirClient({
        baseUrl: ehr.url,
        auth: toAuth('reader', ehr.url, reader.privateKey, 'system/Practitioner.rs'),
        retry: createRetryPolicy({ initialDelayMs: 10 }),
      }),
      resourceTypes: ['Practitioner'],
      pageSize: 50,
      serverTimeCheckpoints: false,
    });
    const plain = await collect(off.read('Practitioner', undefined, signal));
    expect(plain.every((p) => p.checkpoint === undefined)).toBe(true);
  });

  it('takes the earlier of the searchset meta.lastUpdated and the Date header; ignores what is not a time', () => {
    const date = 'Sun, 06 Dec 2026 06:30:00 GMT';
    expect(serverTimeOf({ lastUpdated: '2026-12-06T06:29:58.250Z' }, date)).toBe('2026-12-06T06:29:58.250Z');
    // A cached result set keeps its first time; a Date header earlier than meta wins too.
    expect(serverTimeOf({ lastUpdated: '2026-12-06T08:31:00+02:00' }, date)).toBe('2026-12-06T06:30:00.000Z');
    expect(serverTimeOf({ lastUpdated: '2026-12-06' }, date)).toBe('2026-12-06T06:30:00.000Z');
    expect(serverTimeOf({ lastUpdated: 'yesterday' }, 'not a date')).toBeUndefined();
    expect(serverTimeOf(undefined, null)).toBeUndefined();
    expect(serverTimeOf({ lastUpdated: '2026-12-06T06:29:58Z' }, null)).toBe('2026-12-06T06:29:58.000Z');
  });

  it('honours a 429 with Retry-After before trying again', async () => {
    ehr.faults.add({
      fault: { kind: 'rate-limit', retryAfter: '1' },
      method: 'GET',
      path: '/fhir/Practitioner',
      times: 1,
    });
    const pages = await collect(
      source('reader', reader.privateKey, 'system/Practitioner.rs', 1000).read(
        'Practitioner',
        undefined,
        signal,
      ),
    );
    expect(pages.flatMap((p) => p.records).length).toBe(ehr.repo.recordCount('Practitioner'));
    const searches = ehr.requests
      .entries()
      .filter((e) => e.path === '/fhir/Practitioner')
      .slice(-2);
    expect(searches.map((e) => e.status)).toEqual([429, 200]);
    expect((searches[1]?.at ?? 0) - (searches[0]?.at ?? 0)).toBeGreaterThanOrEqual(1000);
  });

  it('refuses a read outside a too-narrow backend-services scope', async () => {
    const narrowSource = source('patients-only', narrow.privateKey, 'system/Patient.rs');
    const error = await collect(narrowSource.read('Practitioner', undefined, signal)).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(SluiceError);
    expect((error as SluiceError).code).toBe('SRC_FORBIDDEN');
    // Asking the token endpoint for more than the client is allowed fails at login.
    const greedy = source('patients-only', narrow.privateKey, 'system/Practitioner.rs');
    const refused = await collect(greedy.read('Practitioner', undefined, signal)).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(SluiceError);
    expect(['SRC_AUTH_FAILED', 'SRC_FORBIDDEN']).toContain((refused as SluiceError).code);
  });

  it('the demo key authenticates with RS384', async () => {
    await ehr.close();
    ehr = await startEhrSandbox({ seed: [SAMPLE_DIRECTORY_DIR] });
    const pages = await collect(
      source(DEMO_CLIENT_ID, demoPrivateKey('RS384'), 'system/Practitioner.rs', 1000).read(
        'Practitioner',
        undefined,
        signal,
      ),
    );
    expect(pages[0]?.records.length).toBeGreaterThan(0);
  });
});

function toAuth(
  clientId: string,
  baseUrl: string,
  privateKey: ReturnType<typeof demoPrivateKey>,
  scope: string,
) {
  return new BackendServicesAuth({ baseUrl, clientId, privateKey, scope });
}

describe('CRM target over HTTP', () => {
  let crm: CrmSandbox;
  let target: VeevaTarget;
  beforeAll(async () => {
    crm = await startCrmSandbox();
    target = new VeevaTarget({
      system: 'veeva',
      auth: new CrmAuth({
        loginUrl: crm.url,
        clientId: DEMO_CRM_CLIENT.clientId,
        clientSecret: DEMO_CRM_CLIENT.clientSecret,
      }),
      apiVersion: 'v62.0',
      retry: createRetryPolicy({ initialDelayMs: 10 }),
    });
  });
  afterAll(async () => {
    await crm?.close();
  });

  it('repeats an upsert by external id without creating a duplicate', async () => {
    const externalId = sourceExternalId('epic', 'Organization', 'org-1');
    const write = {
      object: 'Account',
      externalIdField: 'External_ID_vod__c',
      externalId,
      fields: { RecordTypeId: RECORD_TYPES.hco, Name: 'General Hospital' },
      rank: 0,
    };
    const first = await target.upsert('Account', 'External_ID_vod__c', [write], signal);
    const second = await target.upsert(
      'Account',
      'External_ID_vod__c',
      [{ ...write, fields: { ...write.fields, Name: 'General Hospital East' } }],
      signal,
    );
    expect(first[0]?.status).toBe('created');
    expect(second[0]?.status).toBe('updated');
    const held = crm.records('Account').filter((r) => r.External_ID_vod__c === externalId);
    expect(held).toHaveLength(1);
    expect(held[0]?.Name).toBe('General Hospital East');
  });

  it('reports a rejected record per entry and writes the others', async () => {
    const ok = {
      object: 'Account',
      externalIdField: 'External_ID_vod__c',
      externalId: sourceExternalId('epic', 'Organization', 'org-2'),
      fields: { RecordTypeId: RECORD_TYPES.hco, Name: 'Clinic' },
      rank: 0,
    };
    // A business Account without a Name fails that entry only (REQUIRED_FIELD_MISSING).
    const bad = {
      ...ok,
      externalId: sourceExternalId('epic', 'Organization', 'org-3'),
      fields: { RecordTypeId: RECORD_TYPES.hco },
    };
    const results = await target.upsert('Account', 'External_ID_vod__c', [ok, bad], signal);
    expect(results[0]?.status).toBe('created');
    expect(results[1]).toMatchObject({ status: 'rejected', codes: ['REQUIRED_FIELD_MISSING'] });
    expect(crm.records('Account').some((r) => r.External_ID_vod__c === bad.externalId)).toBe(false);
  });

  it('retries after a 503 and reports the quota from Sforce-Limit-Info', async () => {
    crm.faults.add({ fault: { kind: 'status', status: 503 }, method: 'PATCH', times: 1 });
    const write = {
      object: 'Account',
      externalIdField: 'External_ID_vod__c',
      externalId: sourceExternalId('epic', 'Organization', 'org-4'),
      fields: { RecordTypeId: RECORD_TYPES.hco, Name: 'Clinic 4' },
      rank: 0,
    };
    const results = await target.upsert('Account', 'External_ID_vod__c', [write], signal);
    expect(results[0]?.status).toBe('created');
    const patches = crm.requests.entries().filter((e) => e.method === 'PATCH');
    expect(patches.slice(-2).map((e) => e.status)).toEqual([503, 200]);
  });
});
