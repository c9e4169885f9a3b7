import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { toId18 } from './ids.ts';
import { type CrmSandbox, RECORD_TYPES, startCrmSandbox } from './index.ts';
import { apiPath, crmFetch, crmToken, fakeClock, seedRecords, upsert } from './testing.ts';

const clock = fakeClock();
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

type SfErrors = { message: string; errorCode: string; fields?: string[] }[];

const hcp = (extra: Record<string, unknown> = {}) => ({
  RecordTypeId: RECORD_TYPES.hcp,
  FirstName: 'Ada',
  LastName: 'Quill',
  NPI_vod__c: '1234567893',
  ...extra,
});

describe('upsert by external id', () => {
  it('creates once and updates on repeat: 201 then 204, one record', async () => {
    const first = await upsert(sandbox, token, 'Account', 'External_ID_vod__c', 'VID-1', hcp());
    expect(first.status).toBe(201);
    const created = first.body as { id: string; success: boolean; errors: unknown[]; created: boolean };
    expect(created).toEqual({
      id: expect.stringMatching(/^001\w{15}$/),
      success: true,
      errors: [],
      created: true,
    });

    clock.advance(1000);
    const second = await upsert(
      sandbox,
      token,
      'Account',
      'External_ID_vod__c',
      'VID-1',
      hcp({ Phone: '555-0100' }),
    );
    expect(second.status).toBe(204);
    expect(second.body).toBeUndefined();

    const accounts = sandbox.records('Account');
    expect(accounts).toHaveLength(1);
    const [account] = accounts;
    expect(account?.Id).toBe(created.id);
    expect(account?.Phone).toBe('555-0100');
    expect(account?.IsPersonAccount).toBe(true);
    expect(account?.Name).toBe('Ada Quill');
    expect(account?.CreatedDate).not.toBe(account?.SystemModstamp);
  });

  it('matches text external ids case-insensitively, but a case-sensitive key exactly', async () => {
    expect(
      (await upsert(sandbox, token, 'Account', 'External_ID_vod__c', 'vid-abc', { Name: 'North Clinic' }))
        .status,
    ).toBe(201);
    expect(
      (await upsert(sandbox, token, 'Account', 'External_ID_vod__c', 'VID-ABC', { Phone: '1' })).status,
    ).toBe(204);
    expect(sandbox.records('Account')).toHaveLength(1);

    // Patient_Profile__c.External_ID__c holds keyed pseudonyms: flagged case-sensitive, so these are two records.
    expect((await upsert(sandbox, token, 'Patient_Profile__c', 'External_ID__c', 'pSeud0', {})).status).toBe(
      201,
    );
    expect((await upsert(sandbox, token, 'Patient_Profile__c', 'External_ID__c', 'PSEUD0', {})).status).toBe(
      201,
    );
    const profiles = sandbox.records('Patient_Profile__c');
    expect(profiles.map((p) => p.Name)).toEqual(['PP-000001', 'PP-000002']);
  });

  it('accepts an external id value with a slash (URL-encoded) and the same value in the body', async () => {
    const response = await upsert(sandbox, token, 'Address_vod__c', 'External_ID_vod__c', 'A/1', {
      Name: '1 Main St',
      External_ID_vod__c: 'A/1',
      Account_vod__c: await accountId('P-1'),
    });
    expect(response.status).toBe(201);
    expect(sandbox.records('Address_vod__c')[0]?.External_ID_vod__c).toBe('A/1');
  });

  it('refuses a different external id value in the body', async () => {
    const response = await upsert(sandbox, token, 'Account', 'External_ID_vod__c', 'E-1', {
      Name: 'X',
      External_ID_vod__c: 'E-2',
    });
    expect(response.status).toBe(400);
    expect((response.body as SfErrors)[0]?.errorCode).toBe('INVALID_FIELD');
    expect(sandbox.records('Account')).toEqual([]);
  });

  it('answers 300 with the matching record URLs when a non-unique NPI matches two records, and writes nothing', async () => {
    const ids = await seedRecords(sandbox, 'Account', [
      hcp({ External_ID_vod__c: 'D-1' }),
      hcp({ External_ID_vod__c: 'D-2', FirstName: 'Twin' }),
    ]);
    const before = sandbox.records('Account');
    clock.advance(1000);

    const response = await upsert(sandbox, token, 'Account', 'NPI_vod__c', '1234567893', {
      Phone: '555-0199',
    });
    expect(response.status).toBe(300);
    expect(response.body).toEqual(ids.map((id) => `/services/data/v62.0/sobjects/Account/${id}`));
    expect(sandbox.records('Account')).toEqual(before);

    // Reading by the same key also answers 300; updateOnly does not change that.
    const read = await crmFetch(sandbox, token, 'GET', apiPath('/sobjects/Account/NPI_vod__c/1234567893'));
    expect(read.status).toBe(300);
    const updateOnly = await upsert(
      sandbox,
      token,
      'Account',
      'NPI_vod__c',
      '1234567893',
      { Phone: '1' },
      { updateOnly: true },
    );
    expect(updateOnly.status).toBe(300);
    expect(sandbox.records('Account')).toEqual(before);
  });

  it('refuses to insert with ?updateOnly=true (404 NOT_FOUND) but updates a match', async () => {
    const missing = await upsert(
      sandbox,
      token,
      'Account',
      'External_ID_vod__c',
      'NEW',
      { Name: 'X' },
      { updateOnly: true },
    );
    expect(missing.status).toBe(404);
    expect((missing.body as SfErrors)[0]?.errorCode).toBe('NOT_FOUND');
    expect(sandbox.records('Account')).toEqual([]);

    await upsert(sandbox, token, 'Account', 'External_ID_vod__c', 'NEW', { Name: 'X' });
    const update = await upsert(
      sandbox,
      token,
      'Account',
      'External_ID_vod__c',
      'NEW',
      { Name: 'Y' },
      { updateOnly: true },
    );
    expect(update.status).toBe(204);
    expect(sandbox.records('Account')[0]?.Name).toBe('Y');
  });

  it('reads and deletes a record by external id', async () => {
    await upsert(sandbox, token, 'Account', 'External_ID_vod__c', 'R-1', { Name: 'Readable' });
    const read = await crmFetch<Record<string, unknown>>(
      sandbox,
      token,
      'GET',
      apiPath('/sobjects/Account/External_ID_vod__c/R-1?fields=Name,IsPersonAccount'),
    );
    expect(read.status).toBe(200);
    expect(read.body).toMatchObject({ Name: 'Readable', IsPersonAccount: false });
    expect(Object.keys(read.body)).toEqual(['attributes', 'Name', 'IsPersonAccount']);
    expect(
      (await crmFetch(sandbox, token, 'DELETE', apiPath('/sobjects/Account/External_ID_vod__c/R-1'))).status,
    ).toBe(204);
    expect(
      (await crmFetch(sandbox, token, 'GET', apiPath('/sobjects/Account/External_ID_vod__c/R-1'))).status,
    ).toBe(404);
  });
});

