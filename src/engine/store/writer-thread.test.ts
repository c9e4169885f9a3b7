import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SluiceError } from '../../core/errors/index.ts';
import type { JsonObject } from '../../core/fhir/resource.ts';
import { syntheaPatients } from '../../core/matrix/testing.ts';
import { SqliteStateStore } from './sqlite-store.ts';
import type { PageCommit } from './state-store.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function dbPath(): string {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-writer-thread-'));
  dirs.push(dir);
  return join(dir, 'state.sqlite');
}

let patients: JsonObject[] = [];
beforeAll(async () => {
  patients = await syntheaPatients();
  expect(patients.length).toBeGreaterThanOrEqual(20);
});

/** One page of a Patient stream as the pipeline commits it: ledger, versions, change log, checkpoint. */
function pageOf(page: number, records: readonly JsonObject[]): PageCommit {
  const position = new Date(Date.UTC(2026, 10, 1, 0, page)).toISOString();
  return {
    flow: 'f',
    stream: 'Patient',
    ledger: records.map((p) => ({
      flow: 'f',
      object: 'Patient_Profile__c',
      externalId: `pseudo-${String(p.id)}`,
      payloadHash: `h${page}`,
      targetId: `t-${String(p.id)}`,
      sourceRef: `Patient/${String(p.id)}`,
      mappingVersion: 'm1',
      runId: 'r1',
      deliveredAt: position,
    })),
    seen: records.map((p) => ({
      ref: `Patient/${String(p.id)}`,
      versionKey: `v${page}`,
      outcome: 'delivered',
    })),
    changeLog: records.map((p) => ({
      ref: `Patient/${String(p.id)}`,
      versionKey: `v${page}`,
      lastUpdated: position,
      payload: JSON.stringify(p),
    })),
    quarantine: [],
    checkpoint: {
      flow: 'f',
      stream: 'Patient',
      position,
      definitionHash: 'd1',
      environment: 'e1',
      runId: 'r1',
      updatedAt: position,
    },
  };
}

describe('page commits on their own thread', () => {
  it('commits pages asked for back to back in order, each readable on the caller connection once it resolves', async () => {
    const path = dbPath();
    const store = SqliteStateStore.open(path, { commitThread: true, backgroundCheckpoints: true });
    const pages = Array.from({ length: 12 }, (_, i) => pageOf(i, patients.slice(i % 10, (i % 10) + 10)));
    // All handed over at once, as the pipeline does with pages in flight.
    const commits = pages.map((p) => store.commitPage(p));
    await commits[0];
    // Once the first has resolved, it is readable here (later pages may already be committed too).
    const early = (await store.getCheckpoint('f', 'Patient'))?.position ?? '';
    expect(pages.map((p) => p.checkpoint?.position)).toContain(early);
    expect(early >= (pages[0]?.checkpoint?.position ?? '~')).toBe(true);
    await Promise.all(commits);
    // The last page wins: its checkpoint, its version of every record it carried, its ledger hash.
    expect((await store.getCheckpoint('f', 'Patient'))?.position).toBe(pages[11]?.checkpoint?.position);
    const last = patients.slice(1, 11).map((p) => `Patient/${String(p.id)}`);
    const seen = await store.getSeen('f', 'Patient', last);
    expect([...seen.values()].map((v) => v.versionKey)).toEqual(last.map(() => 'v11'));
    const ledger = await store.getLedger(
      'f',
      'Patient_Profile__c',
      patients.slice(1, 11).map((p) => `pseudo-${String(p.id)}`),
    );
    expect([...ledger.values()].every((e) => e.payloadHash === 'h11')).toBe(true);
    const changes = await store.readChangeLog('f', 'Patient', undefined, 0, 1000);
    expect(changes.length).toBe(12 * 10);
    expect(changes.map((c) => c.versionKey)).toEqual(pages.flatMap((_, i) => Array(10).fill(`v${i}`)));
    expect(JSON.parse(changes[0]?.payload ?? '{}').resourceType).toBe('Patient');
    await store.close();

    // What was committed is on disk for the next process.
    const again = SqliteStateStore.open(path);
    expect((await again.getCheckpoint('f', 'Patient'))?.position).toBe(pages[11]?.checkpoint?.position);
    await again.close();
  });

  it('a commit that fails rolls back alone, rejects with its code, and later commits go on', async () => {
    const path = dbPath();
    const store = SqliteStateStore.open(path, { commitThread: true });
    const good = pageOf(0, patients.slice(0, 5));
    // Versions without a flow and stream cannot be keyed: the store refuses the whole page.
    const bad: PageCommit = { ...pageOf(1, patients.slice(5, 10)), flow: undefined, stream: undefined };
    const after = pageOf(2, patients.slice(10, 15));
    const results = await Promise.allSettled([
      store.commitPage(good),
      store.commitPage(bad),
      store.commitPage(after),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const reason = (results[1] as PromiseRejectedResult).reason;
    expect(reason).toBeInstanceOf(SluiceError);
    expect((reason as SluiceError).code).toBe('STORE_WRITE_FAILED');
    // Nothing of the failed page was written, not even its ledger rows (written before the failure).
    const ledger = await store.getLedger(
      'f',
      'Patient_Profile__c',
      patients.slice(5, 10).map((p) => `pseudo-${String(p.id)}`),
    );
    expect(ledger.size).toBe(0);
    expect((await store.getCheckpoint('f', 'Patient'))?.position).toBe(after.checkpoint?.position);
    await store.close();
  });

  it('close waits for the commits asked for; commits after close fail with a code', async () => {
    const store = SqliteStateStore.open(dbPath(), { commitThread: true });
    const pending = store.commitPage(pageOf(0, patients.slice(0, 10)));
    await store.close();
    await expect(pending).resolves.toBeUndefined();
    await expect(store.commitPage(pageOf(1, patients.slice(0, 10)))).rejects.toMatchObject({
      code: 'STORE_WRITE_FAILED',
    });
  });
});
