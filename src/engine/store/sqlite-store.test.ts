import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, describe, expect, it } from 'vitest';
import { SluiceError } from '../../core/errors/index.ts';
import { SQLITE_MIGRATIONS } from './migrations.ts';
import { SqliteStateStore } from './sqlite-store.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function path(): string {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-store-'));
  dirs.push(dir);
  return join(dir, 'nested', 'state.sqlite');
}

const ledgerEntry = (externalId: string, hash = 'h1') => ({
  flow: 'f',
  object: 'Account',
  externalId,
  payloadHash: hash,
  targetId: `id-${externalId}`,
  sourceRef: `Organization/${externalId}`,
  mappingVersion: 'm1',
  runId: 'r1',
  deliveredAt: '2026-11-23T00:00:00.000Z',
});

describe('SqliteStateStore', () => {
  it('creates its folder, migrates, and uses WAL with full sync', async () => {
    const p = path();
    const store = SqliteStateStore.open(p);
    await store.close();
    const db = new DatabaseSync(p);
    expect((db.prepare('PRAGMA journal_mode').get() as { journal_mode: string }).journal_mode).toBe('wal');
    expect((db.prepare('SELECT max(version) AS v FROM schema_version').get() as { v: number }).v).toBe(
      SQLITE_MIGRATIONS.length,
    );
    db.close();
    // Opening again applies nothing twice.
    const again = SqliteStateStore.open(p);
    await again.close();
  });

  it('refuses a store written by a newer Sluice', async () => {
    const p = path();
    await SqliteStateStore.open(p).close();
    const db = new DatabaseSync(p);
    db.prepare('INSERT INTO schema_version (version) VALUES (?)').run(SQLITE_MIGRATIONS.length + 1);
    db.close();
    let error: unknown;
    try {
      SqliteStateStore.open(p);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(SluiceError);
    expect((error as SluiceError).code).toBe('STORE_NEWER_SCHEMA');
  });

  it('commits ledger, quarantine and checkpoint together, and upserts the ledger', async () => {
    const store = SqliteStateStore.open(path());
    await store.commitPage({
      ledger: [ledgerEntry('a'), ledgerEntry('b')],
      quarantine: [
        {
          flow: 'f',
          runId: 'r1',
          stream: 'Organization',
          stage: 'validate',
          code: 'REC_INVALID_FHIR',
          issues: [
            { severity: 'error', code: 'REC_INVALID_FHIR', path: 'Organization.name', message: 'bad' },
          ],
          origin: 'page 1 entry 3',
          payload: '{}',
        },
      ],
      checkpoint: {
        flow: 'f',
        stream: 'Organization',
        position: '2026-11-23T00:00:00Z',
        definitionHash: 'd',
        environment: 'e',
        runId: 'r1',
        updatedAt: 'x',
      },
    });
    await store.commitPage({ ledger: [ledgerEntry('a', 'h2')], quarantine: [] });
    const ledger = await store.getLedger('f', 'Account', ['a', 'b', 'c']);
    expect([...ledger.keys()].sort()).toEqual(['a', 'b']);
    expect(ledger.get('a')?.payloadHash).toBe('h2');
    expect(await store.countQuarantine('f', 'open')).toBe(1);
    expect((await store.getCheckpoint('f', 'Organization'))?.position).toBe('2026-11-23T00:00:00Z');
    await store.close();
  });

  it('rolls a failing page back entirely', async () => {
    const store = SqliteStateStore.open(path());
    const bad = { ...ledgerEntry('z'), payloadHash: null as unknown as string };
    await expect(store.commitPage({ ledger: [ledgerEntry('y'), bad], quarantine: [] })).rejects.toMatchObject(
      {
        code: 'STORE_WRITE_FAILED',
      },
    );
    expect(await store.countLedger('f')).toBe(0);
    await store.close();
  });
});
