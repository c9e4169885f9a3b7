import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { SluiceError } from '../../core/errors/index.ts';
import type { StoredFields } from './values.ts';

/**
 * The CRM sandbox's records in SQLite. One `records` table holds every object's records as JSON with
 * the system columns beside it; `record_keys` indexes the external-id and unique fields of live records
 * so upserts and parent look-ups by external id never scan. The store knows nothing of the schema: the
 * caller says which keys a record has.
 */
export interface StoredRecord {
  readonly id: string;
  readonly object: string;
  readonly fields: StoredFields;
  readonly createdMs: number;
  readonly modifiedMs: number;
  readonly modstampMs: number;
  readonly isDeleted: boolean;
}

/** An index entry: the key field and the value as folded for matching. */
export interface KeyEntry {
  readonly field: string;
  readonly value: string;
}

/** A range condition on a system time column, used to narrow a query before it is evaluated. */
export interface TimeBound {
  readonly column: 'created' | 'modified' | 'modstamp';
  readonly op: '=' | '>' | '>=' | '<' | '<=';
  readonly ms: number;
}

export interface ListFilter {
  readonly includeDeleted?: boolean;
  readonly bounds?: readonly TimeBound[];
}

const SCHEMA_VERSION = 1;

const MIGRATIONS: readonly string[] = [
  `CREATE TABLE records (
     id TEXT PRIMARY KEY,
     object TEXT NOT NULL,
     created_ms INTEGER NOT NULL,
     modified_ms INTEGER NOT NULL,
     modstamp_ms INTEGER NOT NULL,
     is_deleted INTEGER NOT NULL DEFAULT 0,
     data TEXT NOT NULL
   );
   CREATE INDEX records_object_modstamp ON records (object, modstamp_ms);
   CREATE TABLE record_keys (
     object TEXT NOT NULL,
     field TEXT NOT NULL,
     value TEXT NOT NULL,
     id TEXT NOT NULL,
     PRIMARY KEY (object, field, value, id)
   ) WITHOUT ROWID;
   CREATE INDEX record_keys_id ON record_keys (id);
   CREATE TABLE sequences (name TEXT PRIMARY KEY, next INTEGER NOT NULL);`,
];

const COLUMNS = { created: 'created_ms', modified: 'modified_ms', modstamp: 'modstamp_ms' } as const;

interface Row {
  id: string;
  object: string;
  created_ms: number;
  modified_ms: number;
  modstamp_ms: number;
  is_deleted: number;
  data: string;
}

export class RecordStore {
  readonly #db: DatabaseSync;
  readonly #statements = new Map<string, StatementSync>();
  #depth = 0;

  private constructor(db: DatabaseSync) {
    this.#db = db;
  }