/** Creates an HCO account with the given external id and returns its Id. */
async function accountId(externalId: string): Promise<string> {
  const response = await upsert(sandbox, token, 'Account', 'External_ID_vod__c', externalId, {
    Name: `Org ${externalId}`,
  });
  if (response.status !== 201) throw new Error(`account setup failed: ${response.status}`);
  return (response.body as { id: string }).id;
}

describe('relationships by parent external id', () => {
  it("resolves Account_vod__r to the parent's Id", async () => {
    const parent = await accountId('PARENT-1');
    const response = await upsert(sandbox, token, 'Address_vod__c', 'External_ID_vod__c', 'ADDR-1', {
      Name: '10 Elm St',
      City_vod__c: 'Springfield',
      Account_vod__r: { External_ID_vod__c: 'parent-1' },
    });
    expect(response.status).toBe(201);
    expect(sandbox.records('Address_vod__c')[0]?.Account_vod__c).toBe(parent);
  });

  it('fails cleanly with INVALID_FIELD when the parent is missing, without echoing the key', async () => {
    const response = await upsert(sandbox, token, 'Address_vod__c', 'External_ID_vod__c', 'ADDR-2', {
      Name: '10 Elm St',
      Account_vod__r: { External_ID_vod__c: 'pseudonym-7f3a9c' },
    });
    expect(response.status).toBe(400);
    const [error] = response.body as SfErrors;
    expect(error?.errorCode).toBe('INVALID_FIELD');
    expect(error?.message).toContain('Foreign key external ID');
    expect(error?.message).toContain('External_ID_vod__c in entity Account');
    expect(JSON.stringify(response.body)).not.toContain('pseudonym-7f3a9c');
    expect(sandbox.records('Address_vod__c')).toEqual([]);
  });

  it('refuses a relationship keyed by a field that is not an external id, and both forms at once', async () => {
    const parent = await accountId('PARENT-3');
    const notExternal = await upsert(sandbox, token, 'Address_vod__c', 'External_ID_vod__c', 'ADDR-3', {
      Name: 'x',
      Account_vod__r: { Name: 'Org PARENT-3' },
    });
    expect(notExternal.status).toBe(400);
    expect((notExternal.body as SfErrors)[0]?.errorCode).toBe('INVALID_FIELD');

    const both = await upsert(sandbox, token, 'Address_vod__c', 'External_ID_vod__c', 'ADDR-3', {
      Name: 'x',
      Account_vod__c: parent,
      Account_vod__r: { External_ID_vod__c: 'PARENT-3' },
    });
    expect(both.status).toBe(400);
    expect((both.body as SfErrors)[0]?.message).toContain('Cannot specify both');
  });

  it('answers DUPLICATE_EXTERNAL_ID when a parent key matches several records', async () => {
    await seedRecords(sandbox, 'Account', [
      hcp({ External_ID_vod__c: 'T-1' }),
      hcp({ External_ID_vod__c: 'T-2' }),
    ]);
    const response = await upsert(sandbox, token, 'Call2_vod__c', 'Mobile_ID_vod__c', 'M-1', {
      Account_vod__r: { NPI_vod__c: '1234567893' },
    });
    expect(response.status).toBe(400);
    expect((response.body as SfErrors)[0]?.errorCode).toBe('DUPLICATE_EXTERNAL_ID');
  });

  it('checks that a lookup by Id points at an existing record of the right object', async () => {
    const parent = await accountId('PARENT-4');
    const address = await upsert(sandbox, token, 'Address_vod__c', 'External_ID_vod__c', 'ADDR-4', {
      Name: 'x',
      Account_vod__c: parent,
    });
    const addressId = (address.body as { id: string }).id;
    const wrongObject = await upsert(sandbox, token, 'Call2_vod__c', 'Mobile_ID_vod__c', 'M-2', {
      Account_vod__c: addressId,
    });
    expect((wrongObject.body as SfErrors)[0]?.errorCode).toBe('MALFORMED_ID');
    const missing = await upsert(sandbox, token, 'Call2_vod__c', 'Mobile_ID_vod__c', 'M-2', {
      Account_vod__c: '0018d00000009zzAAA',
    });
    expect(missing.status).toBe(400);
    expect((missing.body as SfErrors)[0]?.errorCode).toBe('INVALID_CROSS_REFERENCE_KEY');
  });

  it('deletes master-detail children with their parent', async () => {
    const parent = await accountId('PARENT-5');
    await upsert(sandbox, token, 'Address_vod__c', 'External_ID_vod__c', 'ADDR-5', {
      Name: 'x',
      Account_vod__c: parent,
    });
    expect((await crmFetch(sandbox, token, 'DELETE', apiPath(`/sobjects/Account/${parent}`))).status).toBe(
      204,
    );
    expect(sandbox.records('Address_vod__c')).toEqual([]);
    const gone = await crmFetch<SfErrors>(sandbox, token, 'GET', apiPath(`/sobjects/Account/${parent}`));
    expect(gone.status).toBe(404);
    expect(gone.body[0]?.errorCode).toBe('ENTITY_IS_DELETED');
  });
});

