import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadR4Definitions } from '../../src/core/fhir/definitions.ts';
import type { JsonObject } from '../../src/core/fhir/resource.ts';
import { AllowlistSchema } from '../../src/core/policy/allowlist.ts';
import type { Source, SourcePage } from '../../src/core/ports/source.ts';
import { AuditLog } from '../../src/engine/audit/index.ts';
import { testKeys } from '../../src/engine/audit/testing.ts';
import { type RunFlowOptions, runFlow } from '../../src/engine/pipeline/run-flow.ts';
import { SqliteStateStore } from '../../src/engine/store/sqlite-store.ts';
import { privacyConsent } from '../../src/testkit/consents.ts';
import { MemorySource, MemoryTarget, sampleResources, silentLogger, stageContext, stamp } from './fakes.ts';

let practitioners: JsonObject[];
let organizations: JsonObject[];
let patients: JsonObject[];
const dirs: string[] = [];

beforeAll(async () => {
  loadR4Definitions();
  organizations = stamp(await sampleResources('Organization', 4), Date.parse('2026-11-01T00:00:00Z'));
  practitioners = stamp(await sampleResources('Practitioner', 7), Date.parse('2026-11-02T00:00:00Z'));
  patients = stamp(await sampleResources('Patient', 1), Date.parse('2026-11-03T00:00:00Z'));
});

afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A target that answers after a delay, and says whether a request is in flight. */
class SlowTarget extends MemoryTarget {
  #busy = 0;
  readonly #delayMs: number;
  constructor(delayMs: number) {
    super();
    this.#delayMs = delayMs;
  }
  override async upsert(...args: Parameters<MemoryTarget['upsert']>): ReturnType<MemoryTarget['upsert']> {
    this.#busy++;
    try {
      await new Promise((resolve) => setTimeout(resolve, this.#delayMs));
      return await super.upsert(...args);
    } finally {
      this.#busy--;
    }
  }
  get busy(): boolean {
    return this.#busy > 0;
  }
}

function lastUpdatedOf(resource: JsonObject | undefined): string {
  return String((resource?.meta as { lastUpdated?: string } | undefined)?.lastUpdated);
}

function storePath(): string {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-run-'));
  dirs.push(dir);
  return join(dir, 'state.sqlite');
}

function options(
  source: Source,
  target: MemoryTarget,
  store: SqliteStateStore,
  extra: Partial<RunFlowOptions> = {},
): RunFlowOptions {
  return {
    flow: 'test-flow',
    definitionHash: 'hash-1',
    source,
    target,
    store,
    stages: stageContext(),
    maxBatch: 200,
    logger: silentLogger,
    ...extra,
  };
}

describe('runFlow', () => {
  it('delivers parents before children and records a checkpoint per stream', async () => {
    const source = new MemorySource({
      Organization: organizations,
      Practitioner: practitioners,
      Patient: patients,
    });
    const target = new MemoryTarget();
    const store = SqliteStateStore.open(storePath());
    const summary = await runFlow(options(source, target, store));
    expect(summary.status).toBe('succeeded');
    expect(summary.read).toBe(organizations.length + practitioners.length + patients.length);
    expect(summary.delivered).toBe(target.records.size);
    expect(target.count('Patient_Profile__c')).toBe(1);
    // Within each page the Account request precedes the Address request.
    const objects = target.requests.map((r) => r.object);
    expect(objects.indexOf('Account')).toBeLessThan(objects.indexOf('Address_vod__c'));
    expect((await store.getCheckpoint('test-flow', 'Practitioner'))?.position).toBe(
      lastUpdatedOf(practitioners.at(-1)),
    );
    await store.close();
  });

  it("writes a flow's stated basis for moving patient data without consent into the run's first audit entry", async () => {
    // The longest basis a flow file may state, stored in a real trail.
    const basis =
      `HIPAA 45 CFR 164.506(c)(1): the covered entity's own health care operations; ${'x'.repeat(256)}`.slice(
        0,
        256,
      );
    const audit = await AuditLog.open({
      store: join(dirname(storePath()), 'audit.sqlite'),
      signer: (await testKeys()).signer,
    });
    const store = SqliteStateStore.open(storePath());
    const source = new MemorySource({ Patient: patients });
    const first = await runFlow(
      options(source, new MemoryTarget(), store, { audit, withoutConsentBasis: basis }),
    );
    expect(first.error).toBeUndefined();
    expect(first.status).toBe('succeeded');
    await runFlow(options(source, new MemoryTarget(), store, { audit, reset: true }));
    const starts = (await audit.query({ kind: 'run-start' })).entries;
    expect(starts.map((e) => e.details.withoutConsent)).toEqual([basis, undefined]);
    await audit.close();
    await store.close();
  });

  it('quarantines bad input with a specific code and goes on', async () => {
    const [a, b, c] = practitioners as [JsonObject, JsonObject, JsonObject];
    const records = [
      a,
      'not a resource',
      {
        resourceType: 'Practitioner',
        meta: { lastUpdated: '2026-11-02T00:00:01.500Z' },
        id: 'bad-date',
        birthDate: 'yesterday',
      },
      {
        ...b,
        id: 'wrong-npi',
        identifier: [{ system: 'http://hl7.org/fhir/sid/us-npi', value: '1234567890' }],
      },
      { resourceType: 'Observation', id: 'obs-1', status: 'final', code: { text: 'x' } },
      { resourceType: 'Practitioner', name: [{ family: 'NoId' }] },
      c,
    ];
    const source = new MemorySource({ Practitioner: records });
    const target = new MemoryTarget();
    const store = SqliteStateStore.open(storePath());
    const summary = await runFlow(options(source, target, store));
    expect(summary.status).toBe('succeeded');
    expect(summary.quarantineReasons).toEqual({
      REC_UNPARSEABLE: 1,
      REC_INVALID_FHIR: 1,
      MAP_INVALID_IDENTIFIER: 1,
      REC_UNSUPPORTED_TYPE: 1,
      MAP_REQUIRED_MISSING: 1,
    });
    expect(target.count('Account')).toBe(2);
    const entries = await store.listQuarantine({ flow: 'test-flow' });
    expect(entries).toHaveLength(5);
    const invalid = entries.find((e) => e.code === 'REC_INVALID_FHIR');
    expect(invalid?.stage).toBe('validate');
    expect(invalid?.sourceRef).toBe('Practitioner/bad-date');
    expect(invalid?.issues.some((i) => i.path.includes('birthDate'))).toBe(true);
    expect(invalid?.policyVersion).toMatch(/^allowlist=none;consent=none;mapping=fhir-r4-to-canonical@/);
    // The record is kept for release, and its issues never quote it.
    expect(JSON.parse((await store.readQuarantinePayload(String(invalid?.id))) ?? '{}').id).toBe('bad-date');
    expect(JSON.stringify(invalid?.issues)).not.toContain('yesterday');
    await store.close();
  });

  it('holds a page of patient profiles whose re-identification risk breaks the thresholds', async () => {
    const [p] = patients as [JsonObject];
    // Three people with the same birth year, ZIP3 and gender: one class of size 3 (k = 3).
    const three = ['r1', 'r2', 'r3'].map((id) => ({ ...p, id }));
    const risk = (minK: number) => ({
      object: 'Patient_Profile__c',
      minK,
      maxProsecutorRisk: 0.5,
      action: 'hold' as const,
    });
    const sent = await runFlow(
      options(new MemorySource({ Patient: three }), new MemoryTarget(), SqliteStateStore.open(storePath()), {
        risk: risk(3),
      }),
    );
    expect(sent.delivered).toBe(3);
    expect(sent.risk).toMatchObject({ minK: 3, held: 0 });
    const target = new MemoryTarget();
    const held = await runFlow(
      options(new MemorySource({ Patient: three }), target, SqliteStateStore.open(storePath()), {
        risk: risk(4),
      }),
    );
    expect(held.delivered).toBe(0);
    expect(target.count('Patient_Profile__c')).toBe(0);
    expect(held.withholdReasons).toEqual({ 'risk-below-threshold': 3 });
    expect(held.risk).toMatchObject({ minK: 3, belowThreshold: 1, held: 3 });
  });

  it('withholds deceased patients without quarantining them', async () => {
    const [p] = patients as [JsonObject];
    const dead = { ...p, id: 'dead-1', deceasedDateTime: '2020-01-01T00:00:00Z' };
    const source = new MemorySource({ Patient: [p, dead] });
    const target = new MemoryTarget();
    const store = SqliteStateStore.open(storePath());
    const summary = await runFlow(options(source, target, store));
    expect(summary.withholdReasons).toEqual({ deceased: 1 });
    expect(summary.quarantined).toBe(0);
    expect(target.count('Patient_Profile__c')).toBe(1);
    await store.close();
  });

  it('sends only what the recipient allowlist allows: drops and counts the rest, fails forbidden combinations', async () => {
    const allowlistOf = (objects: Record<string, string[]>) =>
      AllowlistSchema.parse({
        version: 'test@1',
        recipient: 'veeva',
        purpose: 'HOPERAT',
        owner: 'privacy-office',
        objects,
        forbidTogether: [
          { object: 'Patient_Profile__c', fields: ['Birth_Year__c', 'Zip3__c'], why: 'test rule' },
        ],
      });
    const allowed = {
      Account: ['RecordTypeId', 'LastName', 'Name', 'Sluice_Lineage__c'],
      Address_vod__c: ['Account_vod__r', 'Name'],
      Patient_Profile__c: ['Birth_Year__c', 'Zip3__c', 'Gender__c'],
    };
    const target = new MemoryTarget();
    const summary = await runFlow(
      options(
        new MemorySource({ Practitioner: practitioners.slice(0, 3), Patient: patients }),
        target,
        SqliteStateStore.open(storePath()),
        { stages: stageContext({ allowlist: allowlistOf(allowed) }) },
      ),
    );
    for (const [key, r] of target.records) {
      const object = key.split('|')[0] as keyof typeof allowed;
      for (const f of Object.keys(r.fields)) expect(allowed[object]).toContain(f);
    }
    expect(target.count('Account')).toBe(3);
    expect(summary.droppedFields?.['Account.FirstName']).toBe(3);
    expect(summary.droppedFields?.['Address_vod__c.City_vod__c']).toBeGreaterThan(0);
    expect(summary.quarantineReasons).toEqual({ POLICY_FORBIDDEN_COMBINATION: 1 });

    // An object the allowlist does not name at all fails the record.
    const strict = await runFlow(
      options(
        new MemorySource({ Practitioner: practitioners.slice(0, 2) }),
        new MemoryTarget(),
        SqliteStateStore.open(storePath()),
        {
          stages: stageContext({ allowlist: allowlistOf({ Account: allowed.Account }) }),
        },
      ),
    );
    expect(strict.quarantineReasons).toEqual({ POLICY_OBJECT_NOT_ALLOWED: 2 });
  });

  it('refuses records whose provenance shows a sensitive origin', async () => {
    const [a, b] = organizations as [JsonObject, JsonObject];
    const labelled = {
      ...b,
      meta: {
        ...(b.meta as object),
        security: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: '42CFRPart2' }],
      },
    };
    const store = SqliteStateStore.open(storePath());
    const target = new MemoryTarget();
    const summary = await runFlow(
      options(new MemorySource({ Organization: [a, labelled] }), target, store, {
        stages: stageContext({ refuseSecurityLabels: new Set(['42CFRPart2', 'PSY']) }),
      }),
    );
    expect(summary.withholdReasons).toEqual({ 'provenance-sensitive-origin': 1 });
    expect([...target.records.keys()].some((k) => k.includes(String(b.id)))).toBe(false);
    await store.close();
  });

  it('writes a record that appears twice in a page once, with its later content', async () => {
    const [a] = organizations as [JsonObject];
    const later = {
      ...a,
      name: 'Renamed Hospital',
      meta: { versionId: '2', lastUpdated: '2026-11-01T00:10:00Z' },
    };
    const source = new MemorySource({ Organization: [a, later] });
    const target = new MemoryTarget();
    const store = SqliteStateStore.open(storePath());
    const summary = await runFlow(options(source, target, store));
    expect(summary.created).toBe(target.records.size);
    const account = [...target.records.entries()].find(([k]) => k.startsWith('Account|'))?.[1];
    expect(account?.fields.Name).toBe('Renamed Hospital');
    await store.close();
  });

  it('does not write children of a rejected parent and quarantines the whole record', async () => {
    const rejected = practitioners[1] as JsonObject;
    const target = new MemoryTarget();
    target.behaviour = (w) =>
      w.object === 'Account' && w.externalId.endsWith(`/${String(rejected.id)}`)
        ? {
            status: 'rejected',
            codes: ['FIELD_CUSTOM_VALIDATION_EXCEPTION'],
            fields: ['Name'],
            message: 'rule',
          }
        : undefined;
    const source = new MemorySource({ Practitioner: practitioners });
    const store = SqliteStateStore.open(storePath());
    const summary = await runFlow(options(source, target, store));
    expect(summary.quarantineReasons).toEqual({ TGT_RECORD_REJECTED: 1 });
    const addresses = [...target.records.values()].filter((r) =>
      JSON.stringify(r.fields.Account_vod__r ?? '').includes(String(rejected.id)),
    );
    expect(addresses).toHaveLength(0);
    const [entry] = await store.listQuarantine({ flow: 'test-flow' });
    expect(entry?.stage).toBe('deliver');
    expect(entry?.issues[0]?.code).toBe('FIELD_CUSTOM_VALIDATION_EXCEPTION');
    // The checkpoint still moves: the record is accounted for.
    expect(summary.checkpoints.Practitioner).toBe(lastUpdatedOf(practitioners.at(-1)));
    await store.close();
  });

  it('with reject-batch, one refused record fails its whole batch and nothing of it is written', async () => {
    const rejected = organizations[1] as JsonObject;
    const target = new MemoryTarget();
    target.behaviour = (w) =>
      w.object === 'Account' && w.externalId.endsWith(`/${String(rejected.id)}`)
        ? { status: 'rejected', codes: ['FIELD_CUSTOM_VALIDATION_EXCEPTION'], fields: [], message: 'rule' }
        : undefined;
    const store = SqliteStateStore.open(storePath());
    const summary = await runFlow(
      options(new MemorySource({ Organization: organizations }, 10), target, store, {
        onItemFailure: 'reject-batch',
      }),
    );
    expect(target.count('Account')).toBe(0);
    expect(summary.quarantined).toBe(organizations.length);
    const codes = (await store.listQuarantine({ flow: 'test-flow' })).flatMap((q) =>
      q.issues.map((i) => i.code),
    );
    expect(codes).toContain('FIELD_CUSTOM_VALIDATION_EXCEPTION');
    expect(codes.filter((c) => c === 'ALL_OR_NONE_OPERATION_ROLLED_BACK')).toHaveLength(
      organizations.length - 1,
    );
    await store.close();
  });

  it('sends an ambiguous match to quarantine and never retries it', async () => {
    const target = new MemoryTarget();
    let asked = 0;
    target.behaviour = (w) => {
      if (w.object === 'Account' && w.externalId.endsWith(`/${String(organizations[0]?.id)}`)) {
        asked++;
        return { status: 'ambiguous' };
      }
      return undefined;
    };
    const store = SqliteStateStore.open(storePath());
    const summary = await runFlow(options(new MemorySource({ Organization: organizations }), target, store));
    expect(summary.quarantineReasons).toEqual({ TGT_AMBIGUOUS_MATCH: 1 });
    expect(asked).toBe(1);
    await store.close();
  });

  it('retries entries the target marks transient, and only those', async () => {
    const target = new MemoryTarget();
    let refusals = 2;
    target.behaviour = (w) => {
      if (
        w.object === 'Account' &&
        w.externalId.endsWith(`/${String(organizations[2]?.id)}`) &&
        refusals > 0
      ) {
        refusals--;
        return { status: 'retry', codes: ['UNABLE_TO_LOCK_ROW'] };
      }
      return undefined;
    };
    const store = SqliteStateStore.open(storePath());
    const summary = await runFlow({
      ...options(new MemorySource({ Organization: organizations }, 10), target, store),
    });
    expect(summary.status).toBe('succeeded');
    expect(summary.quarantined).toBe(0);
    expect(target.count('Account')).toBe(organizations.length);
    // Two retry rounds carried only the one refused Account.
    expect(target.requests.filter((r) => r.object === 'Account').map((r) => r.count)).toEqual([
      organizations.length,
      1,
      1,
    ]);
    await store.close();
  }, 20_000);

  it('after a failure mid-stream, resumes from the last committed page with no duplicates', async () => {
    const path = storePath();
    const source = new MemorySource({ Practitioner: practitioners }, 2);
    source.failAfterPages = 2;
    const target = new MemoryTarget();
    let store = SqliteStateStore.open(path);
    const failed = await runFlow(options(source, target, store));
    expect(failed.status).toBe('failed');
    expect(failed.error?.code).toBe('SRC_UNREACHABLE');
    const committed = lastUpdatedOf(practitioners[3]);
    expect((await store.getCheckpoint('test-flow', 'Practitioner'))?.position).toBe(committed);
    await store.close();

    // A new process: the store is reopened from disk.
    source.failAfterPages = undefined;
    store = SqliteStateStore.open(path);
    const resumed = await runFlow(options(source, target, store));
    expect(resumed.status).toBe('succeeded');
    expect(source.reads.at(-1)?.since).toBe(committed);
    // The record at the checkpoint instant comes again and is recognised as unchanged.
    expect(resumed.unchanged).toBeGreaterThan(0);
    expect(target.count('Account')).toBe(practitioners.length - 0);
    const runs = await store.listRuns('test-flow');
    expect(runs.map((r) => r.status)).toEqual(['succeeded', 'failed']);
    await store.close();
  });

  it('a target outage fails the page without moving its checkpoint', async () => {
    const target = new MemoryTarget();
    target.failRequests = 1;
    const store = SqliteStateStore.open(storePath());
    const summary = await runFlow(
      options(new MemorySource({ Organization: organizations }, 10), target, store),
    );
    expect(summary.status).toBe('failed');
    expect(summary.error?.code).toBe('TGT_UNREACHABLE');
    expect(await store.getCheckpoint('test-flow', 'Organization')).toBeUndefined();
    expect(await store.countLedger('test-flow')).toBe(0);
    await store.close();
  });

  it('refuses to continue from checkpoints of another flow definition unless reset', async () => {
    const source = new MemorySource({ Organization: organizations });
    const target = new MemoryTarget();
    const store = SqliteStateStore.open(storePath());
    await runFlow(options(source, target, store));
    const changed = await runFlow(options(source, target, store, { definitionHash: 'hash-2' }));
    expect(changed.status).toBe('failed');
    expect(changed.error?.code).toBe('STATE_DEFINITION_CHANGED');
    const reset = await runFlow(options(source, target, store, { definitionHash: 'hash-2', reset: true }));
    expect(reset.status).toBe('succeeded');
    expect(source.reads.at(-1)?.since).toBeUndefined();
    // Everything came again, and the ledger knew it was already there.
    expect(reset.delivered).toBe(0);
    expect(reset.unchanged).toBeGreaterThan(0);
    await store.close();
  });
});

