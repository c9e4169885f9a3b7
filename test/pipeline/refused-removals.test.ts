import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { pseudonymize } from '../../src/core/anonymize/pseudonym.ts';
import type { JsonObject } from '../../src/core/fhir/resource.ts';
import { compileWithholdPolicy, type WithholdRuleSpec } from '../../src/core/policy/withhold.ts';
import { AuditLog } from '../../src/engine/audit/index.ts';
import { testKeys } from '../../src/engine/audit/testing.ts';
import { type RunFlowOptions, runFlow } from '../../src/engine/pipeline/run-flow.ts';
import { SqliteStateStore } from '../../src/engine/store/sqlite-store.ts';
import {
  living,
  MemorySource,
  MemoryTarget,
  silentLogger,
  stageContext,
  stampedSamples,
  tempDirs,
  version,
} from './fakes.ts';

// A removal the CRM refuses (a locked record, one others depend on) must neither be lost nor stop the
// flow: it is kept with its cause and codes, the record's ledger row stays, later runs try again, and
// a record wanted again drops it.

const samples = stampedSamples({ patients: 1, practitioners: 2 });
const tempDir = tempDirs('sluice-refused-');
const FLOW = 'refusal-flow';

const RULES: WithholdRuleSpec[] = [
  {
    resourceType: 'Patient',
    when: 'deceased.exists() and deceased != false',
    reason: 'deceased',
    delivered: 'delete',
  },
  { resourceType: 'Practitioner', when: 'active = false', reason: 'inactive', delivered: 'delete' },
];

function options(
  source: MemorySource,
  target: MemoryTarget,
  store: SqliteStateStore,
  extra: Partial<RunFlowOptions> = {},
): RunFlowOptions {
  return {
    flow: FLOW,
    definitionHash: 'hash-1',
    source,
    target,
    store,
    stages: stageContext({ withhold: compileWithholdPolicy(RULES) }),
    maxBatch: 200,
    logger: silentLogger,
    ...extra,
  };
}

const deletes = (target: MemoryTarget) => target.requests.filter((r) => r.object === 'delete').length;