describe('validation errors', () => {
  const cases: [string, string, string, string, Record<string, unknown>, number, string, string[]?][] = [
    [
      'a field the object lacks',
      'Account',
      'External_ID_vod__c',
      'V1',
      { Name: 'x', Shoe_Size__c: 9 },
      400,
      'INVALID_FIELD',
      ['Shoe_Size__c'],
    ],
    [
      'a URL field that is not an External ID',
      'Account',
      'Phone',
      '555',
      { Name: 'x' },
      400,
      'INVALID_FIELD',
    ],
    ['a URL field the object lacks', 'Account', 'Nope__c', '1', { Name: 'x' }, 404, 'NOT_FOUND'],
    ['an unknown object', 'Nope__c', 'External_ID_vod__c', '1', {}, 404, 'NOT_FOUND'],
    [
      'a business account without Name',
      'Account',
      'External_ID_vod__c',
      'V2',
      { Phone: '1' },
      400,
      'REQUIRED_FIELD_MISSING',
      ['Name'],
    ],
    [
      'a person account without LastName',
      'Account',
      'External_ID_vod__c',
      'V3',
      { RecordTypeId: RECORD_TYPES.hcp, FirstName: 'A' },
      400,
      'REQUIRED_FIELD_MISSING',
      ['LastName'],
    ],
    [
      'a consent without capture time',
      'Multichannel_Consent_vod__c',
      'External_ID_vod__c',
      'C1',
      { Opt_Type_vod__c: 'Opt_In_vod' },
      400,
      'REQUIRED_FIELD_MISSING',
      ['Capture_Datetime_vod__c'],
    ],
    [
      'a bad restricted picklist value',
      'Account',
      'External_ID_vod__c',
      'V4',
      { Name: 'x', Approved_Email_Opt_Type_vod__c: 'Sometimes' },
      400,
      'INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST',
      ['Approved_Email_Opt_Type_vod__c'],
    ],
    [
      'a bad Gender__c',
      'Patient_Profile__c',
      'External_ID__c',
      'P1',
      { Gender__c: 'male' },
      400,
      'INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST',
      ['Gender__c'],
    ],
    [
      'a too long string',
      'Patient_Profile__c',
      'External_ID__c',
      'P2',
      { Zip3__c: '02139' },
      400,
      'STRING_TOO_LONG',
      ['Zip3__c'],
    ],
    [
      'an unparseable date',
      'Call2_vod__c',
      'Mobile_ID_vod__c',
      'M1',
      { Call_Date_vod__c: '2025-02-30' },
      400,
      'JSON_PARSER_ERROR',
    ],
    [
      'an object for a checkbox',
      'Account',
      'External_ID_vod__c',
      'V5',
      { Name: 'x', PDRP_Opt_Out_vod__c: { yes: true } },
      400,
      'JSON_PARSER_ERROR',
    ],
    [
      'a number for a date',
      'Call2_vod__c',
      'Mobile_ID_vod__c',
      'M2',
      { Call_Date_vod__c: 20250101 },
      400,
      'INVALID_TYPE_ON_FIELD_IN_RECORD',
      ['Call_Date_vod__c'],
    ],
    [
      'a five-digit birth year',
      'Patient_Profile__c',
      'External_ID__c',
      'P3',
      { Birth_Year__c: 19801 },
      400,
      'NUMBER_OUTSIDE_VALID_RANGE',
      ['Birth_Year__c'],
    ],
    [
      'a malformed e-mail',
      'Account',
      'External_ID_vod__c',
      'V6',
      { RecordTypeId: RECORD_TYPES.hcp, LastName: 'x', PersonEmail: 'not-an-email' },
      400,
      'INVALID_EMAIL_ADDRESS',
      ['PersonEmail'],
    ],
    [
      'a read-only field',
      'Account',
      'External_ID_vod__c',
      'V7',
      { Name: 'x', IsPersonAccount: true },
      400,
      'INVALID_FIELD_FOR_INSERT_UPDATE',
      ['IsPersonAccount'],
    ],
    [
      'an Id in the body',
      'Account',
      'External_ID_vod__c',
      'V8',
      { Name: 'x', Id: '0018d0000000001AAA' },
      400,
      'INVALID_FIELD_FOR_INSERT_UPDATE',
      ['Id'],
    ],
    [
      'Name on a person account',
      'Account',
      'External_ID_vod__c',
      'V9',
      { RecordTypeId: RECORD_TYPES.hcp, LastName: 'x', Name: 'x' },
      400,
      'INVALID_FIELD_FOR_INSERT_UPDATE',
      ['Name'],
    ],
    [
      'person fields on a business account',
      'Account',
      'External_ID_vod__c',
      'V10',
      { Name: 'x', PersonEmail: 'a@b.co' },
      400,
      'INVALID_FIELD_FOR_INSERT_UPDATE',
      ['PersonEmail'],
    ],
    [
      'an unknown record type',
      'Account',
      'External_ID_vod__c',
      'V11',
      { Name: 'x', RecordTypeId: toId18('0128d0000005XXX') },
      400,
      'INVALID_CROSS_REFERENCE_KEY',
      ['RecordTypeId'],
    ],
    [
      'an address without its account',
      'Address_vod__c',
      'External_ID_vod__c',
      'A1',
      { Name: '1 Main' },
      400,
      'REQUIRED_FIELD_MISSING',
      ['Account_vod__c'],
    ],
  ];

  it.each(cases)('%s → %s', async (_case, object, field, value, body, status, code, fields) => {
    const response = await upsert(sandbox, token, object, field, value, body);
    expect(response.status).toBe(status);
    const errors = response.body as SfErrors;
    expect(errors.map((e) => e.errorCode)).toContain(code);
    if (fields) expect(errors.find((e) => e.errorCode === code)?.fields).toEqual(fields);
    expect(sandbox.records()).toEqual([]);
  });

  it('reports every problem of a record, not only the first', async () => {
    const response = await upsert(sandbox, token, 'Patient_Profile__c', 'External_ID__c', 'P9', {
      Zip3__c: '12345',
      Gender__c: 'X',
    });
    expect((response.body as SfErrors).map((e) => e.errorCode).sort()).toEqual([
      'INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST',
      'STRING_TOO_LONG',
    ]);
  });

  it('never puts the offending value in an error message', async () => {
    const secret = 'Jane-Roe-1961-05-04';
    const responses = await Promise.all([
      upsert(sandbox, token, 'Patient_Profile__c', 'External_ID__c', 'P10', { Zip3__c: secret }),
      upsert(sandbox, token, 'Patient_Profile__c', 'External_ID__c', 'P11', { Gender__c: secret }),
      upsert(sandbox, token, 'Account', 'External_ID_vod__c', 'V20', {
        RecordTypeId: RECORD_TYPES.hcp,
        LastName: 'x',
        PersonEmail: secret,
      }),
      upsert(sandbox, token, 'Call2_vod__c', 'Mobile_ID_vod__c', 'M20', { Call_Datetime_vod__c: secret }),
      upsert(sandbox, token, 'Account', 'External_ID_vod__c', 'V21', {
        Name: 'x',
        PDRP_Opt_Out_vod__c: secret,
      }),
    ]);
    for (const response of responses) {
      expect(response.status).toBe(400);
      expect(JSON.stringify(response.body)).not.toContain(secret);
    }
  });

  it('answers DUPLICATE_VALUE when a write would repeat a unique value', async () => {
    const first = await upsert(
      sandbox,
      token,
      'Account',
      'NPI_vod__c',
      '1111111111',
      hcp({ NPI_vod__c: undefined, External_ID_vod__c: 'U-1' }),
    );
    expect(first.status).toBe(201);
    const firstId = (first.body as { id: string }).id;
    const second = await upsert(
      sandbox,
      token,
      'Account',
      'NPI_vod__c',
      '2222222222',
      hcp({ NPI_vod__c: undefined, External_ID_vod__c: 'u-1' }),
    );
    expect(second.status).toBe(400);
    expect(second.body).toEqual([
      {
        message: `duplicate value found: External_ID_vod__c duplicates value on record with id: ${firstId}`,
        errorCode: 'DUPLICATE_VALUE',
        fields: [],
      },
    ]);
    expect(sandbox.records('Account')).toHaveLength(1);
  });

  it('answers JSON_PARSER_ERROR for a body that is not JSON', async () => {
    const response = await fetch(`${sandbox.url}${apiPath('/sobjects/Account/External_ID_vod__c/J1')}`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: '{"Name": ',
    });
    expect(response.status).toBe(400);
    expect(((await response.json()) as SfErrors)[0]?.errorCode).toBe('JSON_PARSER_ERROR');
  });

  it('refuses to turn a person account into a business account', async () => {
    await upsert(sandbox, token, 'Account', 'External_ID_vod__c', 'SW-1', hcp());
    const response = await upsert(sandbox, token, 'Account', 'External_ID_vod__c', 'SW-1', {
      RecordTypeId: RECORD_TYPES.hco,
      Name: 'Now an org',
    });
    expect(response.status).toBe(400);
    expect(sandbox.records('Account')[0]?.IsPersonAccount).toBe(true);
  });
});