describe('differential sync', () => {
  it('skips versions already processed when the overlap window re-reads them', async () => {
    const bad = {
      resourceType: 'Practitioner',
      id: 'bad-1',
      meta: { versionId: '1', lastUpdated: '2026-11-02T00:00:03.500Z' },
      birthDate: 'never',
    };
    const source = new MemorySource({ Practitioner: [...practitioners, bad] }, 100);
    const target = new MemoryTarget();
    const store = SqliteStateStore.open(storePath());
    const first = await runFlow(options(source, target, store, { overlapSeconds: 3600 }));
    expect(first.quarantined).toBe(1);
    const second = await runFlow(options(source, target, store, { overlapSeconds: 3600 }));
    // Everything came again through the overlap; nothing was re-mapped, re-sent or re-quarantined.
    expect(second.read).toBe(practitioners.length + 1);
    expect(second.skipped).toBe(practitioners.length + 1);
    expect(second.quarantined).toBe(0);
    expect(second.batches).toBe(0);
    expect(await store.countQuarantine('test-flow')).toBe(1);
    await store.close();
  });

  it('quarantines a record stamped in the future and does not move the checkpoint past now', async () => {
    const future = {
      ...(practitioners[0] as JsonObject),
      id: 'from-the-future',
      meta: { versionId: '1', lastUpdated: '2099-01-01T00:00:00Z' },
    };
    const source = new MemorySource({ Practitioner: [...practitioners.slice(1), future] }, 100);
    const store = SqliteStateStore.open(storePath());
    const summary = await runFlow(options(source, new MemoryTarget(), store));
    expect(summary.quarantineReasons).toEqual({ REC_FUTURE_TIMESTAMP: 1 });
    expect(summary.checkpoints.Practitioner).toBe(lastUpdatedOf(practitioners.at(-1)));
    await store.close();
  });

  it('judges stamps as times, whatever zone they are written in', async () => {
    // `…-10:00` text of an instant an hour ahead sorts before now; `…+14:00` text of one an hour ago
    // sorts after: as text, the first would pass the skew check and move the checkpoint past every
    // change of the next hour, and the second would be quarantined for nothing.
    const written = (ms: number, hours: number) => {
      const local = new Date(ms + hours * 3_600_000).toISOString().slice(0, 19);
      return `${local}${hours < 0 ? '-' : '+'}${String(Math.abs(hours)).padStart(2, '0')}:00`;
    };
    const now = Date.now();
    const ahead = written(now + 3_600_000, -10);
    const past = written(now - 3_600_000, 14);
    expect(ahead < new Date(now).toISOString() && past > new Date(now + 300_000).toISOString()).toBe(true);
    const [p0, p1] = practitioners as [JsonObject, JsonObject];
    const source = new MemorySource(
      {
        Practitioner: [
          { ...p0, id: 'written-west', meta: { versionId: '1', lastUpdated: ahead } },
          { ...p1, id: 'written-east', meta: { versionId: '1', lastUpdated: past } },
        ],
      },
      100,
    );
    const store = SqliteStateStore.open(storePath());
    const target = new MemoryTarget();
    const summary = await runFlow(options(source, target, store));
    expect(summary.quarantineReasons).toEqual({ REC_FUTURE_TIMESTAMP: 1 });
    const keys = [...target.records.keys()].join(' ');
    expect(keys).toContain('written-east');
    expect(keys).not.toContain('written-west');
    expect(await store.countQuarantine('test-flow')).toBe(1);
    // The checkpoint is the newest believable stamp, as the source wrote it.
    expect(summary.checkpoints.Practitioner).toBe(past);
    await store.close();
  });

  it("takes the later of a searching source's own position and the newest record, never one past the clock skew", async () => {
    const newest = lastUpdatedOf(practitioners.at(-1));
    const withCheckpoint = (checkpoint: string) => {
      const source = new MemorySource({ Practitioner: practitioners }, 100);
      const read = source.read.bind(source);
      source.read = async function* (stream: string, since: string | undefined) {
        const pages: SourcePage[] = [];
        for await (const page of read(stream, since)) pages.push(page);
        // A search answers even when nothing changed: one empty last page.
        if (pages.length === 0) pages.push({ records: [] });
        for (const [i, page] of pages.entries())
          yield i === pages.length - 1 ? { ...page, checkpoint } : page;
      };
      return source;
    };
    // One instant for both sides (two clock readings may fall in different milliseconds).
    const answered = new Date(Date.now() - 60_000).toISOString();
    const cases: [string, string][] = [
      // The server answered after the newest record: its time wins.
      [answered, answered],
      // An answer time older than the newest record does not move the checkpoint back.
      ['2001-01-01T00:00:00.000Z', newest],
      // One further ahead of the local clock than the skew allowed (300 s) is not believed.
      [new Date(Date.now() + 3_600_000).toISOString(), newest],
    ];
    for (const [given, expected] of cases) {
      const store = SqliteStateStore.open(storePath());
      const summary = await runFlow(options(withCheckpoint(given), new MemoryTarget(), store));
      expect(summary.status).toBe('succeeded');
      expect({ given, position: summary.checkpoints.Practitioner }).toEqual({ given, position: expected });
      await store.close();
    }
    // Positions compare as times, whatever zone they are written in: a later one given at -10:00 (text
    // that sorts before the stored one) still moves the checkpoint on; an earlier one does not.
    const store = SqliteStateStore.open(storePath());
    const target = new MemoryTarget();
    const first = new Date(Date.now() - 120_000).toISOString();
    expect((await runFlow(options(withCheckpoint(first), target, store))).checkpoints.Practitioner).toBe(
      first,
    );
    const inZone = (ms: number) => `${new Date(ms - 10 * 3_600_000).toISOString().slice(0, 19)}-10:00`;
    const later = inZone(Date.now() - 60_000);
    expect(later < first).toBe(true);
    expect((await runFlow(options(withCheckpoint(later), target, store))).checkpoints.Practitioner).toBe(
      later,
    );
    const earlier = inZone(Date.now() - 90_000);
    expect((await store.getCheckpoint('test-flow', 'Practitioner'))?.position).toBe(later);
    await runFlow(options(withCheckpoint(earlier), target, store));
    expect((await store.getCheckpoint('test-flow', 'Practitioner'))?.position).toBe(later);
    await store.close();
  });

  it('deletes at the target what was deleted at the source, children first', async () => {
    const target = new MemoryTarget();
    const store = SqliteStateStore.open(storePath());
    await runFlow(
      options(new MemorySource({ Practitioner: practitioners, Patient: patients }), target, store),
    );
    const before = target.records.size;
    const gonePractitioner = practitioners[0] as JsonObject;
    const gonePatient = patients[0] as JsonObject;
    const deletingSource = new MemorySource({ Practitioner: [], Patient: [] });
    deletingSource.read = async function* (stream: string) {
      yield {
        records: [],
        deletions: [
          stream === 'Practitioner'
            ? { resourceType: 'Practitioner', id: String(gonePractitioner.id), origin: 'test' }
            : { resourceType: 'Patient', id: String(gonePatient.id), origin: 'test' },
        ],
        checkpoint: '2026-11-10T00:00:00Z',
      };
    };
    const summary = await runFlow(options(deletingSource, target, store));
    expect(summary.status).toBe('succeeded');
    expect(target.count('Patient_Profile__c')).toBe(0);
    expect(
      [...target.records.keys()].some((k) => k.includes(`Practitioner/${String(gonePractitioner.id)}`)),
    ).toBe(false);
    expect(summary.deleted).toBe(before - target.records.size);
    expect(summary.checkpoints.Patient).toBe('2026-11-10T00:00:00Z');
    expect(await store.ledgerBySource('test-flow', `Practitioner/${String(gonePractitioner.id)}`)).toEqual(
      [],
    );
    await store.close();
  });

  it('refuses checkpoints taken against another environment, and --from decides explicitly', async () => {
    const source = new MemorySource({ Organization: organizations });
    const store = SqliteStateStore.open(storePath());
    await runFlow(options(source, new MemoryTarget(), store, { environment: 'ehr-a' }));
    const moved = await runFlow(options(source, new MemoryTarget(), store, { environment: 'ehr-b' }));
    expect(moved.error?.code).toBe('STATE_ENVIRONMENT_CHANGED');
    const from = await runFlow(
      options(source, new MemoryTarget(), store, { environment: 'ehr-b', from: '2026-11-01T00:00:02Z' }),
    );
    expect(from.status).toBe('succeeded');
    expect(source.reads.at(-1)?.since).toBe('2026-11-01T00:00:02Z');
    await store.close();
  });

  it('replays a window from the change log, idempotently', async () => {
    const { ChangeLogSource } = await import('../../src/engine/pipeline/change-log-source.ts');
    const target = new MemoryTarget();
    const store = SqliteStateStore.open(storePath());
    await runFlow(
      options(new MemorySource({ Organization: organizations }), target, store, { changeLogDays: 7 }),
    );
    // The CRM lost two accounts; a replay from the start re-sends exactly those.
    const lost = [...target.records.keys()].filter((k) => k.startsWith('Account|')).slice(0, 2);
    for (const k of lost) target.records.delete(k);
    const replaySource = new ChangeLogSource({
      system: 'epic' as never,
      streams: ['Organization'],
      store,
      flow: 'test-flow',
      pageSize: 2,
    });
    // A plain replay trusts the ledger: nothing changed, nothing is sent.
    const replay = await runFlow(options(replaySource, target, store, { replay: true }));
    expect(replay.read).toBe(organizations.length);
    expect(replay.skipped).toBe(0);
    expect(replay.delivered).toBe(0);
    // With --resend it writes everything again: the lost accounts come back, nothing is duplicated.
    const before = target.records.size;
    const resend = await runFlow(options(replaySource, target, store, { replay: true, resend: true }));
    expect(resend.status).toBe('succeeded');
    expect(resend.created).toBe(2);
    expect(target.records.size).toBe(before + 2);
    // A replay from a time reads only what changed from then.
    const window = await runFlow(
      options(replaySource, target, store, { replay: true, from: lastUpdatedOf(organizations.at(-1)) }),
    );
    expect(window.read).toBe(1);
    const checkpointsAfter = await store.listCheckpoints('test-flow');
    expect(checkpointsAfter[0]?.runId).not.toBe(replay.runId);
    await store.close();
  });
});

