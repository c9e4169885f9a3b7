import { randomUUID } from 'node:crypto';
import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite';
import { SluiceError } from '../../core/errors/index.ts';
import { checkpointInBackground, deferAutocheckpoint } from '../store/background-checkpoints.ts';
import { WriterThread } from '../store/writer-thread.ts';
import type { Hash } from './hash.ts';
import { type Subtree, subtreeKey } from './merkle.ts';
import type {
  AppendBatch,
  AuditStore,
  EntrySearch,
  PruneCounts,
  PrunePlan,
  RetentionBase,
  StoredCheckpoint,
  StoredEntryRow,
} from './store.ts';

/**
 * The audit trail in SQLite (`node:sqlite`), in tables prefixed `audit_` so it can share a database
 * with other state. WAL and `synchronous=FULL`: an appended batch is on disk when `append` returns.
 *
 * The searchable columns are *generated* from the canonical text, so they cannot say anything the
 * hashed entry does not. Triggers make the tables append-only for every writer, not just this class:
 * updates always abort, and deletes abort unless they are below a recorded retention cut.
 */

const SCHEMA_VERSION = 2;

const generated = (column: string, member: string): string =>
  `${column} TEXT GENERATED ALWAYS AS (iif(json_valid(canonical), json_extract(canonical, '$.${member}'), NULL)) VIRTUAL`;

const CUT = '(SELECT coalesce(max(cut), 0) FROM audit_retention)';
const refuse = (what: string): string => `BEGIN SELECT RAISE(ABORT, '${what} is append-only'); END`;

const MIGRATIONS: readonly string[] = [
  `CREATE TABLE audit_entries (
     seq INTEGER PRIMARY KEY,
     canonical TEXT NOT NULL,
     leaf_hash BLOB NOT NULL,
     chain_hash BLOB NOT NULL,
     ${generated('at', 'at')},
     ${generated('kind', 'kind')},
     ${generated('flow', 'flow')},
     ${generated('run_id', 'runId')},
     ${generated('batch_id', 'batchId')},
     ${generated('recipient', 'recipient')},
     ${generated('subject', 'subject')},
     ${generated('outcome', 'outcome')}
   ) STRICT;
   CREATE INDEX audit_entries_at ON audit_entries (at);
   CREATE INDEX audit_entries_kind ON audit_entries (kind, seq);
   CREATE INDEX audit_entries_flow ON audit_entries (flow, seq);
   CREATE INDEX audit_entries_subject ON audit_entries (subject, seq) WHERE subject IS NOT NULL;
   CREATE INDEX audit_entries_batch ON audit_entries (batch_id, seq) WHERE batch_id IS NOT NULL;
   CREATE INDEX audit_entries_run ON audit_entries (run_id, seq) WHERE run_id IS NOT NULL;
   CREATE INDEX audit_entries_recipient ON audit_entries (recipient, seq) WHERE recipient IS NOT NULL;
   CREATE TABLE audit_nodes (
     level INTEGER NOT NULL,
     idx INTEGER NOT NULL,
     hash BLOB NOT NULL,
     PRIMARY KEY (level, idx)
   ) STRICT, WITHOUT ROWID;
   CREATE TABLE audit_checkpoints (tree_size INTEGER PRIMARY KEY, jws TEXT NOT NULL) STRICT;
   CREATE TABLE audit_retention (
     cut INTEGER PRIMARY KEY,
     chain_head BLOB NOT NULL,
     checkpoint_jws TEXT NOT NULL,
     pruned_at TEXT NOT NULL,
     entries_pruned INTEGER NOT NULL
   ) STRICT;
   CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries ${refuse('audit_entries')};
   CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
     WHEN OLD.seq >= ${CUT} ${refuse('audit_entries')};
   CREATE TRIGGER audit_nodes_no_update BEFORE UPDATE ON audit_nodes ${refuse('audit_nodes')};
   CREATE TRIGGER audit_nodes_no_delete BEFORE DELETE ON audit_nodes
     WHEN (OLD.idx + 1) * (1 << OLD.level) > ${CUT} ${refuse('audit_nodes')};
   CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints ${refuse('audit_checkpoints')};
   CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
     WHEN OLD.tree_size >= ${CUT} ${refuse('audit_checkpoints')};
   CREATE TRIGGER audit_retention_no_update BEFORE UPDATE ON audit_retention ${refuse('audit_retention')};
   CREATE TRIGGER audit_retention_no_delete BEFORE DELETE ON audit_retention ${refuse('audit_retention')};`,
  // 2: the source record a provider or organisation entry names (`details.source`, `Type/id`), so a
  //    record's lineage is found without reading the whole trail. Virtual: nothing is rewritten.
  `ALTER TABLE audit_entries ADD COLUMN ${generated('source', 'details.source')};
   CREATE INDEX audit_entries_source ON audit_entries (source, seq) WHERE source IS NOT NULL;`,
];