describe('locked calls', () => {
  it('lets a saved call be updated and submitted, then refuses updates and deletes with ENTITY_IS_LOCKED', async () => {
    const account = await accountId('CALL-ACC');
    const call = { Account_vod__c: account, Call_Date_vod__c: '2025-01-15', Status_vod__c: 'Saved_vod' };
    expect((await upsert(sandbox, token, 'Call2_vod__c', 'Mobile_ID_vod__c', 'MOB-1', call)).status).toBe(
      201,
    );
    expect(
      (
        await upsert(sandbox, token, 'Call2_vod__c', 'Mobile_ID_vod__c', 'MOB-1', {
          Call_Channel_vod__c: 'Phone_vod',
        })
      ).status,
    ).toBe(204);
    expect(
      (
        await upsert(sandbox, token, 'Call2_vod__c', 'Mobile_ID_vod__c', 'MOB-1', {
          Status_vod__c: 'Submitted_vod',
        })
      ).status,
    ).toBe(204);
    const submitted = sandbox.records('Call2_vod__c');

    const locked = await upsert(sandbox, token, 'Call2_vod__c', 'Mobile_ID_vod__c', 'MOB-1', {
      Status_vod__c: 'Saved_vod',
    });
    expect(locked.status).toBe(400);
    expect((locked.body as SfErrors)[0]?.errorCode).toBe('ENTITY_IS_LOCKED');
    const id = submitted[0]?.Id;
    const patch = await crmFetch<SfErrors>(sandbox, token, 'PATCH', apiPath(`/sobjects/Call2_vod__c/${id}`), {
      Territory_vod__c: 'T1',
    });
    expect(patch.body[0]?.errorCode).toBe('ENTITY_IS_LOCKED');
    const del = await crmFetch<SfErrors>(sandbox, token, 'DELETE', apiPath(`/sobjects/Call2_vod__c/${id}`));
    expect(del.body[0]?.errorCode).toBe('ENTITY_IS_LOCKED');
    expect(sandbox.records('Call2_vod__c')).toEqual(submitted);
    expect(submitted[0]?.Name).toMatch(/^C-\d{7}$/);
  });

  it('refuses to delete an account a submitted call refers to (DELETE_FAILED), not one with saved calls only', async () => {
    const submittedTo = await accountId('CALL-SUB');
    const savedTo = await accountId('CALL-SAVED');
    const call = (account: string, status: string) => ({
      Account_vod__c: account,
      Call_Date_vod__c: '2025-01-15',
      Status_vod__c: status,
    });
    await upsert(
      sandbox,
      token,
      'Call2_vod__c',
      'Mobile_ID_vod__c',
      'MOB-S',
      call(submittedTo, 'Submitted_vod'),
    );
    await upsert(sandbox, token, 'Call2_vod__c', 'Mobile_ID_vod__c', 'MOB-V', call(savedTo, 'Saved_vod'));
    const refused = await crmFetch<{ success: boolean; errors: { statusCode: string }[] }[]>(
      sandbox,
      token,
      'DELETE',
      apiPath(`/composite/sobjects?ids=${submittedTo},${savedTo}&allOrNone=false`),
    );
    expect(refused.body.map((r) => r.success)).toEqual([false, true]);
    expect(refused.body[0]?.errors[0]?.statusCode).toBe('DELETE_FAILED');
    expect(sandbox.records('Account').map((a) => a.Id)).toEqual([submittedTo]);
  });
});