describe('consent at ingest and at send time', () => {
  const settings = {
    purpose: 'HOPERAT',
    recipient: { id: 'Organization/crm', role: 'IRCP' },
    policyVersion: 'test-policy@1',
    defaultDecision: 'deny' as const,
    refreshMs: 0,
  };
  const consentFor = (
    patientId: string,
    type: 'permit' | 'deny',
    lastUpdated: string,
    id = `c-${patientId}`,
  ) => privacyConsent(patientId, type, { lastUpdated, id });

  async function gateFor(): Promise<
    InstanceType<typeof import('../../src/engine/consent/consent-gate.ts').ConsentGate>
  > {
    const { ConsentGate } = await import('../../src/engine/consent/consent-gate.ts');
    return new ConsentGate(settings, 'epic', stageContext().pseudonymKey);
  }

  it('sends only patients whose consent permits, and says why the others stayed', async () => {
    const [p] = patients as [JsonObject];
    const a = { ...p, id: 'pa' };
    const b = { ...p, id: 'pb' };
    const c = { ...p, id: 'pc' };
    const source = new MemorySource({
      Consent: [
        consentFor('pa', 'permit', '2026-11-01T00:00:00Z'),
        consentFor('pb', 'deny', '2026-11-01T00:00:01Z'),
      ],
      Patient: [a, b, c],
    });
    const target = new MemoryTarget();
    const store = SqliteStateStore.open(storePath());
    const summary = await runFlow(options(source, target, store, { consent: await gateFor() }));
    expect(summary.status).toBe('succeeded');
    expect(target.count('Patient_Profile__c')).toBe(1);
    // pb opted out; pc has no consent and the default is deny.
    expect(summary.withholdReasons).toEqual({ 'consent-deny': 2 });
    expect(summary.byStream.Consent?.read).toBe(2);
    await store.close();
  });

  it('a revocation committed before the send stops the send; one after it deletes what was sent', async () => {
    const [p] = patients as [JsonObject];
    const source = new MemorySource({
      Consent: [
        consentFor('pa', 'permit', '2026-11-01T00:00:00Z'),
        consentFor('pb', 'permit', '2026-11-01T00:00:01Z'),
      ],
      Patient: [
        { ...p, id: 'pa' },
        { ...p, id: 'pb' },
      ],
    });
    // Between ingest and send, pb's consent is revoked at the source (seen by the send-time refresh).
    const read = source.read.bind(source);
    let consentReads = 0;
    source.read = async function* (stream: string, since: string | undefined, signal?: AbortSignal) {
      if (stream === 'Consent' && consentReads++ > 0) {
        yield {
          records: [
            { stream, resource: consentFor('pb', 'deny', '2026-11-01T00:00:05Z'), origin: 'refresh' },
          ],
        };
        return;
      }
      yield* read(stream, since, signal as AbortSignal);
    };
    const target = new MemoryTarget();
    const store = SqliteStateStore.open(storePath());
    const gate = await gateFor();
    const first = await runFlow(options(source, target, store, { consent: gate }));
    expect(first.withholdReasons).toEqual({ 'consent-changed-before-send': 1 });
    expect(target.count('Patient_Profile__c')).toBe(1);

    // Later pa revokes too: the next run deletes pa's profile from the CRM (suppression).
    const later = new MemorySource({
      Consent: [consentFor('pa', 'deny', '2026-11-02T00:00:00Z')],
      Patient: [],
    });
    const second = await runFlow(options(later, target, store, { consent: await gateFor() }));
    expect(second.status).toBe('succeeded');
    expect(second.suppressed).toBe(1);
    expect(target.count('Patient_Profile__c')).toBe(0);
    await store.close();
  });

  it('never mixes geographies or consent scopes in one batch', async () => {
    const [p] = patients as [JsonObject];
    const at = (id: string, postalCode: string) => ({
      ...p,
      id,
      address: [{ line: ['1 Main St'], city: 'X', state: 'MA', postalCode, country: 'US' }],
    });
    const people = [at('e1', '02138'), at('w1', '94110'), at('e2', '02139'), at('w2', '94112')];
    const source = new MemorySource(
      {
        Consent: people.map((x, i) => consentFor(String(x.id), 'permit', `2026-11-01T00:00:0${i}Z`)),
        Patient: people,
      },
      10,
    );
    const target = new MemoryTarget();
    const store = SqliteStateStore.open(storePath());
    const summary = await runFlow(
      options(source, target, store, { consent: await gateFor(), purpose: 'HOPERAT' }),
    );
    expect(summary.delivered).toBe(4);
    const profileBatches = target.batchesSeen.filter((b) => b[0]?.object === 'Patient_Profile__c');
    expect(profileBatches).toHaveLength(2);
    for (const batch of profileBatches) {
      expect(new Set(batch.map((w) => String(w.fields.Zip3__c)[0])).size).toBe(1);
    }
    await store.close();
  });

  it('refuses a permit that rests only on a bare opt-in policy rule when the flow treats it as partial consent', async () => {
    const [p] = patients as [JsonObject];
    const { provision: _provision, ...bare } = consentFor('pz', 'permit', '2026-11-01T00:00:00Z');
    const optIn = {
      ...bare,
      policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTIN' }] },
    };
    const run = async (refuse: boolean) =>
      runFlow(
        options(
          new MemorySource({ Consent: [optIn], Patient: [{ ...p, id: 'pz' }] }),
          new MemoryTarget(),
          SqliteStateStore.open(storePath()),
          {
            consent: await gateFor(),
            stages: stageContext(refuse ? { refuseConsentBasis: new Set(['base-policy']) } : {}),
          },
        ),
      );
    expect((await run(false)).delivered).toBe(1);
    const refused = await run(true);
    expect(refused.delivered).toBe(0);
    expect(refused.withholdReasons).toEqual({ 'provenance-partial-consent': 1 });
  });

  it('a consent granted later is an event: the person withheld before is read again and sent', async () => {
    const [p] = patients as [JsonObject];
    const patient = { ...p, id: 'pl' };
    const store = SqliteStateStore.open(storePath());
    const target = new MemoryTarget();
    const first = await runFlow(
      options(
        new MemorySource({ Consent: [consentFor('pl', 'deny', '2026-11-01T00:00:00Z')], Patient: [patient] }),
        target,
        store,
        {
          consent: await gateFor(),
        },
      ),
    );
    expect(first.withholdReasons).toEqual({ 'consent-deny': 1 });
    // The patient record does not change; only the consent does (same consent, a new version).
    const later = new MemorySource({
      Consent: [consentFor('pl', 'permit', '2026-11-05T00:00:00Z')],
      Patient: [patient],
    });
    const second = await runFlow(options(later, target, store, { consent: await gateFor() }));
    expect(later.fetched).toEqual(['Patient/pl']);
    expect(second.reconsidered).toBe(1);
    expect(second.delivered).toBe(1);
    expect(target.count('Patient_Profile__c')).toBe(1);
    await store.close();
  });

  it('applies a consent stamped beyond the clock skew without moving the consent checkpoint past it', async () => {
    const [p] = patients as [JsonObject];
    const ahead = new Date(Date.now() + 3_600_000).toISOString();
    const source = new MemorySource({
      Consent: [
        consentFor('pa', 'permit', '2026-11-01T00:00:00Z'),
        // The source's clock runs an hour ahead for this one: the revocation still counts …
        consentFor('pb', 'deny', ahead),
      ],
      Patient: [
        { ...p, id: 'pa' },
        { ...p, id: 'pb' },
      ],
    });
    const store = SqliteStateStore.open(storePath());
    const target = new MemoryTarget();
    const summary = await runFlow(options(source, target, store, { consent: await gateFor() }));
    expect(summary.delivered).toBe(1);
    expect([...target.records.keys()].join(' ')).not.toContain('pb');
    // … but the stream reads on from the newest believable stamp, so consents stamped correctly in
    // the coming hour are not skipped.
    expect(summary.checkpoints.Consent).toBe('2026-11-01T00:00:00.000Z');
    await store.close();
  });

  it('quarantines a malformed consent with a specific code', async () => {
    const source = new MemorySource({
      Consent: [{ resourceType: 'Consent', id: 'broken', meta: { lastUpdated: '2026-11-01T00:00:00Z' } }],
      Patient: [],
    });
    const store = SqliteStateStore.open(storePath());
    const summary = await runFlow(options(source, new MemoryTarget(), store, { consent: await gateFor() }));
    expect(summary.quarantined).toBe(1);
    expect(Object.keys(summary.quarantineReasons)[0]).toMatch(/^CONSENT_/);
    await store.close();
  });
});