interface EntryRow {
  seq: number;
  canonical: unknown;
  leaf_hash: Uint8Array;
  chain_hash: Uint8Array;
}

export interface SqliteAuditStoreOptions {
  /** The log id written when the tables are created (default: a random UUID). Ignored afterwards. */
  readonly logId?: string;
  /** Run WAL checkpoints on a worker thread (a database file the store opens itself). */
  readonly backgroundCheckpoints?: boolean;
  /**
   * Run appends on a thread of their own with their own connection (a database file the store opens
   * itself; see `store/writer-thread.ts`). Everything else runs on the caller's connection.
   */
  readonly appendThread?: boolean;
  /** Another connection checkpoints this database in the background (a writer thread's own). */
  readonly checkpointedElsewhere?: boolean;
}

export class SqliteAuditStore implements AuditStore {
  readonly #db: DatabaseSync;
  readonly #ownsDb: boolean;
  readonly #statements = new Map<string, StatementSync>();
  readonly #logId: string;

  /** Ends background checkpoints of this database (when they were asked for). */
  readonly #release: () => Promise<void>;

  /** Where appends run when they run on their own thread. */
  readonly #appender: WriterThread<AppendBatch> | undefined;

  private constructor(
    db: DatabaseSync,
    ownsDb: boolean,
    logId: string,
    release: () => Promise<void>,
    appender: WriterThread<AppendBatch> | undefined,
  ) {
    this.#db = db;
    this.#ownsDb = ownsDb;
    this.#logId = logId;
    this.#release = release;
    this.#appender = appender;
  }

  /**
   * Opens the audit tables in the database file at `target` (created if needed; `:memory:` for a
   * throw-away log) or in an already open database, which stays the caller's to close.
   */
  static open(target: string | DatabaseSync, options: SqliteAuditStoreOptions = {}): SqliteAuditStore {
    const ownsDb = typeof target === 'string';
    let db: DatabaseSync;
    try {
      db = typeof target === 'string' ? new DatabaseSync(target) : target;
      if (!db.isTransaction) {
        db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;');
      }
      // Seven indexes take a page cache larger than the 2 MB default to append without spilling.
      if (ownsDb) db.exec('PRAGMA cache_size = -32768;');
    } catch (err) {
      throw new SluiceError('STORE_OPEN_FAILED', 'The audit database could not be opened.', {
        cause: err,
        details: { path: typeof target === 'string' ? target : '(open database)' },
      });
    }
    try {
      const logId = migrate(db, options.logId ?? randomUUID());
      let release = async () => {};
      const file = typeof target === 'string' && target !== ':memory:' ? target : undefined;
      if (options.checkpointedElsewhere) deferAutocheckpoint(db);
      else if (options.backgroundCheckpoints && file !== undefined)
        release = checkpointInBackground(db, file);
      // The thread's connection appends; checkpoints stay with this process's checkpoint thread.
      const appender =
        options.appendThread && file !== undefined
          ? new WriterThread<AppendBatch>('audit', file, {
              checkpointedElsewhere: options.backgroundCheckpoints === true,
            })
          : undefined;
      return new SqliteAuditStore(db, ownsDb, logId, release, appender);
    } catch (err) {
      if (ownsDb) db.close();
      throw err;
    }
  }

  async logId(): Promise<string> {
    return this.#logId;
  }

  async size(): Promise<number> {
    return this.#size();
  }

