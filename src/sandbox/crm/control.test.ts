import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type CrmSandbox, RECORD_TYPES, type SObjectRecord, startCrmSandbox } from './index.ts';
import { apiPath, crmFetch, crmLogin, crmToken, seedRecords, upsert } from './testing.ts';

let sandbox: CrmSandbox;
let token: string;

beforeAll(async () => {
  sandbox = await startCrmSandbox();
  token = await crmToken(sandbox);
});

afterEach(async () => {
  sandbox.faults.clear();
  await crmFetch(sandbox, undefined, 'DELETE', '/__sandbox/records');
});

afterAll(async () => {
  await sandbox?.close();
});

describe('/__sandbox/records', () => {
  it('lists the records of one object, or of every object with attributes.type', async () => {
    await upsert(sandbox, token, 'Account', 'External_ID_vod__c', 'CTL-1', { Name: 'Org' });
    await upsert(sandbox, token, 'Patient_Profile__c', 'External_ID__c', 'pp', { Birth_Year__c: 1961 });

    const accounts = await crmFetch<{ records: SObjectRecord[] }>(
      sandbox,
      undefined,
      'GET',
      '/__sandbox/records?object=Account',
    );
    expect(accounts.status).toBe(200);
    expect(accounts.body.records.map((r) => [r.attributes.type, r.Name])).toEqual([['Account', 'Org']]);
    expect(accounts.body.records).toEqual(sandbox.records('Account'));

    const all = await crmFetch<{ records: SObjectRecord[] }>(sandbox, undefined, 'GET', '/__sandbox/records');
    expect(all.body.records.map((r) => r.attributes.type)).toEqual(['Account', 'Patient_Profile__c']);
    expect(all.body.records[1]).toMatchObject({
      Birth_Year__c: 1961,
      Name: expect.stringMatching(/^PP-\d{6}$/),
    });
    expect(sandbox.records()).toEqual(all.body.records);

    expect((await crmFetch(sandbox, undefined, 'GET', '/__sandbox/records?object=Nope')).status).toBe(404);
    expect(() => sandbox.records('Nope')).toThrow(/no object named Nope/);
  });

  it('stores raw records bypassing unique checks, with explicit system dates, all or nothing', async () => {
    const ids = await seedRecords(sandbox, 'Account', [
      { Name: 'Dup', External_ID_vod__c: 'SAME', CreatedDate: '2020-01-01T00:00:00Z' },
      { Name: 'Dup', External_ID_vod__c: 'SAME', SystemModstamp: '2021-06-01T12:00:00.000+0000' },
    ]);
    expect(ids).toHaveLength(2);
    const [a, b] = sandbox.records('Account');
    expect(a?.CreatedDate).toBe('2020-01-01T00:00:00.000+0000');
    expect(a?.SystemModstamp).toBe('2020-01-01T00:00:00.000+0000');
    expect(b?.SystemModstamp).toBe('2021-06-01T12:00:00.000+0000');

    // The duplicates now make an upsert by that key ambiguous.
    expect(
      (await upsert(sandbox, token, 'Account', 'External_ID_vod__c', 'same', { Phone: '1' })).status,
    ).toBe(300);

    const bad = await crmFetch<{ failures: { index: number }[] }>(
      sandbox,
      undefined,
      'POST',
      '/__sandbox/records',
      {
        records: [
          { attributes: { type: 'Account' }, Name: 'Fine' },
          { attributes: { type: 'Account' }, Bogus__c: 1 },
        ],
      },
    );
    expect(bad.status).toBe(400);
    expect(bad.body.failures.map((f) => f.index)).toEqual([1]);
    expect(sandbox.records('Account')).toHaveLength(2);
  });

  it('computes IsPersonAccount for raw person accounts and keeps deleted records out of the listing', async () => {
    const [id] = await seedRecords(sandbox, 'Account', [{ RecordTypeId: RECORD_TYPES.hcp, LastName: 'Raw' }]);
    expect(sandbox.records('Account')[0]?.IsPersonAccount).toBe(true);
    await crmFetch(sandbox, token, 'DELETE', apiPath(`/sobjects/Account/${id}`));
    expect(sandbox.records('Account')).toEqual([]);
    const withDeleted = await crmFetch<{ records: SObjectRecord[] }>(
      sandbox,
      undefined,
      'GET',
      '/__sandbox/records?object=Account&includeDeleted=true',
    );
    expect(withDeleted.body.records.map((r) => r.IsDeleted)).toEqual([true]);
  });

  it('resets one object or everything', async () => {
    await upsert(sandbox, token, 'Account', 'External_ID_vod__c', 'R-1', { Name: 'Org' });
    await upsert(sandbox, token, 'Patient_Profile__c', 'External_ID__c', 'pp', {});
    await crmFetch(sandbox, undefined, 'DELETE', '/__sandbox/records?object=Patient_Profile__c');
    expect(sandbox.records().map((r) => r.attributes.type)).toEqual(['Account']);
    await crmFetch(sandbox, undefined, 'DELETE', '/__sandbox/records');
    expect(sandbox.records()).toEqual([]);
    // An upsert after a reset creates again.
    expect(
      (await upsert(sandbox, token, 'Account', 'External_ID_vod__c', 'R-1', { Name: 'Org' })).status,
    ).toBe(201);
  });
});

