import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type CrmSandbox, RECORD_TYPES, startCrmSandbox } from './index.ts';
import {
  apiPath,
  collectionsUpsert,
  crmFetch,
  crmToken,
  fakeClock,
  type QueryPage,
  soql,
  soqlAll,
  upsert,
} from './testing.ts';

const clock = fakeClock('2025-02-01T00:00:00.000Z');
let sandbox: CrmSandbox;
let token: string;

beforeAll(async () => {
  sandbox = await startCrmSandbox({ now: clock.now });
  token = await crmToken(sandbox);
});

beforeEach(async () => {
  await crmFetch(sandbox, undefined, 'DELETE', '/__sandbox/records');
});

afterAll(async () => {
  await sandbox?.close();
});

type SfErrors = { message: string; errorCode: string }[];

/** Upserts `count` consents one second apart, in batches of 200. */
async function loadConsents(count: number, prefix: string): Promise<void> {
  const account = await upsert(sandbox, token, 'Account', 'External_ID_vod__c', `${prefix}-ACC`, {
    RecordTypeId: RECORD_TYPES.hcp,
    LastName: 'Consenting',
  });
  expect([201, 204]).toContain(account.status);
  for (let start = 0; start < count; start += 200) {
    const batch = Array.from({ length: Math.min(200, count - start) }, (_, i) => ({
      External_ID_vod__c: `${prefix}-${String(start + i).padStart(4, '0')}`,
      Account_vod__r: { External_ID_vod__c: `${prefix}-ACC` },
      Opt_Type_vod__c: (start + i) % 2 === 0 ? 'Opt_In_vod' : 'Opt_Out_vod',
      Channel_Value_vod__c: `c${start + i}@example.org`,
      Capture_Datetime_vod__c: '2025-01-31T12:00:00Z',
    }));
    const response = await collectionsUpsert(
      sandbox,
      token,
      'Multichannel_Consent_vod__c',
      'External_ID_vod__c',
      batch,
    );
    expect(response.body.every((r) => r.success)).toBe(true);
    clock.advance(1000);
  }
}