  async entries(fromSeq: number, limit: number): Promise<StoredEntryRow[]> {
    const rows = this.#stmt(
      'SELECT seq, canonical, leaf_hash, chain_hash FROM audit_entries WHERE seq >= ? ORDER BY seq LIMIT ?',
    ).all(fromSeq, limit) as unknown as EntryRow[];
    return rows.map(fromRow);
  }

  async entry(seq: number): Promise<StoredEntryRow | undefined> {
    const row = this.#stmt(
      'SELECT seq, canonical, leaf_hash, chain_hash FROM audit_entries WHERE seq = ?',
    ).get(seq) as unknown as EntryRow | undefined;
    return row ? fromRow(row) : undefined;
  }

  async append(batch: AppendBatch): Promise<void> {
    if (this.#appender) return this.#appender.write(batch);
    this.#transaction(() => this.#append(batch));
  }

  async subtrees(keys: readonly Subtree[]): Promise<Map<string, Hash>> {
    const out = new Map<string, Hash>();
    const leaf = this.#stmt('SELECT leaf_hash AS hash FROM audit_entries WHERE seq = ?');
    const node = this.#stmt('SELECT hash FROM audit_nodes WHERE level = ? AND idx = ?');
    for (const key of keys) {
      const row = ((key.level === 0 ? leaf.get(key.index) : undefined) ?? node.get(key.level, key.index)) as
        | { hash: unknown }
        | undefined;
      if (row && row.hash instanceof Uint8Array) out.set(subtreeKey(key), row.hash);
    }
    return out;
  }

  async putCheckpoint(checkpoint: StoredCheckpoint): Promise<void> {
    this.#stmt('INSERT INTO audit_checkpoints (tree_size, jws) VALUES (?, ?)').run(
      checkpoint.treeSize,
      checkpoint.jws,
    );
  }

  async checkpoints(): Promise<StoredCheckpoint[]> {
    const rows = this.#stmt('SELECT tree_size, jws FROM audit_checkpoints ORDER BY tree_size').all() as {
      tree_size: number;
      jws: string;
    }[];
    return rows.map((r) => ({ treeSize: r.tree_size, jws: String(r.jws) }));
  }

  async latestCheckpoint(): Promise<StoredCheckpoint | undefined> {
    return this.#checkpoint('SELECT tree_size, jws FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1');
  }

  async checkpointCovering(size: number): Promise<StoredCheckpoint | undefined> {
    return this.#checkpoint(
      'SELECT tree_size, jws FROM audit_checkpoints WHERE tree_size >= ? ORDER BY tree_size LIMIT 1',
      size,
    );
  }

  async retentionBase(): Promise<RetentionBase | undefined> {
    const row = this.#stmt(
      'SELECT cut, chain_head, checkpoint_jws, pruned_at FROM audit_retention ORDER BY cut DESC LIMIT 1',
    ).get() as { cut: number; chain_head: Uint8Array; checkpoint_jws: string; pruned_at: string } | undefined;
    if (!row) return undefined;
    return {
      cut: row.cut,
      chainHead: row.chain_head,
      checkpointJws: row.checkpoint_jws,
      prunedAt: row.pruned_at,
    };
  }

  async firstSeqAtOrAfter(at: string, fromSeq: number): Promise<number | undefined> {
    const row = this.#stmt('SELECT min(seq) AS seq FROM audit_entries WHERE at >= ? AND seq >= ?').get(
      at,
      fromSeq,
    ) as { seq: number | null } | undefined;
    return row?.seq ?? undefined;
  }

  async prune(plan: PrunePlan): Promise<PruneCounts> {
    return this.#transaction(() => {
      const base = this.#cut();
      if (plan.cut <= base || plan.cut > this.#size()) {
        throw new SluiceError(
          'INTERNAL',
          `Retention cut ${plan.cut} is not between ${base} and the log size.`,
        );
      }
      const checkpoint = this.#stmt('SELECT jws FROM audit_checkpoints WHERE tree_size = ?').get(plan.cut) as
        | { jws: string }
        | undefined;
      if (checkpoint?.jws !== plan.checkpointJws) {
        throw new SluiceError('INTERNAL', `Retention cut ${plan.cut} is not at a stored checkpoint.`);
      }
      const entries = Number(
        (this.#stmt('SELECT count(*) AS n FROM audit_entries WHERE seq < ?').get(plan.cut) as { n: number })
          .n,
      );
      this.#stmt(
        'INSERT INTO audit_retention (cut, chain_head, checkpoint_jws, pruned_at, entries_pruned) VALUES (?, ?, ?, ?, ?)',
      ).run(plan.cut, plan.chainHead, plan.checkpointJws, plan.prunedAt, entries);
      this.#stmt('DELETE FROM audit_entries WHERE seq < ?').run(plan.cut);
      const nodes = Number(
        this.#stmt('DELETE FROM audit_nodes WHERE (idx + 1) * (1 << level) <= ?').run(plan.cut).changes,
      );
      const insertNode = this.#stmt('INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)');
      for (const node of plan.frontier) insertNode.run(node.level, node.index, node.hash);
      const checkpoints = Number(
        this.#stmt('DELETE FROM audit_checkpoints WHERE tree_size < ?').run(plan.cut).changes,
      );
      this.#append(plan.record);
      return { entries, nodes: nodes - plan.frontier.length, checkpoints };
    });
  }

  async search(criteria: EntrySearch): Promise<StoredEntryRow[]> {
    const where: string[] = [];
    const params: SQLInputValue[] = [];
    const equals = (column: string, value: string | undefined): void => {
      if (value === undefined) return;
      where.push(`${column} = ?`);
      params.push(value);
    };
    equals('subject', criteria.subject);
    equals('batch_id', criteria.batchId);
    equals('run_id', criteria.runId);
    equals('flow', criteria.flow);
    equals('recipient', criteria.recipient);
    equals('source', criteria.source);
    equals('outcome', criteria.outcome);
    if (criteria.kinds !== undefined) {
      where.push(`kind IN (${criteria.kinds.map(() => '?').join(', ')})`);
      params.push(...criteria.kinds);
    }
    if (criteria.from !== undefined) {
      where.push('at >= ?');
      params.push(criteria.from);
    }
    if (criteria.to !== undefined) {
      where.push('at < ?');
      params.push(criteria.to);
    }
    if (criteria.after !== undefined) {
      where.push(criteria.order === 'asc' ? 'seq > ?' : 'seq < ?');
      params.push(criteria.after);
    }
    // One kind and nothing more selective than the flow: the kind's own index, in seq order, stops at
    // the page's end; the planner, without statistics, walks the flow's whole trail for a rare kind.
    const byKindOnly =
      criteria.kinds?.length === 1 &&
      [criteria.subject, criteria.source, criteria.batchId, criteria.runId, criteria.recipient].every(
        (c) => c === undefined,
      );
    const sql =
      `SELECT seq, canonical, leaf_hash, chain_hash FROM audit_entries${byKindOnly ? ' INDEXED BY audit_entries_kind' : ''}` +
      (where.length > 0 ? ` WHERE ${where.join(' AND ')}` : '') +
      ` ORDER BY seq ${criteria.order === 'asc' ? 'ASC' : 'DESC'} LIMIT ?`;
    params.push(criteria.limit);
    const rows = this.#stmt(sql).all(...params) as unknown as EntryRow[];
    return rows.map(fromRow);
  }

  async close(): Promise<void> {
    await this.#appender?.close();
    await this.#release();
    this.#statements.clear();
    if (this.#ownsDb && this.#db.isOpen) this.#db.close();
  }

  #append(batch: AppendBatch): void {
    const size = this.#size();
    if (size !== batch.expectedSize) {
      throw new SluiceError(
        'AUDIT_CONCURRENT_APPEND',
        `The audit log grew to ${size} entries while a batch built on ${batch.expectedSize} was being written.`,
        { details: { size, expectedSize: batch.expectedSize } },
      );
    }
    const insertEntry = this.#stmt(
      'INSERT INTO audit_entries (seq, canonical, leaf_hash, chain_hash) VALUES (?, ?, ?, ?)',
    );
    const insertNode = this.#stmt('INSERT INTO audit_nodes (level, idx, hash) VALUES (?, ?, ?)');
    try {
      batch.entries.forEach((entry, i) => {
        if (entry.seq !== batch.expectedSize + i || typeof entry.canonical !== 'string') {
          throw new SluiceError('INTERNAL', 'An audit batch is not dense from the expected size.');
        }
        insertEntry.run(entry.seq, entry.canonical, entry.leafHash, entry.chainHash);
      });
      for (const node of batch.nodes) insertNode.run(node.level, node.index, node.hash);
    } catch (err) {
      if (err instanceof SluiceError) throw err;
      // A primary-key clash means stored rows exist beyond what the log says its size is: truncation.
      throw new SluiceError(
        'AUDIT_INTEGRITY',
        `Appending at ${batch.expectedSize} collided with stored audit rows; the log was truncated or altered.`,
        { cause: err, details: { expectedSize: batch.expectedSize } },
      );
    }
  }

  #size(): number {
    const row = this.#stmt('SELECT max(seq) AS seq FROM audit_entries').get() as { seq: number | null };
    return row.seq === null ? this.#cut() : row.seq + 1;
  }

  #cut(): number {
    const row = this.#stmt('SELECT coalesce(max(cut), 0) AS cut FROM audit_retention').get() as {
      cut: number;
    };
    return row.cut;
  }

  #checkpoint(sql: string, ...params: SQLInputValue[]): StoredCheckpoint | undefined {
    const row = this.#stmt(sql).get(...params) as { tree_size: number; jws: string } | undefined;
    return row ? { treeSize: row.tree_size, jws: String(row.jws) } : undefined;
  }

  #stmt(sql: string): StatementSync {
    let stmt = this.#statements.get(sql);
    if (!stmt) {
      stmt = this.#db.prepare(sql);
      this.#statements.set(sql, stmt);
    }
    return stmt;
  }

  /** One transaction, or a savepoint when the shared connection is already inside one. */
  #transaction<T>(fn: () => T): T {
    const nested = this.#db.isTransaction;
    this.#db.exec(nested ? 'SAVEPOINT audit_tx' : 'BEGIN IMMEDIATE');
    try {
      const result = fn();
      this.#db.exec(nested ? 'RELEASE audit_tx' : 'COMMIT');
      return result;
    } catch (err) {
      this.#db.exec(nested ? 'ROLLBACK TO audit_tx; RELEASE audit_tx' : 'ROLLBACK');
      throw err;
    }
  }
}

