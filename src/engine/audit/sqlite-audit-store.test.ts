import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isSluiceError } from '../../core/errors/index.ts';
import { buildBatch, loadHead } from './append.ts';
import { type AuditTamper, auditStoreContract } from './audit-store.contract.ts';
import { AuditLog } from './index.ts';
import { SqliteAuditStore } from './sqlite-audit-store.ts';
import type { AuditStore } from './store.ts';
import { dropAuditTriggers, syntheaAuditEvents, syntheaPatients, testKeys } from './testing.ts';

const events = syntheaAuditEvents(syntheaPatients(1)).slice(0, 30);
const NOW = new Date('2025-03-01T12:00:00.000Z');
let dir: string;

/** What a contract case opened: closed after it. */
let opened: { close(): unknown }[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-audit-'));
});
afterEach(async () => {
  for (const item of opened.reverse()) await item.close();
  opened = [];
  rmSync(dir, { recursive: true, force: true });
});

/** Raw writes through a connection of its own on the database file. */
function sqliteTamper(db: DatabaseSync): AuditTamper {
  const run = async (sql: string, ...params: (string | number | Uint8Array)[]) => {
    db.prepare(sql).run(...params);
  };
  return {
    unguard: async () => dropAuditTriggers(db),
    canonical: async (seq) =>
      String(
        (db.prepare('SELECT canonical FROM audit_entries WHERE seq = ?').get(seq) as { canonical: unknown })
          .canonical,
      ),
    setCanonical: (seq, canonical) =>
      run('UPDATE audit_entries SET canonical = ? WHERE seq = ?', canonical, seq),
    deleteEntry: (seq) => run('DELETE FROM audit_entries WHERE seq = ?', seq),
    countEntries: async () =>
      Number((db.prepare('SELECT count(*) AS n FROM audit_entries').get() as { n: number }).n),
    setCheckpointJws: (treeSize, jws) =>
      run('UPDATE audit_checkpoints SET jws = ? WHERE tree_size = ?', jws, treeSize),
    deleteCheckpoints: () => run('DELETE FROM audit_checkpoints'),
    setNodeHash: (level, index, hash) =>
      run('UPDATE audit_nodes SET hash = ? WHERE level = ? AND idx = ?', hash, level, index),
    deleteNodes: () => run('DELETE FROM audit_nodes'),
    deleteRetention: () => run('DELETE FROM audit_retention'),
  };
}

let trails = 0;
auditStoreContract('SQLite', async (options = {}) => {
  const path = join(dir, `trail-${++trails}.db`);
  const track = <T extends { close(): unknown }>(item: T): T => {
    opened.push(item);
    return item;
  };
  const store = track(SqliteAuditStore.open(path, options));
  const raw = track(new DatabaseSync(path));
  raw.exec('PRAGMA busy_timeout = 5000');
  return {
    store,
    reopen: async (again = {}): Promise<AuditStore> => track(SqliteAuditStore.open(path, again)),
    tamper: sqliteTamper(raw),
  };
});

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (err) {
    return isSluiceError(err) ? err.code : String(err);
  }
  return undefined;
}