describe('sObject rows by Id', () => {
  it('creates, reads, updates and deletes', async () => {
    const created = await crmFetch<{ id: string; success: boolean }>(
      sandbox,
      token,
      'POST',
      apiPath('/sobjects/Account'),
      {
        Name: 'General Hospital',
        Website: 'https://example.org',
      },
    );
    expect(created.status).toBe(201);
    const id = created.body.id;
    expect(created.body).toEqual({ id, success: true, errors: [] });
    const row = await crmFetch<Record<string, unknown>>(
      sandbox,
      token,
      'GET',
      apiPath(`/sobjects/Account/${id}`),
    );
    expect(row.body).toMatchObject({
      attributes: { type: 'Account', url: `/services/data/v62.0/sobjects/Account/${id}` },
      Id: id,
      Name: 'General Hospital',
      RecordTypeId: RECORD_TYPES.hco,
      IsPersonAccount: false,
      IsDeleted: false,
      PersonEmail: null,
      CreatedDate: clock.now().toISOString().replace('Z', '+0000'),
    });
    // A 15-character id works as well as the 18-character one.
    expect(
      (await crmFetch(sandbox, token, 'GET', apiPath(`/sobjects/Account/${id.slice(0, 15)}`))).status,
    ).toBe(200);
    expect(
      (await crmFetch(sandbox, token, 'PATCH', apiPath(`/sobjects/Account/${id}`), { Phone: '1' })).status,
    ).toBe(204);
    expect(sandbox.records('Account')[0]?.Phone).toBe('1');
    expect((await crmFetch(sandbox, token, 'DELETE', apiPath(`/sobjects/Account/${id}`))).status).toBe(204);
    expect(sandbox.records('Account')).toEqual([]);
  });

  it('describes objects from the schema', async () => {
    const describe = await crmFetch<{
      name: string;
      fields: {
        name: string;
        type: string;
        externalId: boolean;
        unique: boolean;
        restrictedPicklist: boolean;
      }[];
      recordTypeInfos: { recordTypeId: string; developerName: string }[];
    }>(sandbox, token, 'GET', apiPath('/sobjects/Account/describe'));
    expect(describe.status).toBe(200);
    const field = (name: string) => describe.body.fields.find((f) => f.name === name);
    expect(field('External_ID_vod__c')).toMatchObject({ externalId: true, unique: true });
    expect(field('NPI_vod__c')).toMatchObject({ externalId: true, unique: false });
    expect(field('Approved_Email_Opt_Type_vod__c')).toMatchObject({
      type: 'picklist',
      restrictedPicklist: true,
    });
    expect(describe.body.recordTypeInfos.map((r) => [r.developerName, r.recordTypeId])).toEqual([
      ['Professional_vod', RECORD_TYPES.hcp],
      ['Hospital_vod', RECORD_TYPES.hco],
    ]);
    const global = await crmFetch<{ sobjects: { name: string; keyPrefix: string }[] }>(
      sandbox,
      token,
      'GET',
      apiPath('/sobjects'),
    );
    expect(global.body.sobjects.map((o) => o.name)).toContain('Patient_Profile__c');
    const versions = await crmFetch<{ version: string }[]>(sandbox, undefined, 'GET', '/services/data');
    expect(versions.body.map((v) => v.version)).toContain('62.0');
  });

  it('answers 404 for a malformed API version and NOT_FOUND for unknown API paths, behind the session check', async () => {
    expect((await crmFetch(sandbox, token, 'GET', '/services/data/62/limits')).status).toBe(404);
    expect((await crmFetch(sandbox, undefined, 'GET', apiPath('/no/such/thing'))).status).toBe(401);
    const unknown = await crmFetch<SfErrors>(sandbox, token, 'GET', apiPath('/no/such/thing'));
    expect(unknown.status).toBe(404);
    expect(unknown.body[0]?.errorCode).toBe('NOT_FOUND');
    expect(unknown.headers.get('sforce-limit-info')).toMatch(/^api-usage=\d+\/100000$/);
  });
});
