import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type CrmSandbox, RECORD_TYPES, startCrmSandbox } from './index.ts';
import {
  apiPath,
  type CollectionResult,
  collectionsUpsert,
  crmFetch,
  crmToken,
  seedRecords,
  upsert,
} from './testing.ts';

let sandbox: CrmSandbox;
let token: string;

beforeAll(async () => {
  sandbox = await startCrmSandbox();
  token = await crmToken(sandbox);
});

beforeEach(async () => {
  await crmFetch(sandbox, undefined, 'DELETE', '/__sandbox/records');
});

afterAll(async () => {
  await sandbox?.close();
});

type SfErrors = { message: string; errorCode: string }[];

const hco = (id: string, extra: Record<string, unknown> = {}) => ({
  External_ID_vod__c: id,
  Name: `Org ${id}`,
  ...extra,
});

describe('sObject Collections upsert', () => {
  it('reports each record in order and writes the good ones when allOrNone is false', async () => {
    await upsert(sandbox, token, 'Account', 'External_ID_vod__c', 'K-2', { Name: 'Before' });
    const response = await collectionsUpsert(sandbox, token, 'Account', 'External_ID_vod__c', [
      hco('K-1'),
      hco('K-2', { Name: 'After' }),
      { External_ID_vod__c: 'K-3' },
      hco('K-4', { Approved_Email_Opt_Type_vod__c: 'Maybe' }),
      hco('K-5'),
      { Name: 'no key' },
    ]);
    expect(response.status).toBe(200);
    const results = response.body;
    expect(results.map((r) => [r.success, r.created ?? null])).toEqual([
      [true, true],
      [true, false],
      [false, false],
      [false, false],
      [true, true],
      [false, false],
    ]);
    expect(results[2]?.errors).toEqual([
      {
        statusCode: 'REQUIRED_FIELD_MISSING',
        message: 'Required fields are missing: [Name]',
        fields: ['Name'],
      },
    ]);
    expect(results[3]?.errors[0]?.statusCode).toBe('INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST');
    expect(results[5]?.errors[0]?.statusCode).toBe('MISSING_ARGUMENT');
    expect(results[2]).not.toHaveProperty('id');

    const stored = new Map(sandbox.records('Account').map((r) => [r.External_ID_vod__c, r]));
    expect([...stored.keys()].sort()).toEqual(['K-1', 'K-2', 'K-5']);
    expect(stored.get('K-2')?.Name).toBe('After');
    expect(stored.get('K-1')?.Id).toBe(results[0]?.id);
  });

  it('writes nothing when allOrNone is true and one record fails', async () => {
    await upsert(sandbox, token, 'Account', 'External_ID_vod__c', 'L-2', { Name: 'Before' });
    const before = sandbox.records('Account');
    const response = await collectionsUpsert(
      sandbox,
      token,
      'Account',
      'External_ID_vod__c',
      [hco('L-1'), hco('L-2', { Name: 'After' }), hco('L-3', { Name: 'x'.repeat(256) }), hco('L-4')],
      true,
    );
    expect(response.status).toBe(200);
    const codes = response.body.map((r) => [r.success, r.errors.map((e) => e.statusCode)]);
    expect(codes).toEqual([
      [false, ['ALL_OR_NONE_OPERATION_ROLLED_BACK']],
      [false, ['ALL_OR_NONE_OPERATION_ROLLED_BACK']],
      [false, ['STRING_TOO_LONG']],
      [false, ['ALL_OR_NONE_OPERATION_ROLLED_BACK']],
    ]);
    expect(sandbox.records('Account')).toEqual(before);
  });

  it('commits everything when allOrNone is true and every record is good', async () => {
    const response = await collectionsUpsert(
      sandbox,
      token,
      'Account',
      'External_ID_vod__c',
      [hco('G-1'), hco('G-2')],
      true,
    );
    expect(response.body.every((r) => r.success && r.created)).toBe(true);
    expect(sandbox.records('Account')).toHaveLength(2);
  });

  it('refuses more than 200 records with 400 EXCEEDED_ID_LIMIT and writes nothing', async () => {
    const records = Array.from({ length: 201 }, (_, i) => hco(`B-${i}`));
    const response = await crmFetch<SfErrors>(
      sandbox,
      token,
      'PATCH',
      apiPath('/composite/sobjects/Account/External_ID_vod__c'),
      {
        allOrNone: false,
        records: records.map((r) => ({ attributes: { type: 'Account' }, ...r })),
      },
    );
    expect(response.status).toBe(400);
    expect(response.body[0]?.errorCode).toBe('EXCEEDED_ID_LIMIT');
    expect(sandbox.records('Account')).toEqual([]);

    const exactly200 = await collectionsUpsert(
      sandbox,
      token,
      'Account',
      'External_ID_vod__c',
      records.slice(0, 200),
    );
    expect(exactly200.status).toBe(200);
    expect(sandbox.records('Account')).toHaveLength(200);
  });

  it('fails the whole request for a record without attributes.type, of another type, or with an unknown field', async () => {
    const path = apiPath('/composite/sobjects/Account/External_ID_vod__c');
    const missingType = await crmFetch<SfErrors>(sandbox, token, 'PATCH', path, {
      records: [{ attributes: { type: 'Account' }, ...hco('T-1') }, hco('T-2')],
    });
    expect(missingType.status).toBe(400);
    expect(missingType.body[0]?.errorCode).toBe('INVALID_TYPE');

    const otherType = await crmFetch<SfErrors>(sandbox, token, 'PATCH', path, {
      records: [{ attributes: { type: 'Address_vod__c' }, External_ID_vod__c: 'T-3', Name: 'x' }],
    });
    expect(otherType.status).toBe(400);

    const unknownField = await collectionsUpsert(sandbox, token, 'Account', 'External_ID_vod__c', [
      hco('T-4'),
      hco('T-5', { Favourite_Colour__c: 'blue' }),
    ]);
    expect(unknownField.status).toBe(400);
    expect((unknownField.body as unknown as SfErrors)[0]?.errorCode).toBe('INVALID_FIELD');

    const badDate = await collectionsUpsert(sandbox, token, 'Account', 'External_ID_vod__c', [
      hco('T-6', { PDRP_Opt_Out_Date_vod__c: 'yesterday' }),
    ]);
    expect(badDate.status).toBe(400);
    expect((badDate.body as unknown as SfErrors)[0]?.errorCode).toBe('JSON_PARSER_ERROR');
    expect(sandbox.records()).toEqual([]);
  });

  it('fails every record that repeats an external id within the request', async () => {
    const response = await collectionsUpsert(sandbox, token, 'Account', 'External_ID_vod__c', [
      hco('R-1'),
      hco('r-1'),
      hco('R-2'),
    ]);
    expect(response.body.map((r) => r.success)).toEqual([false, false, true]);
    expect(response.body[0]?.errors[0]?.statusCode).toBe('DUPLICATE_VALUE');
    expect(sandbox.records('Account').map((r) => r.External_ID_vod__c)).toEqual(['R-2']);
  });

  it('reports DUPLICATE_EXTERNAL_ID for a key that matches several records, and leaves them alone', async () => {
    const hcp = { RecordTypeId: RECORD_TYPES.hcp, LastName: 'Twin', NPI_vod__c: '1999999999' };
    await seedRecords(sandbox, 'Account', [hcp, hcp]);
    const before = sandbox.records('Account');
    const response = await collectionsUpsert(sandbox, token, 'Account', 'NPI_vod__c', [
      { NPI_vod__c: '1999999999', Phone: '555' },
      { NPI_vod__c: '1888888888', RecordTypeId: RECORD_TYPES.hcp, LastName: 'Solo' },
    ]);
    const [ambiguous, created] = response.body as [CollectionResult, CollectionResult];
    expect(ambiguous.success).toBe(false);
    expect(ambiguous.errors[0]?.statusCode).toBe('DUPLICATE_EXTERNAL_ID');
    expect(created.success).toBe(true);
    expect(sandbox.records('Account').filter((r) => r.NPI_vod__c === '1999999999')).toEqual(before);
  });

  it('resolves parents by external id per record', async () => {
    await collectionsUpsert(sandbox, token, 'Account', 'External_ID_vod__c', [hco('P-1')]);
    const response = await collectionsUpsert(sandbox, token, 'Address_vod__c', 'External_ID_vod__c', [
      { External_ID_vod__c: 'AD-1', Name: '1 Main', Account_vod__r: { External_ID_vod__c: 'P-1' } },
      { External_ID_vod__c: 'AD-2', Name: '2 Main', Account_vod__r: { External_ID_vod__c: 'P-404' } },
    ]);
    expect(response.body.map((r) => r.success)).toEqual([true, false]);
    expect(response.body[1]?.errors[0]?.statusCode).toBe('INVALID_FIELD');
  });

  it('is not available before API version 46.0', async () => {
    const response = await crmFetch(
      sandbox,
      token,
      'PATCH',
      apiPath('/composite/sobjects/Account/External_ID_vod__c', 'v45.0'),
      {
        records: [],
      },
    );
    expect(response.status).toBe(404);
  });
});

