import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteAuditStore } from '../audit/sqlite-audit-store.ts';
import { SqliteStateStore } from './sqlite-store.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function path(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-ckpt-'));
  dirs.push(dir);
  return join(dir, name);
}

const ledger = (n: number) =>
  Array.from({ length: n }, (_, i) => ({
    flow: 'f',
    object: 'Account',
    externalId: `e-${i}`,
    payloadHash: `${i}`.padStart(64, '0'),
    targetId: `t-${i}`,
    sourceRef: `Organization/${i}`,
    mappingVersion: 'm1',
    runId: 'r1',
    deliveredAt: '2026-11-23T00:00:00.000Z',
  }));

async function until(check: () => boolean, ms = 8000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return check();
}

const size = (file: string) => statSync(file).size;

describe('background WAL checkpoints', () => {
  it('move committed pages into the database file while the writer only appends to the WAL', async () => {
    const file = path('state.sqlite');
    const store = SqliteStateStore.open(file, { backgroundCheckpoints: true });
    const before = size(file);
    await store.commitPage({ ledger: ledger(3000), quarantine: [] });
    // The rows reach the database file through the worker's checkpoint, not the writer's.
    expect(await until(() => size(file) > before + 200_000)).toBe(true);
    expect(await store.countLedger('f')).toBe(3000);
    await store.close();
    const reopened = SqliteStateStore.open(file);
    expect(await reopened.countLedger('f')).toBe(3000);
    await reopened.close();
  });

  it('serves two databases from one thread and stops cleanly when both close', async () => {
    const stateFile = path('state.sqlite');
    const auditFile = path('audit.sqlite');
    const store = SqliteStateStore.open(stateFile, { backgroundCheckpoints: true });
    const audit = SqliteAuditStore.open(auditFile, { backgroundCheckpoints: true });
    const auditBefore = size(auditFile);
    await audit.append({
      expectedSize: 0,
      entries: Array.from({ length: 2000 }, (_, seq) => ({
        seq,
        canonical: JSON.stringify({ seq, kind: 'send', flow: 'f', details: { n: 'x'.repeat(100) } }),
        leafHash: new Uint8Array(32).fill(seq % 251),
        chainHash: new Uint8Array(32).fill((seq + 1) % 251),
      })),
      nodes: [],
    });
    await store.commitPage({ ledger: ledger(2000), quarantine: [] });
    expect(await until(() => size(auditFile) > auditBefore + 100_000)).toBe(true);
    // Closing releases the worker's connections first: the store's close is the last one, which
    // checkpoints what is left and removes the WAL.
    await audit.close();
    await store.close();
    expect(() => statSync(`${stateFile}-wal`)).toThrow();
    expect(() => statSync(`${auditFile}-wal`)).toThrow();
  });

  it('is off for in-memory databases and by default', async () => {
    const memory = SqliteStateStore.open(':memory:', { backgroundCheckpoints: true });
    await memory.commitPage({ ledger: ledger(10), quarantine: [] });
    expect(await memory.countLedger('f')).toBe(10);
    await memory.close();
    const file = path('plain.sqlite');
    const plain = SqliteStateStore.open(file);
    await plain.commitPage({ ledger: ledger(10), quarantine: [] });
    await plain.close();
    expect(() => statSync(`${file}-wal`)).toThrow();
  });
});
