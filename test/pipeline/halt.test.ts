import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadR4Definitions } from '../../src/core/fhir/definitions.ts';
import type { JsonObject } from '../../src/core/fhir/resource.ts';
import { runFlow } from '../../src/engine/pipeline/run-flow.ts';
import { SqliteStateStore } from '../../src/engine/store/sqlite-store.ts';
import { MemorySource, MemoryTarget, sampleResources, silentLogger, stageContext, stamp } from './fakes.ts';

// The kill switch: engaged between two sends, the run sends nothing more, commits what it sent and
// fails with FLOW_HALTED; released, the next run sends exactly the rest.

let organizations: JsonObject[];
const dirs: string[] = [];

beforeAll(async () => {
  loadR4Definitions();
  organizations = stamp(await sampleResources('Organization', 9), Date.parse('2026-11-01T00:00:00Z'));
});

afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function open() {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-halt-'));
  dirs.push(dir);
  return SqliteStateStore.open(join(dir, 'state.sqlite'));
}

const options = (source: MemorySource, target: MemoryTarget, store: SqliteStateStore) => ({
  flow: 'halt-flow',
  definitionHash: 'hash-1',
  source,
  target,
  store,
  stages: stageContext(),
  maxBatch: 200,
  logger: silentLogger,
});

describe('the kill switch', () => {
  it('engaged mid-run, stops every later send; released, the next run sends exactly the rest', async () => {
    const store = open();
    // An operator engages the kill switch right after the target answered the first request.
    const target = new MemoryTarget();
    const upsert = target.upsert.bind(target);
    target.upsert = async (...args) => {
      const results = await upsert(...args);
      if (target.requests.length === 1)
        await store.setHalt('halt-flow', { reason: 'suspected-leak', engagedAt: new Date().toISOString() });
      return results;
    };
    const halted = await runFlow(
      options(new MemorySource({ Organization: organizations }, 3), target, store),
    );
    expect(halted.status).toBe('failed');
    expect(halted.error?.code).toBe('FLOW_HALTED');
    expect(halted.error?.message).toContain('suspected-leak');
    // Only the first request went out (the first page's Accounts; not even that page's Addresses).
    expect(target.requests.map((r) => r.object)).toEqual(['Account']);
    const sentFirst = target.records.size;
    expect(sentFirst).toBeGreaterThan(0);
    expect(sentFirst).toBeLessThan(organizations.length);

    // While halted, a new run reads nothing and sends nothing.
    const refused = new MemorySource({ Organization: organizations }, 3);
    const again = await runFlow(options(refused, target, store));
    expect(again.error?.code).toBe('FLOW_HALTED');
    expect(refused.reads).toEqual([]);
    expect(target.records.size).toBe(sentFirst);

    expect(await store.setHalt('halt-flow', undefined)).toBe(true);
    const resumed = await runFlow(
      options(new MemorySource({ Organization: organizations }, 3), target, store),
    );
    expect(resumed.status).toBe('succeeded');
    // Everything is there once: each Organization's Account and its Addresses, nothing twice.
    const accounts = [...target.records.keys()].filter((k) => k.startsWith('Account|'));
    expect(accounts).toHaveLength(organizations.length);
    expect(new Set(accounts).size).toBe(accounts.length);
    const again2 = await runFlow(
      options(new MemorySource({ Organization: organizations }, 3), target, store),
    );
    expect(again2.delivered).toBe(0);
    await store.close();
  });

  it('keeps the first reason and time when engaged twice, and says whether anything changed', async () => {
    const store = open();
    expect(await store.getHalt('f')).toBeUndefined();
    expect(await store.setHalt('f', { reason: 'first', engagedAt: '2026-12-07T01:00:00.000Z' })).toBe(true);
    expect(await store.setHalt('f', { reason: 'second', engagedAt: '2026-12-07T02:00:00.000Z' })).toBe(false);
    expect(await store.getHalt('f')).toEqual({ reason: 'first', engagedAt: '2026-12-07T01:00:00.000Z' });
    expect(await store.getHalt('other')).toBeUndefined();
    expect(await store.setHalt('f', undefined)).toBe(true);
    expect(await store.setHalt('f', undefined)).toBe(false);
    await store.close();
  });
});
