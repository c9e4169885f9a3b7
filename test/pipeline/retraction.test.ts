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

// Retraction: a record a withhold rule (or the provenance policy) now keeps back had been delivered by
// an earlier run; the rule decides whether that copy stays at the target or is removed there.

const samples = stampedSamples({ patients: 1, practitioners: 3 });
const tempDir = tempDirs('sluice-retract-');

const deceasedRule = (delivered?: 'keep' | 'delete'): WithholdRuleSpec => ({
  resourceType: 'Patient',
  when: 'deceased.exists() and deceased != false',
  reason: 'deceased',
  ...(delivered === undefined ? {} : { delivered }),
});

function options(
  source: MemorySource,
  target: MemoryTarget,
  store: SqliteStateStore,
  rules: WithholdRuleSpec[],
  extra: Partial<RunFlowOptions> = {},
): RunFlowOptions {
  return {
    flow: 'retract-flow',
    definitionHash: 'hash-1',
    source,
    target,
    store,
    stages: stageContext({ withhold: compileWithholdPolicy(rules) }),
    maxBatch: 200,
    logger: silentLogger,
    ...extra,
  };
}

describe('withheld after delivery', () => {
  it('`delivered: delete` removes the profile an earlier run sent once the patient is recorded as deceased, and only once', async () => {
    const [p] = samples.patients as [JsonObject];
    const alive = living(p, 'r-1');
    const dead = version(alive, 2, 10, { deceasedDateTime: '2026-11-02T08:00:00Z' });
    const store = SqliteStateStore.open(join(tempDir(), 'state.sqlite'));
    const target = new MemoryTarget();
    const pseudonym = pseudonymize(stageContext().pseudonymKey, 'epic', 'Patient', 'r-1');
    const audit = await AuditLog.open({
      store: join(tempDir(), 'audit.sqlite'),
      signer: (await testKeys()).signer,
    });

    const first = await runFlow(
      options(new MemorySource({ Patient: [alive] }), target, store, [deceasedRule('delete')], { audit }),
    );
    expect(first.delivered).toBe(1);
    expect(target.count('Patient_Profile__c')).toBe(1);
    expect(await store.ledgerBySource('retract-flow', pseudonym)).toHaveLength(1);

    const second = await runFlow(
      options(new MemorySource({ Patient: [dead] }), target, store, [deceasedRule('delete')], { audit }),
    );
    expect(second.status).toBe('succeeded');
    expect(second.withholdReasons).toEqual({ deceased: 1 });
    expect(second.retracted).toBe(1);
    expect(target.count('Patient_Profile__c')).toBe(0);
    expect(await store.ledgerBySource('retract-flow', pseudonym)).toEqual([]);

    // Audited by pseudonym, with the rule's reason; the clear id appears nowhere in the trail.
    const entries = (await audit.query({ subject: pseudonym })).entries;
    const retraction = entries.find((e) => e.reason === 'withheld-retraction');
    expect(retraction?.details).toMatchObject({ stream: 'Patient', because: 'deceased' });
    expect(JSON.stringify((await audit.query({})).entries)).not.toContain('r-1');

    // The same version read again (an overlap re-read) is skipped: nothing more is deleted.
    const third = await runFlow(
      options(new MemorySource({ Patient: [dead] }), target, store, [deceasedRule('delete')], { audit }),
    );
    expect(third.retracted).toBe(0);
    expect(third.skipped).toBe(1);
    expect(target.requests.filter((r) => r.object === 'delete')).toHaveLength(1);

    // A correction (not deceased after all) is delivered again.
    const corrected = version(alive, 3, 20);
    const fourth = await runFlow(
      options(new MemorySource({ Patient: [corrected] }), target, store, [deceasedRule('delete')], { audit }),
    );
    expect(fourth.created).toBe(1);
    expect(target.count('Patient_Profile__c')).toBe(1);
    await audit.close();
    await store.close();
  });

  it('keeps what was delivered when the rule says `keep` or says nothing', async () => {
    const [p] = samples.patients as [JsonObject];
    for (const rule of [deceasedRule('keep'), deceasedRule()]) {
      const alive = living(p, 'k-1');
      const store = SqliteStateStore.open(join(tempDir(), 'state.sqlite'));
      const target = new MemoryTarget();
      await runFlow(options(new MemorySource({ Patient: [alive] }), target, store, [rule]));
      const dead = version(alive, 2, 10, { deceasedBoolean: true });
      const later = await runFlow(options(new MemorySource({ Patient: [dead] }), target, store, [rule]));
      expect(later.withholdReasons).toEqual({ deceased: 1 });
      expect(later.retracted).toBe(0);
      expect(target.count('Patient_Profile__c')).toBe(1);
      expect(target.requests.some((r) => r.object === 'delete')).toBe(false);
      await store.close();
    }
  });

  it('removes a provider account with its addresses, children first, when the rule retracts inactive providers', async () => {
    const rule: WithholdRuleSpec = {
      resourceType: 'Practitioner',
      when: 'active = false',
      reason: 'inactive',
      delivered: 'delete',
    };
    const [a, b] = samples.practitioners as [JsonObject, JsonObject];
    const store = SqliteStateStore.open(join(tempDir(), 'state.sqlite'));
    const target = new MemoryTarget();
    await runFlow(options(new MemorySource({ Practitioner: [a, b] }), target, store, [rule]));
    const before = target.records.size;
    const ofA = [...target.records.entries()].filter(([k, r]) =>
      `${k}${JSON.stringify(r.fields)}`.includes(String(a.id)),
    );
    expect(ofA.map(([k]) => k.split('|')[0]).sort()).toEqual(['Account', 'Address_vod__c']);

    const deletedOrder: string[] = [];
    const remove = target.delete.bind(target);
    target.delete = async (ids) => {
      for (const id of ids) {
        const key = [...target.records.entries()].find(([, v]) => v.id === id)?.[0];
        deletedOrder.push(String(key?.split('|')[0]));
      }
      return remove(ids);
    };
    const inactive = version(a, 2, 5, { active: false });
    const later = await runFlow(
      options(new MemorySource({ Practitioner: [inactive] }), target, store, [rule]),
    );
    expect(later.status).toBe('succeeded');
    expect(later.retracted).toBe(2);
    expect(deletedOrder).toEqual(['Address_vod__c', 'Account']);
    expect(target.records.size).toBe(before - 2);
    expect(await store.ledgerBySource('retract-flow', `Practitioner/${String(a.id)}`)).toEqual([]);
    // The other provider is untouched.
    expect(await store.ledgerBySource('retract-flow', `Practitioner/${String(b.id)}`)).toHaveLength(2);
    await store.close();
  });

  it('a record newly labelled sensitive is removed at the target unless the flow keeps deliveries', async () => {
    const [a] = samples.practitioners as [JsonObject];
    const next = version(a, 2, 5);
    const labelled = {
      ...next,
      meta: {
        ...(next.meta as JsonObject),
        security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: '42CFRPart2' }],
      },
    };
    for (const [retractSensitive, left] of [
      [undefined, 0],
      [false, 2],
    ] as const) {
      const store = SqliteStateStore.open(join(tempDir(), 'state.sqlite'));
      const target = new MemoryTarget();
      const stages = stageContext({
        withhold: compileWithholdPolicy([]),
        refuseSecurityLabels: new Set(['42CFRPart2']),
        ...(retractSensitive === undefined ? {} : { retractSensitive }),
      });
      await runFlow({ ...options(new MemorySource({ Practitioner: [a] }), target, store, []), stages });
      expect(target.records.size).toBe(2);
      const later = await runFlow({
        ...options(new MemorySource({ Practitioner: [labelled] }), target, store, []),
        stages,
      });
      expect(later.withholdReasons).toEqual({ 'provenance-sensitive-origin': 1 });
      expect(target.records.size).toBe(left);
      await store.close();
    }
  });

  it('within one run, a later version decides: delivered then withheld is removed, withheld then delivered stays', async () => {
    const [p] = samples.patients as [JsonObject];
    const alive = living(p, 'o-1');
    const dead = version(alive, 2, 10, { deceasedDateTime: '2026-11-02T08:00:00Z' });
    const revived = version(alive, 3, 20);
    const rules = [deceasedRule('delete')];
    for (const pageSize of [1, 3]) {
      // Alive, then deceased: one page or two, pipelined (page 2 is prepared while page 1 is sent).
      const target = new MemoryTarget();
      const store = SqliteStateStore.open(join(tempDir(), 'state.sqlite'));
      const summary = await runFlow(
        options(new MemorySource({ Patient: [alive, dead] }, pageSize), target, store, rules),
      );
      expect(summary.status).toBe('succeeded');
      expect(target.count('Patient_Profile__c')).toBe(0);
      const pseudonym = pseudonymize(stageContext().pseudonymKey, 'epic', 'Patient', 'o-1');
      expect(await store.ledgerBySource('retract-flow', pseudonym)).toEqual([]);

      // Deceased, then corrected: the correction stands.
      const target2 = new MemoryTarget();
      const store2 = SqliteStateStore.open(join(tempDir(), 'state.sqlite'));
      const again = await runFlow(
        options(new MemorySource({ Patient: [alive, dead, revived] }, pageSize), target2, store2, rules),
      );
      expect(again.status).toBe('succeeded');
      expect(target2.count('Patient_Profile__c')).toBe(1);
      expect(await store2.ledgerBySource('retract-flow', pseudonym)).toHaveLength(1);
      await store.close();
      await store2.close();
    }
  });
});