describe('SqliteAuditStore', () => {
  it('opens a file in WAL mode with synchronous=FULL, and an open database stays the caller’s', async () => {
    const path = join(dir, 'audit.db');
    const store = SqliteAuditStore.open(path, { logId: 'site-a' });
    await store.append(buildBatch(await loadHead(store), events.slice(0, 3), NOW).batch);
    await store.close();
    const db = new DatabaseSync(path);
    const reopened = SqliteAuditStore.open(db, { logId: 'ignored-now' });
    expect(await reopened.logId()).toBe('site-a');
    expect(await reopened.size()).toBe(3);
    expect(db.prepare('PRAGMA journal_mode').get()).toEqual({ journal_mode: 'wal' });
    expect(db.prepare('PRAGMA synchronous').get()).toEqual({ synchronous: 2 });
    await reopened.close();
    expect(db.isOpen).toBe(true);
    db.close();
  });

  it('joins the caller’s transaction on a shared connection', async () => {
    const db = new DatabaseSync(':memory:');
    const store = SqliteAuditStore.open(db);
    db.exec('BEGIN');
    await store.append(buildBatch(await loadHead(store), events.slice(0, 3), NOW).batch);
    db.exec('ROLLBACK');
    expect(await store.size()).toBe(0);
  });

  it('upgrades a trail written before entries were searchable by source record, in place, still verifiable', async () => {
    const path = join(dir, 'audit.db');
    const keys = await testKeys();
    const practitioners = ['Practitioner/9a2e4c1b-1', 'Practitioner/9a2e4c1b-2'];
    const providerEvents = practitioners.map((source, i) => ({
      ...(events[i] as (typeof events)[number]),
      subject: undefined,
      details: { stream: 'Practitioner', source },
    }));
    const first = await AuditLog.open({ store: path, signer: keys.signer, jwks: keys.jwks });
    await first.append([...events.slice(0, 5), ...providerEvents]);
    await first.close();
    // As schema 1 left it: no source column, no index.
    const db = new DatabaseSync(path);
    db.exec('DROP INDEX audit_entries_source; ALTER TABLE audit_entries DROP COLUMN source');
    db.exec("UPDATE audit_meta SET value = '1' WHERE key = 'schema_version'");
    db.close();

    const log = await AuditLog.open({ store: path, signer: keys.signer, jwks: keys.jwks });
    const page = await log.query({ source: practitioners[1] });
    expect(page.entries.map((e) => e.details.source)).toEqual([practitioners[1]]);
    expect((await log.verify()).ok).toBe(true);
    await log.close();
    const check = new DatabaseSync(path);
    expect(check.prepare("SELECT value FROM audit_meta WHERE key = 'schema_version'").get()).toEqual({
      value: '2',
    });
    const plan = check
      .prepare("EXPLAIN QUERY PLAN SELECT seq FROM audit_entries WHERE source = 'x' ORDER BY seq")
      .all()
      .map((r) => String((r as { detail: string }).detail));
    expect(plan.join(' ')).toContain('audit_entries_source');
    check.close();
  });

  it('refuses tables written by a newer version', () => {
    const db = new DatabaseSync(':memory:');
    SqliteAuditStore.open(db);
    db.exec("UPDATE audit_meta SET value = '99' WHERE key = 'schema_version'");
    expect(() => SqliteAuditStore.open(db)).toThrow(expect.objectContaining({ code: 'STORE_NEWER_SCHEMA' }));
  });
});

describe('appends on their own thread', () => {
  it('writes every batch durably and in order; the log verifies from another connection', async () => {
    const keys = await testKeys();
    const path = join(dir, 'audit.db');
    const log = await AuditLog.open({
      store: path,
      signer: keys.signer,
      jwks: keys.jwks,
      checkpointEvery: 10,
      appendThread: true,
      backgroundCheckpoints: true,
    });
    // Handed over back to back, as pages in flight do: the log serialises them in call order.
    const batches = [events.slice(0, 7), events.slice(7, 19), events.slice(19, 30)];
    const written = await Promise.all(batches.map((b) => log.append(b)));
    expect(written.flat().map((e) => e.seq)).toEqual(events.map((_, i) => i));
    await log.checkpoint();
    await log.close();
    const reader = await AuditLog.open({ store: path, jwks: keys.jwks });
    expect(await reader.verify()).toMatchObject({ ok: true, size: 30, sealedSize: 30 });
    expect(await reader.inclusionProof(12)).toMatchObject({ treeSize: 30 });
    await reader.close();
  });

  it('a stale writer still detects the other one through the thread and rebuilds on the new head', async () => {
    const keys = await testKeys();
    const path = join(dir, 'audit.db');
    const options = { signer: keys.signer, jwks: keys.jwks, checkpointEvery: 0, clock: () => NOW };
    const a = await AuditLog.open({ ...options, store: path, appendThread: true });
    const b = await AuditLog.open({ ...options, store: path, appendThread: true });
    await a.append(events.slice(0, 5));
    const written = await b.append(events.slice(5, 8));
    expect(written.map((e) => e.seq)).toEqual([5, 6, 7]);
    await a.append(events.slice(8, 10));
    await b.checkpoint();
    expect(await a.verify()).toMatchObject({ ok: true, size: 10, sealedSize: 10 });
    await a.close();
    await b.close();
  });

  it('a batch the store refuses comes back with its code, and nothing of it is written', async () => {
    const path = join(dir, 'audit.db');
    const store = SqliteAuditStore.open(path, { appendThread: true });
    const first = buildBatch(await loadHead(store), events.slice(0, 3), NOW);
    await store.append(first.batch);
    // Built on a head that is no longer the log's: the thread's connection refuses it.
    const stale = buildBatch(await loadHead(SqliteAuditStore.open(':memory:')), events.slice(3, 6), NOW);
    expect(await codeOf(store.append(stale.batch))).toBe('AUDIT_CONCURRENT_APPEND');
    expect(await store.size()).toBe(3);
    await store.close();
  });
});