describe('injected faults', () => {
  it.each([
    [429, '2'],
    [503, 'Wed, 21 Oct 2026 07:28:00 GMT'],
    [429, 'soon'],
  ])('answers %i with Retry-After %s verbatim on API routes, then recovers', async (status, retryAfter) => {
    sandbox.faults.add({
      fault: { kind: 'rate-limit', status, retryAfter },
      path: '/services/data',
      times: 1,
    });
    const limited = await upsert(sandbox, token, 'Account', 'External_ID_vod__c', 'F-1', { Name: 'Org' });
    expect(limited.status).toBe(status);
    expect(limited.headers.get('retry-after')).toBe(retryAfter);
    expect(Array.isArray(limited.body)).toBe(true);
    expect(sandbox.records()).toEqual([]);
    expect(
      (await upsert(sandbox, token, 'Account', 'External_ID_vod__c', 'F-1', { Name: 'Org' })).status,
    ).toBe(201);
    const log = sandbox.requests.entries({ pathPrefix: '/services/data' }).slice(-2);
    expect(log.map((e) => [e.status, e.fault])).toEqual([
      [status, 'rate-limit'],
      [201, undefined],
    ]);
  });

  it('faults the token endpoint too, and a 403 REQUEST_LIMIT_EXCEEDED fault has the Salesforce body', async () => {
    sandbox.faults.add({ fault: { kind: 'status', status: 503 }, path: '/services/oauth2/token', times: 1 });
    expect((await crmLogin(sandbox)).status).toBe(503);
    expect((await crmLogin(sandbox)).status).toBe(200);

    sandbox.faults.add({ fault: { kind: 'rate-limit', status: 403 }, method: 'GET', times: 1 });
    const refused = await crmFetch(sandbox, token, 'GET', apiPath('/limits'));
    expect(refused.status).toBe(403);
    expect(refused.body).toEqual([
      { message: 'Rate limit (injected)', errorCode: 'REQUEST_LIMIT_EXCEEDED', fields: [] },
    ]);
  });

  it('drops the connection without writing', async () => {
    sandbox.faults.add({ fault: { kind: 'drop' }, method: 'PATCH', times: 1 });
    await expect(
      upsert(sandbox, token, 'Account', 'External_ID_vod__c', 'D-1', { Name: 'Org' }),
    ).rejects.toThrow();
    expect(sandbox.records()).toEqual([]);
  });
});

describe('persistence', () => {
  it('keeps records, keys and id sequences when a file-backed sandbox is closed and reopened', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-crm-'));
    const dbPath = join(dir, 'crm.db');
    try {
      const first = await startCrmSandbox({ dbPath });
      const t1 = await crmToken(first);
      const created = await upsert(first, t1, 'Account', 'External_ID_vod__c', 'KEEP-1', {
        Name: 'Kept Org',
      });
      const keptId = (created.body as { id: string }).id;
      await upsert(first, t1, 'Patient_Profile__c', 'External_ID__c', 'pp-keep', { Gender__c: 'Unknown' });
      await first.close();

      const second = await startCrmSandbox({ dbPath });
      try {
        expect(second.records('Account').map((r) => [r.Id, r.Name])).toEqual([[keptId, 'Kept Org']]);
        const t2 = await crmToken(second);
        // The old session is gone with the old process, the key index is not: this upsert updates.
        expect(
          (await upsert(second, t1, 'Account', 'External_ID_vod__c', 'KEEP-1', { Phone: '1' })).status,
        ).toBe(401);
        expect(
          (await upsert(second, t2, 'Account', 'External_ID_vod__c', 'keep-1', { Phone: '1' })).status,
        ).toBe(204);
        const next = await upsert(second, t2, 'Account', 'External_ID_vod__c', 'KEEP-2', { Name: 'New Org' });
        expect((next.body as { id: string }).id).not.toBe(keptId);
        expect(second.records('Patient_Profile__c')[0]?.Name).toBe('PP-000001');
        await upsert(second, t2, 'Patient_Profile__c', 'External_ID__c', 'pp-2', {});
        expect(second.records('Patient_Profile__c')[1]?.Name).toBe('PP-000002');
      } finally {
        await second.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