describe('adversarial input', () => {
  it('an older version arriving after a newer one is quarantined and never overwrites it', async () => {
    const [o] = organizations as [JsonObject];
    const newer = { ...o, name: 'Newer Name', meta: { versionId: '3', lastUpdated: '2026-11-10T00:00:00Z' } };
    const older = { ...o, name: 'Older Name', meta: { versionId: '2', lastUpdated: '2026-11-05T00:00:00Z' } };
    const target = new MemoryTarget();
    const store = SqliteStateStore.open(storePath());
    await runFlow(options(new MemorySource({ Organization: [newer] }), target, store));
    // A replayed export brings the old version back.
    const late = await runFlow(
      options(new MemorySource({ Organization: [older] }), target, store, { from: '2026-11-01T00:00:00Z' }),
    );
    expect(late.quarantineReasons).toEqual({ REC_OUT_OF_ORDER: 1 });
    const account = [...target.records.entries()].find(([k]) => k.startsWith('Account|'))?.[1];
    expect(account?.fields.Name).toBe('Newer Name');
    await store.close();
  });

  it('a newer version of a quarantined record supersedes its entry; a replay supersedes nothing', async () => {
    const [p] = practitioners as [JsonObject];
    const npi = (value: string) => [{ system: 'http://hl7.org/fhir/sid/us-npi', value }];
    const version = (versionId: string, day: string, identifier: JsonObject['identifier']): JsonObject => ({
      ...p,
      identifier,
      meta: { versionId, lastUpdated: `2026-11-${day}T00:00:00Z` },
    });
    const good = p.identifier ?? [];
    const target = new MemoryTarget();
    const store = SqliteStateStore.open(storePath());
    const run = (record: JsonObject, extra: Partial<RunFlowOptions> = {}) =>
      runFlow(options(new MemorySource({ Practitioner: [record] }), target, store, extra));
    const entries = async () =>
      (await store.listQuarantine({ flow: 'test-flow' })).map((e) => [e.runId, e.status, e.payloadKept]);

    // v1 carries a malformed NPI: held back.
    const first = await run(version('1', '05', npi('1234567890')));
    expect(first.quarantineReasons).toEqual({ MAP_INVALID_IDENTIFIER: 1 });
    // v2, fixed at the source, is delivered: v1's entry is closed and its record erased.
    const second = await run(version('2', '06', good));
    expect(second.delivered).toBeGreaterThan(0);
    expect(await entries()).toEqual([[first.runId, 'superseded', false]]);
    // v3 breaks again: a new entry, open.
    const third = await run(version('3', '07', npi('1234567890')));
    expect(await entries()).toEqual([
      [first.runId, 'superseded', false],
      [third.runId, 'open', true],
    ]);
    // A replay re-sends an older version: the open entry of the newer one stays open.
    await run(version('2', '06', good), { replay: true });
    expect(await store.countQuarantine('test-flow', 'open')).toBe(1);
    // An older version arriving late is held back as out of order and supersedes nothing either.
    const late = await run(version('1', '05', npi('1234567890')), { from: '2026-11-01T00:00:00Z' });
    expect(late.quarantineReasons).toEqual({ REC_OUT_OF_ORDER: 1 });
    expect((await entries()).map(([, status]) => status)).toEqual(['superseded', 'open', 'open']);
    await store.close();
  });

  it('orders versions by time, not by how their stamps are written', async () => {
    const [o] = organizations as [JsonObject];
    const version = (versionId: string, lastUpdated: string, name: string) => ({
      ...o,
      name,
      meta: { versionId, lastUpdated },
    });
    const target = new MemoryTarget();
    const store = SqliteStateStore.open(storePath());
    /** Reads one version of the Organization; the reasons it was quarantined and the Account's name. */
    const read = async (versionId: string, lastUpdated: string, name: string) => {
      const source = new MemorySource({ Organization: [version(versionId, lastUpdated, name)] });
      const summary = await runFlow(options(source, target, store, { from: '2026-11-01T00:00:00Z' }));
      const account = [...target.records.entries()].find(([k]) => k.startsWith('Account|'))?.[1];
      return { reasons: summary.quarantineReasons, name: account?.fields.Name };
    };
    // 05:00Z, written in +05:00 …
    expect(await read('1', '2026-11-05T10:00:00+05:00', 'One')).toEqual({ reasons: {}, name: 'One' });
    // … then 06:00Z, whose text sorts before it: newer, sent.
    expect(await read('2', '2026-11-05T06:00:00Z', 'Two')).toEqual({ reasons: {}, name: 'Two' });
    // A server that leaves out zero milliseconds: `…06:00:00.120Z` is newer than `…06:00:00Z`.
    expect(await read('3', '2026-11-05T06:00:00.120Z', 'Three')).toEqual({ reasons: {}, name: 'Three' });
    // 04:00Z written in -02:00 sorts after all of them, and is older: quarantined, not sent.
    expect(await read('0', '2026-11-05T02:00:00-02:00', 'Zero')).toEqual({
      reasons: { REC_OUT_OF_ORDER: 1 },
      name: 'Three',
    });
    await store.close();
  });

  it('with two pages in flight, a version in the page being sent still counts for the next page', async () => {
    const [a, b, c] = organizations as [JsonObject, JsonObject, JsonObject];
    const at = (versionId: string, lastUpdated: string) => ({ versionId, lastUpdated });
    const newerA = { ...a, name: 'Newer Name', meta: at('3', '2026-11-10T00:00:00Z') };
    const olderA = { ...a, name: 'Older Name', meta: at('2', '2026-11-05T00:00:00Z') };
    const sameB = { ...b, meta: at('1', '2026-11-06T00:00:00Z') };
    const onlyC = { ...c, meta: at('1', '2026-11-07T00:00:00Z') };
    // A slow target: the second page goes through the record stages while the first is being sent.
    const target = new SlowTarget(30);
    const store = SqliteStateStore.open(storePath());
    let overlapped = false;
    const getSeen = store.getSeen.bind(store);
    store.getSeen = (...args) => {
      overlapped ||= target.busy;
      return getSeen(...args);
    };
    const summary = await runFlow(
      options(new MemorySource({ Organization: [newerA, sameB, olderA, sameB, onlyC] }, 2), target, store),
    );
    expect(summary.status).toBe('succeeded');
    expect(overlapped).toBe(true);
    expect(summary.quarantineReasons).toEqual({ REC_OUT_OF_ORDER: 1 });
    expect(summary.skipped).toBe(1);
    const names = [...target.records.entries()]
      .filter(([k]) => k.startsWith('Account|'))
      .map(([, v]) => v.fields.Name);
    expect(names).toContain('Newer Name');
    expect(names).not.toContain('Older Name');
    await store.close();
  });

  it('a page that fails to send stops the run before the page prepared behind it is committed', async () => {
    const target = new SlowTarget(30);
    target.failRequests = 1;
    const store = SqliteStateStore.open(storePath());
    const summary = await runFlow(
      options(new MemorySource({ Organization: organizations }, 2), target, store),
    );
    expect(summary.status).toBe('failed');
    expect(summary.error?.code).toBe('TGT_UNREACHABLE');
    expect(await store.getCheckpoint('test-flow', 'Organization')).toBeUndefined();
    const refs = organizations.map((o) => `Organization/${String(o.id)}`);
    expect((await store.getSeen('test-flow', 'Organization', refs)).size).toBe(0);
    await store.close();
  });

  it('stale (expired) and not-yet-valid consents never let a person through', async () => {
    const [p] = patients as [JsonObject];
    const consent = (id: string, start: string, end: string) => ({
      resourceType: 'Consent',
      id: `c-${id}`,
      meta: { versionId: '1', lastUpdated: '2026-11-01T00:00:00Z' },
      status: 'active',
      scope: {
        coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }],
      },
      category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
      patient: { reference: `Patient/${id}` },
      provision: {
        type: 'permit',
        period: { start, end },
        purpose: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActReason', code: 'HOPERAT' }],
      },
    });
    const { ConsentGate } = await import('../../src/engine/consent/consent-gate.ts');
    const gate = new ConsentGate(
      {
        purpose: 'HOPERAT',
        recipient: { id: 'Organization/crm', role: 'IRCP' },
        policyVersion: 'p@1',
        defaultDecision: 'deny',
        refreshMs: 0,
      },
      'epic',
      stageContext().pseudonymKey,
    );
    const target = new MemoryTarget();
    const summary = await runFlow(
      options(
        new MemorySource({
          Consent: [
            consent('expired', '2020-01-01', '2021-01-01'),
            consent('future', '2099-01-01', '2100-01-01'),
          ],
          Patient: [
            { ...p, id: 'expired' },
            { ...p, id: 'future' },
          ],
        }),
        target,
        SqliteStateStore.open(storePath()),
        { consent: gate },
      ),
    );
    expect(summary.withholdReasons).toEqual({ 'consent-deny': 2 });
    expect(target.count('Patient_Profile__c')).toBe(0);
  });
});
