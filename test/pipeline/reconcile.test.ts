import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { pseudonymize } from '../../src/core/anonymize/pseudonym.ts';
import type { JsonObject } from '../../src/core/fhir/resource.ts';
import { runFlow } from '../../src/engine/pipeline/run-flow.ts';
import { type ReconcileFinding, reconcileFlow } from '../../src/engine/reconcile/reconcile.ts';
import { repairMissing } from '../../src/engine/reconcile/repair.ts';
import { SqliteStateStore } from '../../src/engine/store/sqlite-store.ts';
import {
  living,
  MemorySource,
  MemoryTarget,
  silentLogger,
  stageContext,
  stampedSamples,
  tempDirs,
} from './fakes.ts';

// Reconciliation walks the flow's delivery ledger and looks every record up at the target: gone there,
// edited there since Sluice wrote it, or as written.

const samples = stampedSamples({ patients: 1, practitioners: 4 });
const tempDir = tempDirs('sluice-reconcile-');
const FLOW = 'reconcile-flow';

async function delivered(): Promise<{ store: SqliteStateStore; target: MemoryTarget }> {
  const dir = tempDir();
  const store = SqliteStateStore.open(join(dir, 'state.sqlite'));
  const target = new MemoryTarget();
  const [p] = samples.patients as [JsonObject];
  const source = new MemorySource({
    Practitioner: samples.practitioners,
    Patient: [living(p, 'rc-1'), living(p, 'rc-2')],
  });
  const summary = await runFlow({ ...runOptions(source, target, store), logger: silentLogger });
  expect(summary.status).toBe('succeeded');
  return { store, target };
}

function runOptions(source: MemorySource, target: MemoryTarget, store: SqliteStateStore) {
  return {
    flow: FLOW,
    definitionHash: 'hash-1',
    source,
    target,
    store,
    stages: stageContext(),
    maxBatch: 200,
  };
}

const reconcile = (store: SqliteStateStore, target: MemoryTarget, extra = {}) =>
  reconcileFlow({ flow: FLOW, store, target, signal: new AbortController().signal, ...extra });

describe('reconcileFlow', () => {
  it('finds everything as written right after a run, looking each record up once', async () => {
    const { store, target } = await delivered();
    const ledger = await store.countLedger(FLOW);
    const report = await reconcile(store, target);
    expect(report.clean).toBe(true);
    expect(report.checked).toBe(ledger);
    expect(report.checked).toBe(target.records.size);
    expect(Object.keys(report.objects).sort()).toEqual(['Account', 'Address_vod__c', 'Patient_Profile__c']);
    expect(report.objects.Patient_Profile__c).toEqual({ checked: 2, asWritten: 2, missing: 0, changed: 0 });
    const looked = target.requests.filter((r) => r.object.startsWith('inspect '));
    expect(looked.reduce((n, r) => n + r.count, 0)).toBe(ledger);
    await store.close();
  });

  it('reports records deleted in the CRM and records edited there after the last write, by id only', async () => {
    const { store, target } = await delivered();
    const pseudonym = pseudonymize(stageContext().pseudonymKey, 'epic', 'Patient', 'rc-1');
    // A CRM user deletes one profile and edits a provider account two hours after Sluice wrote it.
    const profileKey = `Patient_Profile__c|${pseudonym}`;
    const profileId = target.records.get(profileKey)?.id as string;
    target.records.delete(profileKey);
    const [accountKey, account] = [...target.records.entries()].find(([k]) => k.startsWith('Account|')) as [
      string,
      { id: string },
    ];
    target.lastModified.set(account.id, new Date(Date.now() + 2 * 3_600_000).toISOString());

    const report = await reconcile(store, target);
    expect(report.clean).toBe(false);
    expect(report.objects.Patient_Profile__c).toMatchObject({ missing: 1, asWritten: 1 });
    expect(report.objects.Account).toMatchObject({ changed: 1 });
    expect(report.missing).toEqual([
      expect.objectContaining({ object: 'Patient_Profile__c', targetId: profileId, sourceRef: pseudonym }),
    ]);
    const source = (await store.getLedger(FLOW, 'Account', [accountKey.slice('Account|'.length)]))
      .values()
      .next().value?.sourceRef;
    expect(report.changed).toEqual([
      expect.objectContaining({ object: 'Account', targetId: account.id, sourceRef: source }),
    ]);
    expect(report.changed[0]?.lastModified).toBe(target.lastModified.get(account.id));
    // No record content and no clear patient id in the report.
    expect(JSON.stringify(report)).not.toContain('rc-1');

    // An edit within the tolerance is Sluice's own write; counts stay whole when the sample is empty.
    const lenient = await reconcile(store, target, { toleranceSeconds: 3 * 3600, sample: 0 });
    expect(lenient.objects.Account?.changed).toBe(0);
    expect(lenient.objects.Patient_Profile__c?.missing).toBe(1);
    expect(lenient.missing).toEqual([]);
    await store.close();
  });

  it('walks a ledger larger than one page and one request, across objects, without missing a row', async () => {
    const { store, target } = await delivered();
    const small = Object.assign(Object.create(Object.getPrototypeOf(target)), target, {
      maxBatchSize: 2,
      requests: [],
    }) as MemoryTarget;
    const whole = await reconcile(store, target);
    const paged = await reconcile(store, small, { ledgerPage: 3 });
    expect(paged.objects).toEqual(whole.objects);
    expect(paged.checked).toBe(await store.countLedger(FLOW));
    // Never more ids per request than the target takes; every row looked up exactly once.
    expect(small.requests.every((r) => r.count <= 2)).toBe(true);
    expect(small.requests.reduce((n, r) => n + r.count, 0)).toBe(paged.checked);
    await store.close();
  });

  it('repairs by reading the source records of missing ones again; a record gone at the source is forgotten', async () => {
    const { store, target } = await delivered();
    const key = stageContext().pseudonymKey;
    const [p] = samples.patients as [JsonObject];
    // In the CRM: both profiles and one provider account are deleted. At the source rc-2 is gone too.
    for (const id of ['rc-1', 'rc-2'])
      target.records.delete(`Patient_Profile__c|${pseudonymize(key, 'epic', 'Patient', id)}`);
    const [accountKey] = [...target.records.keys()].filter((k) => k.startsWith('Account|'));
    target.records.delete(accountKey as string);
    const source = new MemorySource({ Practitioner: samples.practitioners, Patient: [living(p, 'rc-1')] });

    const missing: ReconcileFinding[] = [];
    const found = await reconcile(store, target, { onMissing: (f: ReconcileFinding) => missing.push(f) });
    expect(found.objects.Patient_Profile__c?.missing).toBe(2);
    expect(missing).toHaveLength(3);
    const outcome = await repairMissing({
      missing,
      fetcher: source,
      runOptions: runOptions(source, target, store),
      store,
      logger: silentLogger,
      signal: new AbortController().signal,
    });
    expect(outcome).toMatchObject({ refetched: 2, goneAtSource: 1, unresolved: 0 });
    expect(outcome.run?.status).toBe('succeeded');
    // Re-sent whatever the ledger said: the profile and the account are back; checkpoints did not move.
    expect(target.records.has(`Patient_Profile__c|${pseudonymize(key, 'epic', 'Patient', 'rc-1')}`)).toBe(
      true,
    );
    expect(target.records.has(accountKey as string)).toBe(true);
    expect(outcome.run?.checkpoints).toEqual({});
    const after = await reconcile(store, target);
    expect(after.clean).toBe(true);
    expect(after.checked).toBe(target.records.size);
    await store.close();
  });
});
