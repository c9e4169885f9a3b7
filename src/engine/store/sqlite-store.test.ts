import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, describe, expect, it } from 'vitest';
import { SluiceError } from '../../core/errors/index.ts';
import { SQLITE_MIGRATIONS } from './migrations.ts';
import { SqliteStateStore } from './sqlite-store.ts';
import {
  type ContractOpenOptions,
  type ContractStore,
  consentPage,
  stateStoreContract,
  ZONED_CHANGE_LOG,
} from './state-store.contract.ts';

const dirs: string[] = [];
/** Stores the contract opened, closed after each test (a failed one leaves its store open). */
const opened: SqliteStateStore[] = [];
afterEach(async () => {
  for (const store of opened.splice(0)) await store.close();
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

/** A database at `path` as a Sluice of schema `version` left it (migrations up to it applied). */
function storeAtVersion(path: string, version: number): DatabaseSync {
  mkdirSync(dirname(path), { recursive: true });
  const db = new DatabaseSync(path);
  db.exec('CREATE TABLE schema_version (version INTEGER NOT NULL) STRICT');
  for (const [i, step] of SQLITE_MIGRATIONS.slice(0, version).entries()) {
    db.exec(step);
    db.prepare('INSERT INTO schema_version (version) VALUES (?)').run(i + 1);
  }
  return db;
}

/**
 * The embedded store for the shared contract: a database file of its own per store (reopened by
 * path), read beneath the interface with a connection of the test's, its file and WAL read as bytes.
 */
function sqliteEngine(engine: { readonly commitThread?: boolean } = {}) {
  const openAt = async (p: string, options: ContractOpenOptions = {}): Promise<ContractStore> => {
    const store = SqliteStateStore.open(p, { ...engine, ...options });
    opened.push(store);
    const raw = <T>(read: (db: DatabaseSync) => T): T => {
      const db = new DatabaseSync(p, { timeout: 5000 });
      try {
        return read(db);
      } finally {
        db.close();
      }
    };
    return Object.assign(store, {
      reopen: (again?: ContractOpenOptions) => openAt(p, again),
      storedPayloads: async () =>
        raw((db) =>
          [
            ...(db.prepare('SELECT payload FROM quarantine').all() as { payload: string }[]),
            ...(db.prepare('SELECT payload FROM change_log').all() as { payload: string }[]),
          ].map((r) => r.payload),
        ),
      storedFacts: async (entity: string) =>
        raw((db) =>
          (
            db.prepare('SELECT facts FROM provenance_facts WHERE entity = ? ORDER BY rowid').all(entity) as {
              facts: string;
            }[]
          ).map((r) => r.facts),
        ),
      insertProvenanceResource: async (row: {
        flow: string;
        entity: string;
        runId: string;
        recordedAt: string;
        resource: string;
      }) => {
        raw((db) =>
          db
            .prepare(
              'INSERT INTO provenance (flow, entity, run_id, recorded_at, resource) VALUES (?, ?, ?, ?, ?)',
            )
            .run(row.flow, row.entity, row.runId, row.recordedAt, row.resource),
        );
      },
      bytesAtRest: async () =>
        [p, `${p}-wal`]
          .map((file) => (existsSync(file) ? readFileSync(file).toString('latin1') : ''))
          .join(''),
    });
  };
  return (options?: ContractOpenOptions) => openAt(path(), options);
}

stateStoreContract('sqlite', sqliteEngine());
// Page commits on a thread of their own, with their own connection, stamped with the store's clock.
stateStoreContract('sqlite, commit thread', sqliteEngine({ commitThread: true }));

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

  it('brings the change-log times of a store written before to UTC when it opens it', async () => {
    const changeLog = ZONED_CHANGE_LOG;
    const refsFrom = async (store: SqliteStateStore, from: string) =>
      (await store.readChangeLog('f', 'Patient', from, 0, 10)).map((e) => e.ref).sort();
    // A store written before (times kept as the source wrote them) is brought to UTC when opened.
    const p = path();
    const old = storeAtVersion(p, 9);
    const insert = old.prepare(
      `INSERT INTO change_log (flow, stream, ref, version_key, last_updated, payload, recorded_at)
       VALUES ('f', 'Patient', ?, ?, ?, '{}', '2026-11-02T00:00:00Z')`,
    );
    for (const c of changeLog) insert.run(c.ref, c.versionKey, c.lastUpdated);
    insert.run('Patient/unreadable', 'v:1|x', 'not a time');
    old.close();
    const migrated = SqliteStateStore.open(p);
    // A time that cannot be read is in every window (a replay re-sends idempotently; none is missed).
    expect(await refsFrom(migrated, '2026-11-01T00:00:00Z')).toEqual([
      'Patient/unreadable',
      'Patient/utc',
      'Patient/west',
    ]);
    const times = (await migrated.readChangeLog('f', 'Patient', undefined, 0, 10)).map((e) => e.lastUpdated);
    expect(times).toEqual([
      '2026-11-01T01:00:00.000Z',
      '2026-11-01T06:00:00.000Z',
      '2026-10-31T23:00:00.000Z',
      undefined,
    ]);
    await migrated.close();
  });

  it('erases, when it opens a store of an earlier version, the records of entries closed before', async () => {
    const p = path();
    const old = storeAtVersion(p, 10);
    const insert = old.prepare(
      `INSERT INTO quarantine (id, flow, run_id, stream, stage, code, issues, origin, payload, created_at, status)
       VALUES (?, 'f', 'r1', 'Patient', 'validate', 'REC_INVALID_FHIR', '[]', 'page 1', ?, '2026-11-01T00:00:00Z', ?)`,
    );
    insert.run('q-open', '{"resourceType":"Patient","id":"kept"}', 'open');
    insert.run('q-released', '{"resourceType":"Patient","id":"gone-1"}', 'released');
    insert.run('q-discarded', '{"resourceType":"Patient","id":"gone-2"}', 'discarded');
    old.close();
    const store = SqliteStateStore.open(p);
    const entries = await store.listQuarantine({ flow: 'f' });
    expect(entries.map((e) => [e.id, e.payloadKept, e.payloadSha256])).toEqual([
      ['q-open', true, undefined],
      ['q-released', false, undefined],
      ['q-discarded', false, undefined],
    ]);
    expect(await store.readQuarantinePayload('q-open')).toBe('{"resourceType":"Patient","id":"kept"}');
    expect(await store.readQuarantinePayload('q-released')).toBeUndefined();
    await store.close();
  });

  it('reads a batch of lookups from one snapshot, ends it on a throw and nests inside another', async () => {
    const p = path();
    const store = SqliteStateStore.open(p, { commitThread: true });
    await store.commitPage(consentPage('f', [{ key: 'c1', subject: 's1', state: '{"n":1}' }]));
    const lookup = store.consentLookup('f');
    const other = new DatabaseSync(p, { timeout: 5000 });
    const addConsent = other.prepare(
      "INSERT INTO consent_states (flow, consent_key, subject, state, updated_at) VALUES ('f', ?, 's1', ?, 'x')",
    );
    // What another connection commits during the snapshot is seen only after it.
    const inside = lookup.snapshot(() => {
      const first = lookup.statesOf('s1');
      addConsent.run('c2', '{"n":2}');
      return { first, again: lookup.statesOf('s1'), nested: store.snapshot(() => lookup.count()) };
    });
    expect(inside).toEqual({ first: ['{"n":1}'], again: ['{"n":1}'], nested: 1 });
    expect(lookup.statesOf('s1').sort()).toEqual(['{"n":1}', '{"n":2}']);
    expect(() =>
      lookup.snapshot(() => {
        lookup.count();
        throw new Error('boom');
      }),
    ).toThrow('boom');
    // The snapshot ended with the throw: a later write is read at once, and the page commit is not blocked.
    addConsent.run('c3', '{"n":3}');
    expect(lookup.count()).toBe(3);
    await store.commitPage({ ledger: [ledgerEntry('b')], quarantine: [] });
    expect([...(await store.getLedger('f', 'Account', ['a', 'b'])).keys()]).toEqual(['b']);
    other.close();
    await store.close();
  });
});
