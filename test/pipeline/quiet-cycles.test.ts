import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadR4Definitions } from '../../src/core/fhir/definitions.ts';
import type { JsonObject } from '../../src/core/fhir/resource.ts';
import { AuditLog } from '../../src/engine/audit/index.ts';
import { testKeys } from '../../src/engine/audit/testing.ts';
import { type RunFlowOptions, runFlow } from '../../src/engine/pipeline/run-flow.ts';
import { SqliteStateStore } from '../../src/engine/store/sqlite-store.ts';
import { MemorySource, SealingTarget, sampleResources, silentLogger, stageContext, stamp } from './fakes.ts';

// Loop mode: a cycle that finds nothing to do leaves no trace in the audit trail or the run history;
// one that does something is recorded whole, its run-start entry before any other.

let organizations: JsonObject[];
const dirs: string[] = [];

beforeAll(async () => {
  loadR4Definitions();
  organizations = stamp(await sampleResources('Organization', 4), Date.parse('2026-11-01T00:00:00Z'));
});

afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function setUp() {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-quiet-'));
  dirs.push(dir);
  const store = SqliteStateStore.open(join(dir, 'state.sqlite'));
  const audit = await AuditLog.open({ store: join(dir, 'audit.sqlite'), signer: (await testKeys()).signer });
  const target = new SealingTarget();
  const run = (source: MemorySource, extra: Partial<RunFlowOptions> = {}) =>
    runFlow({
      flow: 'quiet-flow',
      definitionHash: 'hash-1',
      source,
      target,
      store,
      audit,
      stages: stageContext(),
      maxBatch: 200,
      // As every flow runtime does: batches get envelopes, and the audit names what each carried.
      sealing: { sourceSystem: 'epic', targetSystem: 'veeva', purpose: 'HOPERAT', policyVersion: 'test@1' },
      logger: silentLogger,
      ...extra,
    });
  const trail = async () => (await audit.query({ limit: 1000 })).entries;
  const close = async () => {
    await audit.close();
    await store.close();
  };
  return { store, audit, target, run, trail, close };
}

describe('quiet loop cycles', () => {
  it('a cycle that only re-reads processed versions is idle: no audit entry, no run in the history', async () => {
    const { store, run, trail, close } = await setUp();
    const source = new MemorySource({ Organization: organizations });
    const first = await run(source, { quietWhenIdle: true });
    expect(first.idle).toBeUndefined();
    expect(first.created).toBeGreaterThan(0);
    const afterFirst = await trail();
    expect(afterFirst[0]?.kind).toBe('run-start');
    expect(afterFirst[0]?.details.startedAt).toBe(first.startedAt);
    expect(afterFirst.at(-1)?.kind).toBe('run-end');
    expect(await store.listRuns('quiet-flow')).toHaveLength(1);

    // The same records read again (an overlap re-read): nothing to do, three times over.
    for (let i = 0; i < 3; i++) {
      const again = await run(source, { quietWhenIdle: true });
      expect(again.status).toBe('succeeded');
      expect(again.idle).toBe(true);
      expect(again.read).toBeGreaterThan(0);
      expect(again.skipped).toBe(again.read);
    }
    expect(await trail()).toHaveLength(afterFirst.length);
    expect(await store.listRuns('quiet-flow')).toHaveLength(1);

    // A run that is not a loop cycle is always recorded, idle or not.
    const once = await run(source);
    expect(once.idle).toBeUndefined();
    expect((await trail()).filter((e) => e.kind === 'run-start')).toHaveLength(2);
    expect(await store.listRuns('quiet-flow')).toHaveLength(2);
    await close();
  });

  it('a quiet cycle that sends a change is recorded whole, run-start first', async () => {
    const { store, run, trail, close } = await setUp();
    await run(new MemorySource({ Organization: organizations }));
    const before = (await trail()).length;
    const [a] = organizations as [JsonObject];
    const renamed = {
      ...a,
      name: 'Renamed Hospital',
      meta: { versionId: '2', lastUpdated: '2026-11-01T01:00:00Z' },
    };
    const cycle = await run(new MemorySource({ Organization: [...organizations, renamed] }), {
      quietWhenIdle: true,
    });
    expect(cycle.idle).toBeUndefined();
    expect(cycle.updated).toBeGreaterThan(0);
    const added = (await trail()).slice(before);
    expect(added.map((e) => e.kind)[0]).toBe('run-start');
    expect(added.every((e) => e.runId === cycle.runId)).toBe(true);
    expect(added.some((e) => e.kind === 'send' && e.details.source === `Organization/${String(a.id)}`)).toBe(
      true,
    );
    expect(added.at(-1)?.kind).toBe('run-end');
    const runs = await store.listRuns('quiet-flow');
    expect(runs.map((r) => r.runId)).toContain(cycle.runId);
    await close();
  });

  it('a quiet cycle that fails is recorded, with its error', async () => {
    const { store, audit, run, trail, close } = await setUp();
    await run(new MemorySource({ Organization: organizations }));
    const before = (await trail()).length;
    const broken = new MemorySource({ Organization: organizations });
    broken.failAfterPages = 0;
    const cycle = await run(broken, { quietWhenIdle: true });
    expect(cycle.status).toBe('failed');
    expect(cycle.idle).toBeUndefined();
    const added = (await trail()).slice(before);
    expect(added.map((e) => [e.kind, e.outcome, e.reason])).toEqual([
      ['run-start', 'success', undefined],
      ['run-end', 'serious-failure', 'SRC_UNREACHABLE'],
    ]);
    expect((await store.listRuns('quiet-flow'))[0]?.status).toBe('failed');
    expect((await audit.verify()).ok).toBe(true);
    await close();
  });
});