describe('removals the CRM refuses', () => {
  it('are kept and audited while the rest of the run goes on, and done by a later run once allowed', async () => {
    const [p] = samples.patients as [JsonObject];
    const keptBack = living(p, 'rr-1');
    const other = living(p, 'rr-2');
    const store = SqliteStateStore.open(join(tempDir(), 'state.sqlite'));
    const target = new MemoryTarget();
    const audit = await AuditLog.open({
      store: join(tempDir(), 'audit.sqlite'),
      signer: (await testKeys()).signer,
    });
    const pseudonym = pseudonymize(stageContext().pseudonymKey, 'epic', 'Patient', 'rr-1');
    await runFlow(options(new MemorySource({ Patient: [keptBack, other] }), target, store, { audit }));
    expect(target.count('Patient_Profile__c')).toBe(2);
    const lockedId = target.idOf('Patient_Profile__c', pseudonym) as string;
    target.locked.add(lockedId);

    // rr-1 dies (its profile is to be removed, the CRM refuses); rr-2 moves (its profile is updated).
    const dead = version(keptBack, 2, 10, { deceasedBoolean: true });
    const moved = version(other, 2, 11, { gender: other.gender === 'male' ? 'female' : 'male' });
    const second = await runFlow(
      options(new MemorySource({ Patient: [dead, moved] }), target, store, { audit }),
    );
    expect(second.status).toBe('succeeded');
    expect(second.updated).toBe(1);
    expect(second.retracted).toBe(0);
    expect(second.removals).toEqual({ refused: 1, completed: 0, pending: 1 });
    expect(target.count('Patient_Profile__c')).toBe(2);
    // Still there, so still in the ledger; the removal is kept with why and what the CRM said.
    expect(await store.ledgerBySource(FLOW, pseudonym)).toHaveLength(1);
    const [kept] = await store.listRefusedRemovals(FLOW);
    expect(kept).toMatchObject({
      object: 'Patient_Profile__c',
      targetId: lockedId,
      sourceRef: pseudonym,
      cause: 'withheld-retraction',
      because: 'deceased',
      codes: ['ENTITY_IS_LOCKED'],
      attempts: 1,
    });
    const refusedEntries = async () =>
      (await audit.query({ subject: pseudonym })).entries.filter((e) => e.reason === 'removal-refused');
    expect(await refusedEntries()).toHaveLength(1);
    expect((await refusedEntries())[0]).toMatchObject({
      kind: 'send',
      outcome: 'minor-failure',
      details: { object: 'Patient_Profile__c', cause: 'withheld-retraction', codes: 'ENTITY_IS_LOCKED' },
    });
    // The refused record is not reported as retracted.
    expect(
      (await audit.query({ subject: pseudonym })).entries.some((e) => e.reason === 'withheld-retraction'),
    ).toBe(false);

    // Still locked: tried again, refused again (one more attempt, no second audit entry).
    const third = await runFlow(
      options(new MemorySource({ Patient: [dead, moved] }), target, store, { audit }),
    );
    expect(third.status).toBe('succeeded');
    expect(third.skipped).toBe(third.read);
    expect(third.removals).toEqual({ refused: 0, completed: 0, pending: 1 });
    expect((await store.listRefusedRemovals(FLOW))[0]?.attempts).toBe(2);
    expect(await refusedEntries()).toHaveLength(1);

    // Unlocked at the CRM: the next run removes it, audited as the retraction it finishes.
    target.locked.delete(lockedId);
    const fourth = await runFlow(
      options(new MemorySource({ Patient: [dead, moved] }), target, store, { audit }),
    );
    expect(fourth.removals).toEqual({ refused: 0, completed: 1, pending: 0 });
    expect(fourth.retracted).toBe(1);
    expect(target.count('Patient_Profile__c')).toBe(1);
    expect(await store.ledgerBySource(FLOW, pseudonym)).toEqual([]);
    expect(await store.listRefusedRemovals(FLOW)).toEqual([]);
    const done = (await audit.query({ subject: pseudonym })).entries.find(
      (e) => e.reason === 'withheld-retraction',
    );
    expect(done?.details).toMatchObject({ object: 'Patient_Profile__c', because: 'deceased', attempts: 3 });
    expect(JSON.stringify((await audit.query({})).entries)).not.toContain('rr-1');

    // Nothing is left to do: no more delete requests.
    const before = deletes(target);
    const fifth = await runFlow(
      options(new MemorySource({ Patient: [dead, moved] }), target, store, { audit }),
    );
    expect(fifth.removals).toBeUndefined();
    expect(deletes(target)).toBe(before);
    await audit.close();
    await store.close();
  });

  it('a loop cycle tries only those due (backing off); a run started by hand tries them all', async () => {
    const [p] = samples.patients as [JsonObject];
    const alive = living(p, 'rd-1');
    const store = SqliteStateStore.open(join(tempDir(), 'state.sqlite'));
    const target = new MemoryTarget();
    await runFlow(options(new MemorySource({ Patient: [alive] }), target, store));
    const pseudonym = pseudonymize(stageContext().pseudonymKey, 'epic', 'Patient', 'rd-1');
    target.locked.add(target.idOf('Patient_Profile__c', pseudonym) as string);
    const dead = version(alive, 2, 10, { deceasedBoolean: true });
    const source = new MemorySource({ Patient: [dead] });
    await runFlow(options(source, target, store));
    const [kept] = await store.listRefusedRemovals(FLOW);
    const refusedAt = Date.parse(kept?.lastAttemptAt ?? '');
    expect(Date.parse(kept?.nextAttemptAt ?? '') - refusedAt).toBe(60_000);

    const before = deletes(target);
    const notDue = await runFlow(
      options(source, target, store, { retryRemovals: 'due', quietWhenIdle: true }),
    );
    expect(deletes(target)).toBe(before);
    // Nothing happened: the quiet cycle leaves no run behind, but says what still waits.
    expect(notDue.idle).toBe(true);
    expect(notDue.removals).toEqual({ refused: 0, completed: 0, pending: 1 });

    const later = () => new Date(refusedAt + 61_000);
    await runFlow(options(source, target, store, { retryRemovals: 'due', now: later }));
    expect(deletes(target)).toBe(before + 1);
    const [again] = await store.listRefusedRemovals(FLOW);
    expect(again?.attempts).toBe(2);
    // The second refusal waits twice as long.
    expect(Date.parse(again?.nextAttemptAt ?? '') - Date.parse(again?.lastAttemptAt ?? '')).toBe(120_000);

    // A run started by hand does not wait.
    await runFlow(options(source, target, store));
    expect(deletes(target)).toBe(before + 2);
    expect((await store.listRefusedRemovals(FLOW))[0]?.attempts).toBe(3);
    await store.close();
  });

  it('a record delivered again drops its refused removal', async () => {
    const [a] = samples.practitioners as [JsonObject];
    const store = SqliteStateStore.open(join(tempDir(), 'state.sqlite'));
    const target = new MemoryTarget();
    await runFlow(options(new MemorySource({ Practitioner: [a] }), target, store));
    const ids = [...target.records.values()].map((r) => r.id);
    for (const id of ids) target.locked.add(id);
    const inactive = version(a, 2, 5, { active: false });
    const refused = await runFlow(options(new MemorySource({ Practitioner: [inactive] }), target, store));
    expect(refused.removals).toEqual({ refused: 2, completed: 0, pending: 2 });
    expect((await store.listRefusedRemovals(FLOW)).map((r) => r.object).sort()).toEqual([
      'Account',
      'Address_vod__c',
    ]);

    // Active again before the CRM let go: the provider is wanted after all, nothing is to be removed.
    const active = version(a, 3, 10, { active: true });
    const back = await runFlow(options(new MemorySource({ Practitioner: [active] }), target, store));
    expect(back.status).toBe('succeeded');
    expect(back.removals).toBeUndefined();
    expect(await store.listRefusedRemovals(FLOW)).toEqual([]);
    for (const id of ids) target.locked.delete(id);
    const before = deletes(target);
    await runFlow(options(new MemorySource({ Practitioner: [active] }), target, store));
    expect(deletes(target)).toBe(before);
    expect(target.records.size).toBe(2);
    expect(await store.ledgerBySource(FLOW, `Practitioner/${String(a.id)}`)).toHaveLength(2);
    await store.close();
  });

  it('within one run, a record refused removal on one page and delivered again on the next is kept', async () => {
    const [a] = samples.practitioners as [JsonObject];
    // Commits on their own thread, as `sluice run` makes them: a page's commit may end after the next
    // page's record step.
    const store = SqliteStateStore.open(join(tempDir(), 'state.sqlite'), { commitThread: true });
    const target = new MemoryTarget();
    await runFlow(options(new MemorySource({ Practitioner: [a] }), target, store));
    for (const r of target.records.values()) target.locked.add(r.id);
    // One record per page: the inactive version (its removal refused), then the active one again.
    const inactive = version(a, 2, 5, { active: false });
    const active = version(a, 3, 10, { active: true });
    const run = await runFlow(
      options(new MemorySource({ Practitioner: [inactive, active] }, 1), target, store),
    );
    expect(run.status).toBe('succeeded');
    expect(run.removals).toMatchObject({ refused: 2, pending: 0 });
    expect(await store.listRefusedRemovals(FLOW)).toEqual([]);
    target.locked.clear();
    const before = deletes(target);
    await runFlow(options(new MemorySource({ Practitioner: [active] }), target, store));
    expect(deletes(target)).toBe(before);
    expect(target.records.size).toBe(2);
    await store.close();
  });

  it('a source deletion the CRM refuses in part removes the rest and keeps the refused part', async () => {
    const [a, b] = samples.practitioners as [JsonObject, JsonObject];
    const store = SqliteStateStore.open(join(tempDir(), 'state.sqlite'));
    const target = new MemoryTarget();
    const audit = await AuditLog.open({
      store: join(tempDir(), 'audit.sqlite'),
      signer: (await testKeys()).signer,
    });
    await runFlow(options(new MemorySource({ Practitioner: [a, b] }), target, store, { audit }));
    const ref = `Practitioner/${String(a.id)}`;
    const account = (await store.ledgerBySource(FLOW, ref)).find((e) => e.object === 'Account');
    target.locked.add(account?.targetId as string);
    const deleting = new MemorySource({ Practitioner: [] });
    deleting.read = async function* () {
      yield {
        records: [],
        deletions: [{ resourceType: 'Practitioner', id: String(a.id), origin: 'test' }],
        checkpoint: '2026-11-10T00:00:00Z',
      };
    };
    const summary = await runFlow(options(deleting, target, store, { audit }));
    expect(summary.status).toBe('succeeded');
    // The address went; the account stays, and the stream moved on.
    expect(summary.deleted).toBe(1);
    expect(summary.removals).toEqual({ refused: 1, completed: 0, pending: 1 });
    expect(summary.checkpoints.Practitioner).toBe('2026-11-10T00:00:00Z');
    expect((await store.ledgerBySource(FLOW, ref)).map((e) => e.object)).toEqual(['Account']);
    expect(await store.listRefusedRemovals(FLOW)).toMatchObject([
      { object: 'Account', sourceRef: ref, cause: 'source-deletion', codes: ['ENTITY_IS_LOCKED'] },
    ]);
    const entry = (await audit.query({})).entries.find((e) => e.reason === 'removal-refused');
    expect(entry?.details).toMatchObject({ object: 'Account', cause: 'source-deletion', source: ref });
    expect(await store.ledgerBySource(FLOW, `Practitioner/${String(b.id)}`)).toHaveLength(2);

    target.locked.clear();
    const later = await runFlow(options(new MemorySource({ Practitioner: [] }), target, store, { audit }));
    expect(later.deleted).toBe(1);
    expect(later.removals).toEqual({ refused: 0, completed: 1, pending: 0 });
    expect(await store.ledgerBySource(FLOW, ref)).toEqual([]);
    await audit.close();
    await store.close();
  });

  it('an answer the CRM marks as transient still fails the page, which the next run repeats', async () => {
    const [p] = samples.patients as [JsonObject];
    const alive = living(p, 'rt-1');
    const store = SqliteStateStore.open(join(tempDir(), 'state.sqlite'));
    const target = new MemoryTarget();
    await runFlow(options(new MemorySource({ Patient: [alive] }), target, store));
    const remove = target.delete.bind(target);
    target.delete = async (ids) =>
      ids.map(() => ({ status: 'retry' as const, codes: ['UNABLE_TO_LOCK_ROW'] }));
    const dead = version(alive, 2, 10, { deceasedBoolean: true });
    const failed = await runFlow(options(new MemorySource({ Patient: [dead] }), target, store));
    expect(failed.status).toBe('failed');
    expect(failed.error?.code).toBe('TGT_HTTP_ERROR');
    expect(await store.listRefusedRemovals(FLOW)).toEqual([]);
    target.delete = remove;
    const retried = await runFlow(options(new MemorySource({ Patient: [dead] }), target, store));
    expect(retried.retracted).toBe(1);
    expect(target.count('Patient_Profile__c')).toBe(0);
    await store.close();
  });

  it('a transient answer to the retry of a refused removal leaves it waiting, and the run goes on', async () => {
    const [p] = samples.patients as [JsonObject];
    const alive = living(p, 'rw-1');
    const newcomer = living(p, 'rw-2');
    const store = SqliteStateStore.open(join(tempDir(), 'state.sqlite'));
    const target = new MemoryTarget();
    await runFlow(options(new MemorySource({ Patient: [alive] }), target, store));
    const pseudonym = pseudonymize(stageContext().pseudonymKey, 'epic', 'Patient', 'rw-1');
    target.locked.add(target.idOf('Patient_Profile__c', pseudonym) as string);
    const dead = version(alive, 2, 10, { deceasedBoolean: true });
    await runFlow(options(new MemorySource({ Patient: [dead] }), target, store));
    const remove = target.delete.bind(target);
    target.delete = async (ids) =>
      ids.map(() => ({ status: 'retry' as const, codes: ['UNABLE_TO_LOCK_ROW'] }));
    const arriving = version(newcomer, 1, 20);
    const run = await runFlow(options(new MemorySource({ Patient: [dead, arriving] }), target, store));
    expect(run.status).toBe('succeeded');
    expect(run.created).toBe(1);
    expect(run.removals).toEqual({ refused: 0, completed: 0, pending: 1 });
    expect(await store.listRefusedRemovals(FLOW)).toMatchObject([
      { attempts: 2, codes: ['UNABLE_TO_LOCK_ROW'], cause: 'withheld-retraction' },
    ]);
    target.delete = remove;
    target.locked.clear();
    const done = await runFlow(options(new MemorySource({ Patient: [dead, arriving] }), target, store));
    expect(done.removals).toEqual({ refused: 0, completed: 1, pending: 0 });
    await store.close();
  });
});
