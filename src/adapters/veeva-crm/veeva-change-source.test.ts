import { afterEach, describe, expect, it } from 'vitest';
import type { SystemName } from '../../core/model/ids.ts';
import type { SourcePage } from '../../core/ports/source.ts';
import { DEMO_CRM_CLIENT, RECORD_TYPES, startCrmSandbox } from '../../sandbox/crm/index.ts';
import { apiPath, crmFetch, crmToken, seedRecords, upsert } from '../../sandbox/crm/testing.ts';
import { fakeClock } from '../../sandbox/ehr/testing.ts';
import { createRetryPolicy } from '../http/retry-policy.ts';
import { CrmAuth } from './crm-auth.ts';
import { salesforceInstant, VeevaChangeSource } from './veeva-change-source.ts';

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

async function setup() {
  const clock = fakeClock(new Date('2026-11-20T08:00:00.000Z'));
  const crm = await startCrmSandbox({ now: clock.now });
  closers.push(() => crm.close());
  const source = new VeevaChangeSource({
    system: 'veeva' as SystemName,
    auth: new CrmAuth({
      loginUrl: crm.url,
      clientId: DEMO_CRM_CLIENT.clientId,
      clientSecret: DEMO_CRM_CLIENT.clientSecret,
    }),
    apiVersion: 'v62.0',
    retry: createRetryPolicy({ initialDelayMs: 10 }),
    objects: [{ name: 'Account', fields: ['Name', 'External_ID_vod__c'] }],
    pageSize: 200,
  });
  return { clock, crm, source };
}

async function collect(pages: AsyncIterable<SourcePage>): Promise<SourcePage[]> {
  const out: SourcePage[] = [];
  for await (const p of pages) out.push(p);
  return out;
}

const signal = new AbortController().signal;

describe('VeevaChangeSource', () => {
  it('reads every record once in change order, page by page, each page with its checkpoint', async () => {
    const { clock, crm, source } = await setup();
    for (let batch = 0; batch < 5; batch++) {
      await seedRecords(
        crm,
        'Account',
        Array.from({ length: 100 }, (_, i) => ({
          Name: `Org ${batch}-${i}`,
          RecordTypeId: RECORD_TYPES.hco,
          External_ID_vod__c: `epic:Organization/${batch}-${i}`,
        })),
      );
      clock.advance(1000);
    }
    const pages = await collect(source.read('Account', undefined, signal));
    expect(pages.length).toBe(3);
    const ids = pages.flatMap((p) => p.records.map((r) => (r.resource as { Id: string }).Id));
    expect(new Set(ids).size).toBe(500);
    const checkpoints = pages.map((p) => p.checkpoint as string);
    expect([...checkpoints].sort()).toEqual(checkpoints);
    expect(checkpoints.at(-1)).toBe('2026-11-20T08:00:04.000Z');
  });

  it('from a checkpoint: the changed records and the deletions, nothing older', async () => {
    const { clock, crm, source } = await setup();
    const token = await crmToken(crm);
    for (let i = 0; i < 4; i++) {
      await upsert(crm, token, 'Account', 'External_ID_vod__c', `epic:Organization/${i}`, {
        Name: `Org ${i}`,
        RecordTypeId: RECORD_TYPES.hco,
      });
      clock.advance(1000);
    }
    const first = await collect(source.read('Account', undefined, signal));
    const checkpoint = first.at(-1)?.checkpoint as string;
    expect(first.flatMap((p) => p.records)).toHaveLength(4);

    clock.advance(10_000);
    await upsert(crm, token, 'Account', 'External_ID_vod__c', 'epic:Organization/1', {
      Name: 'Org one, renamed',
    });
    const victim = crm.records('Account').find((a) => a.External_ID_vod__c === 'epic:Organization/2');
    const deleted = await crmFetch(crm, token, 'DELETE', apiPath(`/sobjects/Account/${victim?.Id}`));
    expect(deleted.status).toBe(204);

    const next = await collect(source.read('Account', checkpoint, signal));
    const names = next.flatMap((p) => p.records.map((r) => (r.resource as { Name: string }).Name));
    // The record at the checkpoint's instant comes again (harmless: unchanged at the target).
    expect(names.sort()).toEqual(['Org 3', 'Org one, renamed']);
    expect(next.flatMap((p) => p.deletions ?? []).map((d) => d.id)).toEqual([victim?.Id]);
    expect(next.at(-1)?.checkpoint).toBe('2026-11-20T08:00:14.000Z');
  });

  it('parses Salesforce instants and refuses names that could inject SOQL', () => {
    expect(salesforceInstant('2026-11-23T12:00:00.000+0000')).toBe('2026-11-23T12:00:00.000Z');
    expect(salesforceInstant('garbage')).toBeUndefined();
    expect(
      () =>
        new VeevaChangeSource({
          system: 'veeva' as SystemName,
          auth: new CrmAuth({ loginUrl: 'http://127.0.0.1:9', clientId: 'a', clientSecret: 'b' }),
          apiVersion: 'v62.0',
          retry: createRetryPolicy(),
          objects: [{ name: 'Account', fields: ['Name FROM User --'] }],
        }),
    ).toThrow(/Not a Salesforce field/);
  });
});