function fromRow(row: EntryRow): StoredEntryRow {
  return { seq: row.seq, canonical: row.canonical, leafHash: row.leaf_hash, chainHash: row.chain_hash };
}

function migrate(db: DatabaseSync, newLogId: string): string {
  db.exec('CREATE TABLE IF NOT EXISTS audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT');
  const read = (key: string): string | undefined =>
    (db.prepare('SELECT value FROM audit_meta WHERE key = ?').get(key) as { value: string } | undefined)
      ?.value;
  const version = (): number => {
    const current = Number(read('schema_version') ?? 0);
    if (current > SCHEMA_VERSION) {
      throw new SluiceError('STORE_NEWER_SCHEMA', 'The audit tables were written by a newer Sluice.', {
        details: { schemaVersion: current },
      });
    }
    return current;
  };
  if (version() < SCHEMA_VERSION) {
    const nested = db.isTransaction;
    db.exec(nested ? 'SAVEPOINT audit_migrate' : 'BEGIN IMMEDIATE');
    // Read again under the write lock: another process may have created the tables meanwhile.
    let current = 0;
    try {
      current = version();
      for (let v = current; v < SCHEMA_VERSION; v++) db.exec(MIGRATIONS[v] ?? '');
      db.prepare(
        "INSERT INTO audit_meta (key, value) VALUES ('schema_version', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      ).run(String(SCHEMA_VERSION));
      db.prepare("INSERT OR IGNORE INTO audit_meta (key, value) VALUES ('log_id', ?)").run(newLogId);
      db.exec(nested ? 'RELEASE audit_migrate' : 'COMMIT');
    } catch (err) {
      db.exec(nested ? 'ROLLBACK TO audit_migrate; RELEASE audit_migrate' : 'ROLLBACK');
      if (err instanceof SluiceError) throw err;
      throw new SluiceError('STORE_MIGRATION_FAILED', 'Creating or upgrading the audit tables failed.', {
        cause: err,
        details: { fromVersion: current, toVersion: SCHEMA_VERSION },
      });
    }
  }
  const logId = read('log_id');
  if (logId === undefined) throw new SluiceError('AUDIT_INTEGRITY', 'The audit database has no log id.');
  return logId;
}