describe('SOQL change queries', () => {
  it('pages a change query with batchSize and nextRecordsUrl, in order, without losing or repeating rows', async () => {
    await loadConsents(450, 'PG');
    const q =
      'SELECT Id, External_ID_vod__c, Opt_Type_vod__c, SystemModstamp, Account_vod__r.External_ID_vod__c FROM Multichannel_Consent_vod__c WHERE SystemModstamp >= 2025-01-01T00:00:00Z ORDER BY SystemModstamp, External_ID_vod__c';
    const first = await soql(sandbox, token, q, { batchSize: 200 });
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ totalSize: 450, done: false });
    expect(first.body.records).toHaveLength(200);
    expect(first.body.nextRecordsUrl).toMatch(/^\/services\/data\/v62\.0\/query\/01g\w{15}-200$/);
    expect(first.body.records[0]).toEqual({
      attributes: {
        type: 'Multichannel_Consent_vod__c',
        url: expect.stringMatching(/^\/services\/data\/v62\.0\/sobjects\//),
      },
      Id: expect.any(String),
      External_ID_vod__c: 'PG-0000',
      Opt_Type_vod__c: 'Opt_In_vod',
      SystemModstamp: '2025-02-01T00:00:00.000+0000',
      Account_vod__r: {
        attributes: { type: 'Account', url: expect.any(String) },
        External_ID_vod__c: 'PG-ACC',
      },
    });

    const second = await crmFetch<QueryPage>(sandbox, token, 'GET', first.body.nextRecordsUrl as string);
    expect(second.body).toMatchObject({ totalSize: 450, done: false });
    const third = await crmFetch<QueryPage>(sandbox, token, 'GET', second.body.nextRecordsUrl as string);
    expect(third.body.done).toBe(true);
    expect(third.body).not.toHaveProperty('nextRecordsUrl');
    expect(third.body.records).toHaveLength(50);

    const keys = [...first.body.records, ...second.body.records, ...third.body.records].map(
      (r) => r.External_ID_vod__c,
    );
    expect(keys).toEqual(Array.from({ length: 450 }, (_, i) => `PG-${String(i).padStart(4, '0')}`));

    // Without the header, pages are 2000 rows.
    expect((await soql(sandbox, token, q)).body.records).toHaveLength(450);
  });

  it('returns only what changed after a checkpoint', async () => {
    await loadConsents(3, 'CK');
    const checkpoint = clock.now().toISOString();
    clock.advance(5000);
    await upsert(sandbox, token, 'Multichannel_Consent_vod__c', 'External_ID_vod__c', 'CK-0001', {
      Opt_Type_vod__c: 'Opt_In_vod',
    });
    const changed = await soqlAll(
      sandbox,
      token,
      `SELECT External_ID_vod__c, Opt_Type_vod__c FROM Multichannel_Consent_vod__c WHERE SystemModstamp > ${checkpoint}`,
    );
    expect(changed.map((r) => [r.External_ID_vod__c, r.Opt_Type_vod__c])).toEqual([
      ['CK-0001', 'Opt_In_vod'],
    ]);
  });

  it('filters with IN, OR, null and relationship paths, and sorts descending with LIMIT', async () => {
    await collectionsUpsert(sandbox, token, 'Account', 'External_ID_vod__c', [
      { External_ID_vod__c: 'F-1', Name: 'Alpha', Phone: '1' },
      { External_ID_vod__c: 'F-2', Name: 'beta' },
      { External_ID_vod__c: 'F-3', Name: 'Gamma', Phone: '3' },
    ]);
    const names = async (q: string) => (await soqlAll(sandbox, token, q)).map((r) => r.Name);
    expect(
      await names("SELECT Name FROM Account WHERE External_ID_vod__c IN ('f-1', 'F-3') ORDER BY Name"),
    ).toEqual(['Alpha', 'Gamma']);
    expect(await names('SELECT Name FROM Account WHERE Phone = null')).toEqual(['beta']);
    expect(
      await names("SELECT Name FROM Account WHERE Name = 'BETA' OR Phone = '3' ORDER BY Name DESC"),
    ).toEqual(['Gamma', 'beta']);
    expect(await names('SELECT Name FROM Account ORDER BY Name DESC LIMIT 2')).toEqual(['Gamma', 'beta']);
    expect(await names("SELECT Name FROM Account WHERE Phone != '1' ORDER BY Phone NULLS LAST")).toEqual([
      'Gamma',
      'beta',
    ]);
  });

  it('includes deleted records only through queryAll', async () => {
    await upsert(sandbox, token, 'Account', 'External_ID_vod__c', 'DEL-1', { Name: 'Doomed' });
    await upsert(sandbox, token, 'Account', 'External_ID_vod__c', 'DEL-2', { Name: 'Kept' });
    expect(
      (await crmFetch(sandbox, token, 'DELETE', apiPath('/sobjects/Account/External_ID_vod__c/DEL-1')))
        .status,
    ).toBe(204);
    const q = 'SELECT Name, IsDeleted FROM Account ORDER BY Name';
    expect((await soqlAll(sandbox, token, q)).map((r) => r.Name)).toEqual(['Kept']);
    expect((await soqlAll(sandbox, token, q, { all: true })).map((r) => [r.Name, r.IsDeleted])).toEqual([
      ['Doomed', true],
      ['Kept', false],
    ]);
  });

  it.each([
    ['a malformed query', 'SELECT Id FROM Account WHERE', 'MALFORMED_QUERY', 'ERROR at Row:1:Column:29'],
    [
      'an unknown object',
      'SELECT Id FROM Nope__c',
      'INVALID_TYPE',
      "sObject type 'Nope__c' is not supported",
    ],
    [
      'an unknown field',
      'SELECT Id, Shoe__c FROM Account',
      'INVALID_FIELD',
      "No such column 'Shoe__c' on entity 'Account'",
    ],
    [
      'an unknown relationship',
      'SELECT Nope__r.Name FROM Address_vod__c',
      'INVALID_FIELD',
      "Didn't understand relationship",
    ],
    [
      'a quoted date-time',
      "SELECT Id FROM Account WHERE SystemModstamp > '2025-01-01T00:00:00Z'",
      'INVALID_FIELD',
      'must be of type dateTime and should not be enclosed in quotes',
    ],
    [
      'an unquoted string',
      'SELECT Id FROM Account WHERE Name = 5',
      'INVALID_FIELD',
      'must be of type string',
    ],
    [
      'a filter on long text',
      "SELECT Id FROM Account WHERE Sluice_Lineage__c = 'x'",
      'INVALID_FIELD',
      'can not be filtered',
    ],
    ['a duplicate field', 'SELECT Id, id FROM Account', 'MALFORMED_QUERY', 'duplicate field selected'],
    ['no query at all', '', 'MALFORMED_QUERY', 'A query string has to be specified'],
  ])('answers 400 for %s', async (_case, q, code, text) => {
    const response = await soql(sandbox, token, q);
    expect(response.status).toBe(400);
    const [error] = response.body as unknown as SfErrors;
    expect(error?.errorCode).toBe(code);
    expect(error?.message).toContain(text);
  });

  it('refuses an unknown query locator', async () => {
    const response = await crmFetch<SfErrors>(
      sandbox,
      token,
      'GET',
      apiPath('/query/01g8d0000000001AAA-2000'),
    );
    expect(response.status).toBe(400);
    expect(response.body[0]?.errorCode).toBe('INVALID_QUERY_LOCATOR');
  });

  it('expires cursors after 15 minutes without use', async () => {
    await loadConsents(250, 'EX');
    const first = await soql(sandbox, token, 'SELECT Id FROM Multichannel_Consent_vod__c', {
      batchSize: 200,
    });
    clock.advance(16 * 60_000);
    const stale = await crmFetch<SfErrors>(sandbox, token, 'GET', first.body.nextRecordsUrl as string);
    expect(stale.status).toBe(400);
  });
});