describe('sObject Collections create, update and delete', () => {
  it('creates records of mixed types in order', async () => {
    const response = await crmFetch<CollectionResult[]>(
      sandbox,
      token,
      'POST',
      apiPath('/composite/sobjects'),
      {
        allOrNone: false,
        records: [
          { attributes: { type: 'Account' }, Name: 'Mixed Org' },
          { attributes: { type: 'Patient_Profile__c' }, External_ID__c: 'pp-1', Gender__c: 'Female' },
          { attributes: { type: 'Account' }, Phone: '1' },
        ],
      },
    );
    expect(response.status).toBe(200);
    expect(response.body.map((r) => r.success)).toEqual([true, true, false]);
    expect(response.body[0]).not.toHaveProperty('created');
    expect(sandbox.records().map((r) => r.attributes.type)).toEqual(['Account', 'Patient_Profile__c']);
  });

  it('updates by Id and deletes by ids', async () => {
    const created = await crmFetch<CollectionResult[]>(
      sandbox,
      token,
      'POST',
      apiPath('/composite/sobjects'),
      {
        records: [
          { attributes: { type: 'Account' }, Name: 'One' },
          { attributes: { type: 'Account' }, Name: 'Two' },
        ],
      },
    );
    const ids = created.body.map((r) => r.id as string);
    const updated = await crmFetch<CollectionResult[]>(
      sandbox,
      token,
      'PATCH',
      apiPath('/composite/sobjects'),
      {
        records: [
          { attributes: { type: 'Account' }, Id: ids[0], Name: 'Uno' },
          { attributes: { type: 'Account' }, Id: '0018d00000000zzAAA', Name: 'Ghost' },
        ],
      },
    );
    expect(updated.body.map((r) => r.success)).toEqual([true, false]);
    expect(sandbox.records('Account').map((r) => r.Name)).toEqual(['Uno', 'Two']);

    const deleted = await crmFetch<CollectionResult[]>(
      sandbox,
      token,
      'DELETE',
      apiPath(`/composite/sobjects?ids=${ids.join(',')},not-an-id`),
    );
    expect(deleted.body.map((r) => r.success)).toEqual([true, true, false]);
    expect(sandbox.records('Account')).toEqual([]);
  });
});