  /** Opens (creating if needed) the store at `path`; `:memory:` keeps it in memory. */
  static open(path: string): RecordStore {
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(path);
      if (path !== ':memory:') {
        db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;');
      }
    } catch (err) {
      throw new SluiceError(
        'STORE_OPEN_FAILED',
        `The CRM sandbox could not open its database file ${path}.`,
        { cause: err },
      );
    }
    const store = new RecordStore(db);
    store.#migrate(path);
    return store;
  }

  #migrate(path: string): void {
    this.#db.exec('CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)');
    const row = this.#db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get() as
      | { value: string }
      | undefined;
    const current = row ? Number(row.value) : 0;
    if (current > SCHEMA_VERSION) {
      throw new SluiceError(
        'STORE_NEWER_SCHEMA',
        `The CRM sandbox database ${path} was written by a newer Sluice.`,
      );
    }
    this.transaction(() => {
      for (let v = current; v < SCHEMA_VERSION; v++) this.#db.exec(MIGRATIONS[v] ?? '');
      this.#db
        .prepare(
          "INSERT INTO meta (key, value) VALUES ('schema_version', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .run(String(SCHEMA_VERSION));
    });
  }

  #stmt(sql: string): StatementSync {
    let stmt = this.#statements.get(sql);
    if (!stmt) {
      stmt = this.#db.prepare(sql);
      this.#statements.set(sql, stmt);
    }
    return stmt;
  }

  /** Runs `fn` in a transaction (a savepoint when nested); a throw rolls it back. */
  transaction<T>(fn: () => T): T {
    const depth = this.#depth;
    const savepoint = `sp${depth}`;
    // Prepared once and reused: batches open a savepoint per record.
    this.#stmt(depth === 0 ? 'BEGIN IMMEDIATE' : `SAVEPOINT ${savepoint}`).run();
    this.#depth++;
    try {
      const result = fn();
      this.#stmt(depth === 0 ? 'COMMIT' : `RELEASE ${savepoint}`).run();
      return result;
    } catch (err) {
      if (depth === 0) {
        this.#stmt('ROLLBACK').run();
      } else {
        this.#stmt(`ROLLBACK TO ${savepoint}`).run();
        this.#stmt(`RELEASE ${savepoint}`).run();
      }
      throw err;
    } finally {
      this.#depth--;
    }
  }

  get(id: string): StoredRecord | undefined {
    const row = this.#stmt('SELECT * FROM records WHERE id = ?').get(id) as Row | undefined;
    return row ? fromRow(row) : undefined;
  }

  /** Ids of live records of `object` whose key `field` holds `value`. */
  idsByKey(object: string, field: string, value: string): string[] {
    const rows = this.#stmt(
      'SELECT id FROM record_keys WHERE object = ? AND field = ? AND value = ? ORDER BY id',
    ).all(object, field, value) as { id: string }[];
    return rows.map((r) => r.id);
  }

  insert(record: StoredRecord, keys: readonly KeyEntry[]): void {
    this.#stmt(
      'INSERT INTO records (id, object, created_ms, modified_ms, modstamp_ms, is_deleted, data) VALUES (?, ?, ?, ?, ?, ?, ?)',
    ).run(
      record.id,
      record.object,
      record.createdMs,
      record.modifiedMs,
      record.modstampMs,
      record.isDeleted ? 1 : 0,
      JSON.stringify(record.fields),
    );
    if (!record.isDeleted) this.#putKeys(record, keys);
  }

  /** Rewrites a record; `keys` undefined means its key entries did not change. */
  update(record: StoredRecord, keys: readonly KeyEntry[] | undefined): void {
    this.#stmt(
      'UPDATE records SET modified_ms = ?, modstamp_ms = ?, is_deleted = ?, data = ? WHERE id = ?',
    ).run(
      record.modifiedMs,
      record.modstampMs,
      record.isDeleted ? 1 : 0,
      JSON.stringify(record.fields),
      record.id,
    );
    if (keys === undefined && !record.isDeleted) return;
    this.#stmt('DELETE FROM record_keys WHERE id = ?').run(record.id);
    if (!record.isDeleted) this.#putKeys(record, keys ?? []);
  }

  /** Moves a record to the recycle bin: still listed with `includeDeleted`, gone from the key index. */
  markDeleted(id: string, ms: number): void {
    this.#stmt('UPDATE records SET is_deleted = 1, modstamp_ms = ?, modified_ms = ? WHERE id = ?').run(
      ms,
      ms,
      id,
    );
    this.#stmt('DELETE FROM record_keys WHERE id = ?').run(id);
  }

  #putKeys(record: StoredRecord, keys: readonly KeyEntry[]): void {
    const insert = this.#stmt(
      'INSERT OR IGNORE INTO record_keys (object, field, value, id) VALUES (?, ?, ?, ?)',
    );
    for (const key of keys) insert.run(record.object, key.field, key.value, record.id);
  }

  /** Records in insertion order, of one object or of all. */
  list(object: string | undefined, filter: ListFilter = {}): StoredRecord[] {
    const where: string[] = [];
    const params: (string | number)[] = [];
    if (object !== undefined) {
      where.push('object = ?');
      params.push(object);
    }
    if (!filter.includeDeleted) where.push('is_deleted = 0');
    for (const bound of filter.bounds ?? []) {
      where.push(`${COLUMNS[bound.column]} ${bound.op} ?`);
      params.push(bound.ms);
    }
    const sql = `SELECT * FROM records${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY rowid`;
    return (this.#stmt(sql).all(...params) as unknown as Row[]).map(fromRow);
  }

  /** The next number of a named sequence (record ids, auto-numbers), starting at 1. */
  nextSequence(name: string): number {
    const row = this.#stmt(
      'INSERT INTO sequences (name, next) VALUES (?, 1) ON CONFLICT (name) DO UPDATE SET next = next + 1 RETURNING next',
    ).get(name) as { next: number };
    return row.next;
  }

  /** Removes every record (of one object, or all of them). Sequences continue, so ids are never reused. */
  clear(object?: string): void {
    this.transaction(() => {
      if (object === undefined) {
        this.#db.exec('DELETE FROM records; DELETE FROM record_keys;');
      } else {
        this.#stmt('DELETE FROM records WHERE object = ?').run(object);
        this.#stmt('DELETE FROM record_keys WHERE object = ?').run(object);
      }
    });
  }

  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }
}

function fromRow(row: Row): StoredRecord {
  return {
    id: row.id,
    object: row.object,
    fields: JSON.parse(row.data) as StoredFields,
    createdMs: row.created_ms,
    modifiedMs: row.modified_ms,
    modstampMs: row.modstamp_ms,
    isDeleted: row.is_deleted === 1,
  };
}
