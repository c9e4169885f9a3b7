import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { SluiceError } from '../../core/errors/index.ts';
import {
  checkSchemaName,
  ensureSchema,
  inTransaction,
  openPool,
  passwordsOf,
  scrubbed,
  serverOf,
} from '../store/pg-connection.ts';
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
 * The audit trail in PostgreSQL (cluster mode): the tables of the SQLite store, in a schema of their
 * own (default `sluice`), with every row keyed by `log`, the trail's name (a flow's name), so the
 * trails of several flows share one schema and stay independent.
 *
 * Several processes, on several machines, may append to one trail. Every write (append, checkpoint,
 * prune) runs in one transaction that first locks the trail's row in `audit_logs` (`FOR UPDATE`), so
 * writers of one trail take turns: a batch built on a size that moved meanwhile is refused
 * (AUDIT_CONCURRENT_APPEND) with nothing written, and two batches built on the same size can never
 * both land. `exclusive` holds that lock across a reload of the head and the append, so the writer
 * that lost a race rebuilds its batch without racing again.
 *
 * The canonical text is stored as TEXT exactly as given (never JSONB, which reorders keys: verification
 * re-hashes the text), hashes as BYTEA. The searchable columns are filled from the canonical text by a
 * trigger on insert, whatever the writer gave, so they cannot say anything the hashed entry does not
 * (version 1 had them as generated columns: nine JSON parses a row, each in a subtransaction, about four
 * times the cost of the one parse the trigger makes); triggers make the tables append-only for every
 * writer: updates always abort, deletes abort unless they are below a recorded retention cut.
 */

const SCHEMA_VERSION = 2;

/** The searchable columns of `audit_entries` and where in the canonical entry each is found. */
const ENTRY_FIELDS: readonly (readonly [column: string, path: string])[] = [
  ['at', '{at}'],
  ['kind', '{kind}'],
  ['flow', '{flow}'],
  ['run_id', '{runId}'],
  ['batch_id', '{batchId}'],
  ['recipient', '{recipient}'],
  ['subject', '{subject}'],
  ['outcome', '{outcome}'],
  ['source', '{details,source}'],
];
const DEFAULT_SCHEMA = 'sluice';
const DEFAULT_POOL_SIZE = 2;

/** The one migration lock of the audit tables of a schema (two 32-bit keys). */
const MIGRATION_LOCK = 'SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))';

/** The audit tables' migrations in a schema, one SQL text per version (exported for the upgrade test). */
export function auditMigrations(s: string): readonly string[] {
  const field = (column: string, path: string): string =>
    `${column} TEXT COLLATE "C" GENERATED ALWAYS AS (${s}.audit_field(canonical, '${path}')) STORED`;
  const refuse = (table: string, op: 'UPDATE' | 'DELETE' | 'TRUNCATE', fn = 'audit_refuse'): string =>
    `CREATE TRIGGER ${table}_no_${op.toLowerCase()} BEFORE ${op} ON ${s}.${table}
       FOR EACH ${op === 'TRUNCATE' ? 'STATEMENT' : 'ROW'} EXECUTE FUNCTION ${s}.${fn}();`;
  const guardDelete = (name: string, kept: string): string =>
    `CREATE FUNCTION ${s}.${name}() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       IF ${kept} THEN
         RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'raise_exception';
       END IF;
       RETURN OLD;
     END $$;`;
  const CUT = `${s}.audit_cut(OLD.log)`;
  return [
    `CREATE FUNCTION ${s}.audit_field(canonical TEXT, path TEXT[]) RETURNS TEXT
       LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
     BEGIN
       RETURN canonical::jsonb #>> path;
     EXCEPTION WHEN others THEN
       RETURN NULL; -- not JSON (a tampered row): nothing to search by; verification reports it
     END $$;
     CREATE TABLE ${s}.audit_logs (
       log TEXT COLLATE "C" PRIMARY KEY,
       log_id TEXT NOT NULL,
       created_at TIMESTAMPTZ NOT NULL DEFAULT now()
     );
     CREATE TABLE ${s}.audit_entries (
       log TEXT COLLATE "C" NOT NULL,
       seq BIGINT NOT NULL,
       canonical TEXT NOT NULL,
       leaf_hash BYTEA NOT NULL,
       chain_hash BYTEA NOT NULL,
       ${ENTRY_FIELDS.map(([column, path]) => field(column, path)).join(',\n       ')},
       PRIMARY KEY (log, seq)
     );
     CREATE INDEX audit_entries_at ON ${s}.audit_entries (log, at);
     CREATE INDEX audit_entries_kind ON ${s}.audit_entries (log, kind, seq);
     CREATE INDEX audit_entries_flow ON ${s}.audit_entries (log, flow, seq);
     CREATE INDEX audit_entries_subject ON ${s}.audit_entries (log, subject, seq) WHERE subject IS NOT NULL;
     CREATE INDEX audit_entries_batch ON ${s}.audit_entries (log, batch_id, seq) WHERE batch_id IS NOT NULL;
     CREATE INDEX audit_entries_run ON ${s}.audit_entries (log, run_id, seq) WHERE run_id IS NOT NULL;
     CREATE INDEX audit_entries_recipient ON ${s}.audit_entries (log, recipient, seq)
       WHERE recipient IS NOT NULL;
     CREATE INDEX audit_entries_source ON ${s}.audit_entries (log, source, seq) WHERE source IS NOT NULL;
     CREATE TABLE ${s}.audit_nodes (
       log TEXT COLLATE "C" NOT NULL,
       level INTEGER NOT NULL,
       idx BIGINT NOT NULL,
       hash BYTEA NOT NULL,
       PRIMARY KEY (log, level, idx)
     );
     CREATE TABLE ${s}.audit_checkpoints (
       log TEXT COLLATE "C" NOT NULL,
       tree_size BIGINT NOT NULL,
       jws TEXT NOT NULL,
       PRIMARY KEY (log, tree_size)
     );
     CREATE TABLE ${s}.audit_retention (
       log TEXT COLLATE "C" NOT NULL,
       cut BIGINT NOT NULL,
       chain_head BYTEA NOT NULL,
       checkpoint_jws TEXT NOT NULL,
       pruned_at TEXT NOT NULL,
       entries_pruned BIGINT NOT NULL,
       PRIMARY KEY (log, cut)
     );
     CREATE FUNCTION ${s}.audit_cut(trail TEXT) RETURNS BIGINT LANGUAGE sql STABLE AS $$
       SELECT coalesce(max(cut), 0) FROM ${s}.audit_retention WHERE log = trail
     $$;
     CREATE FUNCTION ${s}.audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'raise_exception';
     END $$;
     ${guardDelete('audit_entries_guard', `OLD.seq >= ${CUT}`)}
     ${guardDelete('audit_nodes_guard', `(OLD.idx + 1) * (1::BIGINT << OLD.level) > ${CUT}`)}
     ${guardDelete('audit_checkpoints_guard', `OLD.tree_size >= ${CUT}`)}
     ${['audit_logs', 'audit_entries', 'audit_nodes', 'audit_checkpoints', 'audit_retention']
       .flatMap((t) => [refuse(t, 'UPDATE'), refuse(t, 'TRUNCATE')])
       .join('\n')}
     ${refuse('audit_logs', 'DELETE')}
     ${refuse('audit_retention', 'DELETE')}
     ${refuse('audit_entries', 'DELETE', 'audit_entries_guard')}
     ${refuse('audit_nodes', 'DELETE', 'audit_nodes_guard')}
     ${refuse('audit_checkpoints', 'DELETE', 'audit_checkpoints_guard')}`,
    // 2: the searchable columns filled by one trigger that parses the entry once, instead of generated.
    `CREATE FUNCTION ${s}.audit_entry_fields() RETURNS trigger LANGUAGE plpgsql AS $$
     DECLARE
       entry JSONB;
     BEGIN
       BEGIN
         entry := NEW.canonical::jsonb;
       EXCEPTION WHEN others THEN
         entry := NULL; -- not JSON (a tampered row): nothing to search by; verification reports it
       END;
       ${ENTRY_FIELDS.map(([column, path]) => `NEW.${column} := entry #>> '${path}';`).join('\n       ')}
       RETURN NEW;
     END $$;
     ALTER TABLE ${s}.audit_entries ${ENTRY_FIELDS.map(([column]) => `ALTER COLUMN ${column} DROP EXPRESSION`).join(', ')};
     CREATE TRIGGER audit_entries_fields BEFORE INSERT ON ${s}.audit_entries
       FOR EACH ROW EXECUTE FUNCTION ${s}.audit_entry_fields();`,
  ];
}

export interface PostgresAuditStoreOptions {
  /** `postgres://user:password@host:port/database` (the password is never repeated in errors). */
  readonly url: string;
  /** The schema of the audit tables (default `sluice`; created if missing). */
  readonly schema?: string;
  /** The trail's name (a flow's name): several trails share one schema, every row is keyed by it. */
  readonly log: string;
  /** The log id written when the trail is created (default: a random UUID). Ignored afterwards. */
  readonly logId?: string;
  /** Connections in the pool (default 2). */
  readonly poolSize?: number;
}

interface EntryRow {
  seq: string;
  canonical: string;
  leaf_hash: Buffer;
  chain_hash: Buffer;
}

/** A pool or one of its connections (inside a transaction). */
type Db = pg.Pool | pg.PoolClient;

interface Shared {
  readonly pool: pg.Pool;
  readonly schema: string;
  readonly log: string;
  readonly logId: string;
  closed: boolean;
}

export class PostgresAuditStore implements AuditStore {
  readonly #shared: Shared;
  /** The connection of the transaction holding the trail's lock, for a store bound to it (`exclusive`). */
  readonly #locked: pg.PoolClient | undefined;

  private constructor(shared: Shared, locked: pg.PoolClient | undefined) {
    this.#shared = shared;
    this.#locked = locked;
  }

  /** Opens (creating the schema, tables and the trail if needed) the trail `log` in `schema`. */
  static async open(options: PostgresAuditStoreOptions): Promise<PostgresAuditStore> {
    const schema = checkSchemaName(options.schema ?? DEFAULT_SCHEMA);
    if (typeof options.log !== 'string' || options.log.length === 0 || options.log.length > 255) {
      throw new SluiceError(
        'CFG_FLOW_INVALID',
        'The audit trail needs a name (the flow name), at most 255 characters.',
      );
    }
    const poolSize = options.poolSize ?? DEFAULT_POOL_SIZE;
    if (!Number.isSafeInteger(poolSize) || poolSize < 1) {
      throw new SluiceError('CFG_FLOW_INVALID', 'The audit store pool size must be a positive integer.');
    }
    let pool: pg.Pool;
    try {
      pool = new pg.Pool({ connectionString: options.url, max: poolSize, connectionTimeoutMillis: 10_000 });
    } catch (err) {
      throw openFailed(options.url, options.log, err);
    }
    const logId = await openPool(
      pool,
      (err) => openFailed(options.url, options.log, err),
      (client) => migrate(client, schema, options.log, options.logId ?? randomUUID()),
    );
    return new PostgresAuditStore({ pool, schema, log: options.log, logId, closed: false }, undefined);
  }

  async logId(): Promise<string> {
    return this.#shared.logId;
  }

  async size(): Promise<number> {
    return this.#size(this.#db);
  }

  async entries(fromSeq: number, limit: number): Promise<StoredEntryRow[]> {
    const rows = await this.#rows<EntryRow>(
      this.#db,
      `SELECT seq, canonical, leaf_hash, chain_hash FROM ${this.#t('audit_entries')}
       WHERE log = $1 AND seq >= $2 ORDER BY seq LIMIT $3`,
      [fromSeq, limit],
    );
    return rows.map(fromRow);
  }

  async entry(seq: number): Promise<StoredEntryRow | undefined> {
    const [row] = await this.#rows<EntryRow>(
      this.#db,
      `SELECT seq, canonical, leaf_hash, chain_hash FROM ${this.#t('audit_entries')} WHERE log = $1 AND seq = $2`,
      [seq],
    );
    return row ? fromRow(row) : undefined;
  }

  async append(batch: AppendBatch): Promise<void> {
    await this.#write((db) => this.#append(db, batch));
  }

  async subtrees(keys: readonly Subtree[]): Promise<Map<string, Hash>> {
    const out = new Map<string, Hash>();
    if (keys.length === 0) return out;
    // A leaf (level 0) is its entry's leaf hash, or a node kept of a pruned prefix.
    const rows = await this.#rows<{ level: number; idx: string; hash: Buffer | null }>(
      this.#db,
      `SELECT k.level, k.idx, coalesce(e.leaf_hash, n.hash) AS hash
       FROM unnest($2::INTEGER[], $3::BIGINT[]) AS k (level, idx)
       LEFT JOIN ${this.#t('audit_entries')} e ON k.level = 0 AND e.log = $1 AND e.seq = k.idx
       LEFT JOIN ${this.#t('audit_nodes')} n ON n.log = $1 AND n.level = k.level AND n.idx = k.idx`,
      [keys.map((k) => k.level), keys.map((k) => k.index)],
    );
    for (const row of rows) {
      if (row.hash) out.set(subtreeKey({ level: row.level, index: Number(row.idx) }), bytes(row.hash));
    }
    return out;
  }

  /**
   * Stores a checkpoint. Two writers of one trail may seal the same size at once (both signatures are
   * over the same tree, appends being serialised): the first one stored is kept.
   */
  async putCheckpoint(checkpoint: StoredCheckpoint): Promise<void> {
    await this.#write(async (db) => {
      await this.#rows(
        db,
        `INSERT INTO ${this.#t('audit_checkpoints')} (log, tree_size, jws) VALUES ($1, $2, $3)
         ON CONFLICT (log, tree_size) DO NOTHING`,
        [checkpoint.treeSize, checkpoint.jws],
      );
    });
  }

  async checkpoints(): Promise<StoredCheckpoint[]> {
    const rows = await this.#rows<{ tree_size: string; jws: string }>(
      this.#db,
      `SELECT tree_size, jws FROM ${this.#t('audit_checkpoints')} WHERE log = $1 ORDER BY tree_size`,
      [],
    );
    return rows.map(toCheckpoint);
  }

  async latestCheckpoint(): Promise<StoredCheckpoint | undefined> {
    const [row] = await this.#rows<{ tree_size: string; jws: string }>(
      this.#db,
      `SELECT tree_size, jws FROM ${this.#t('audit_checkpoints')} WHERE log = $1 ORDER BY tree_size DESC LIMIT 1`,
      [],
    );
    return row ? toCheckpoint(row) : undefined;
  }

  async checkpointCovering(size: number): Promise<StoredCheckpoint | undefined> {
    const [row] = await this.#rows<{ tree_size: string; jws: string }>(
      this.#db,
      `SELECT tree_size, jws FROM ${this.#t('audit_checkpoints')}
       WHERE log = $1 AND tree_size >= $2 ORDER BY tree_size LIMIT 1`,
      [size],
    );
    return row ? toCheckpoint(row) : undefined;
  }

  async retentionBase(): Promise<RetentionBase | undefined> {
    const [row] = await this.#rows<{
      cut: string;
      chain_head: Buffer;
      checkpoint_jws: string;
      pruned_at: string;
    }>(
      this.#db,
      `SELECT cut, chain_head, checkpoint_jws, pruned_at FROM ${this.#t('audit_retention')}
       WHERE log = $1 ORDER BY cut DESC LIMIT 1`,
      [],
    );
    if (!row) return undefined;
    return {
      cut: Number(row.cut),
      chainHead: bytes(row.chain_head),
      checkpointJws: row.checkpoint_jws,
      prunedAt: row.pruned_at,
    };
  }

  async firstSeqAtOrAfter(at: string, fromSeq: number): Promise<number | undefined> {
    const [row] = await this.#rows<{ seq: string | null }>(
      this.#db,
      `SELECT min(seq) AS seq FROM ${this.#t('audit_entries')} WHERE log = $1 AND at >= $2 AND seq >= $3`,
      [at, fromSeq],
    );
    return row?.seq == null ? undefined : Number(row.seq);
  }

  async prune(plan: PrunePlan): Promise<PruneCounts> {
    return this.#write(async (db) => {
      const base = await this.#cut(db);
      if (plan.cut <= base || plan.cut > (await this.#size(db))) {
        throw new SluiceError(
          'INTERNAL',
          `Retention cut ${plan.cut} is not between ${base} and the log size.`,
        );
      }
      const [checkpoint] = await this.#rows<{ jws: string }>(
        db,
        `SELECT jws FROM ${this.#t('audit_checkpoints')} WHERE log = $1 AND tree_size = $2`,
        [plan.cut],
      );
      if (checkpoint?.jws !== plan.checkpointJws) {
        throw new SluiceError('INTERNAL', `Retention cut ${plan.cut} is not at a stored checkpoint.`);
      }
      const [counted] = await this.#rows<{ n: string }>(
        db,
        `SELECT count(*) AS n FROM ${this.#t('audit_entries')} WHERE log = $1 AND seq < $2`,
        [plan.cut],
      );
      const entries = Number(counted?.n ?? 0);
      // The retention row first: the delete triggers allow what lies below the recorded cut.
      await this.#rows(
        db,
        `INSERT INTO ${this.#t('audit_retention')} (log, cut, chain_head, checkpoint_jws, pruned_at, entries_pruned)
         VALUES ($1, $2, $3, $4, $5, $6)`,
        [plan.cut, toBuffer(plan.chainHead), plan.checkpointJws, plan.prunedAt, entries],
      );
      await this.#rows(db, `DELETE FROM ${this.#t('audit_entries')} WHERE log = $1 AND seq < $2`, [plan.cut]);
      const nodes = await this.#count(
        db,
        `DELETE FROM ${this.#t('audit_nodes')} WHERE log = $1 AND (idx + 1) * (1::BIGINT << level) <= $2`,
        [plan.cut],
      );
      await this.#insertNodes(db, plan.frontier);
      const checkpoints = await this.#count(
        db,
        `DELETE FROM ${this.#t('audit_checkpoints')} WHERE log = $1 AND tree_size < $2`,
        [plan.cut],
      );
      await this.#append(db, plan.record);
      return { entries, nodes: nodes - plan.frontier.length, checkpoints };
    });
  }

  async search(criteria: EntrySearch): Promise<StoredEntryRow[]> {
    const where: string[] = ['log = $1'];
    const params: unknown[] = [];
    const param = (value: unknown): string => {
      params.push(value);
      return `$${params.length + 1}`;
    };
    const equals = (column: string, value: string | undefined): void => {
      if (value !== undefined) where.push(`${column} = ${param(value)}`);
    };
    equals('subject', criteria.subject);
    equals('batch_id', criteria.batchId);
    equals('run_id', criteria.runId);
    equals('flow', criteria.flow);
    equals('recipient', criteria.recipient);
    equals('source', criteria.source);
    equals('outcome', criteria.outcome);
    if (criteria.kinds !== undefined) where.push(`kind = ANY(${param([...criteria.kinds])}::TEXT[])`);
    if (criteria.from !== undefined) where.push(`at >= ${param(criteria.from)}`);
    if (criteria.to !== undefined) where.push(`at < ${param(criteria.to)}`);
    if (criteria.after !== undefined) {
      where.push(`seq ${criteria.order === 'asc' ? '>' : '<'} ${param(criteria.after)}`);
    }
    const sql =
      `SELECT seq, canonical, leaf_hash, chain_hash FROM ${this.#t('audit_entries')} WHERE ${where.join(' AND ')}` +
      ` ORDER BY seq ${criteria.order === 'asc' ? 'ASC' : 'DESC'} LIMIT ${param(criteria.limit)}`;
    const rows = await this.#rows<EntryRow>(this.#db, sql, params);
    return rows.map(fromRow);
  }

  /**
   * Runs `fn` holding the trail's write lock, with a store bound to the locking transaction: what `fn`
   * reads is the head no other writer can move, what it writes commits together (or not at all).
   */
  async exclusive<T>(fn: (locked: AuditStore) => Promise<T>): Promise<T> {
    return this.#write((db) => fn(new PostgresAuditStore(this.#shared, db)));
  }

  /** Ends the pool (a store bound to a lock leaves it to the store it came from). */
  async close(): Promise<void> {
    if (this.#locked || this.#shared.closed) return;
    this.#shared.closed = true;
    await this.#shared.pool.end();
  }

  get #db(): Db {
    return this.#locked ?? this.#shared.pool;
  }

  #t(table: string): string {
    return `${this.#shared.schema}.${table}`;
  }

  /** Runs a statement with the trail's name as $1, before `params`. */
  async #rows<R extends pg.QueryResultRow>(db: Db, sql: string, params: readonly unknown[]): Promise<R[]> {
    return (await db.query<R>(sql, [this.#shared.log, ...params])).rows;
  }

  async #count(db: Db, sql: string, params: readonly unknown[]): Promise<number> {
    return (await db.query(sql, [this.#shared.log, ...params])).rowCount ?? 0;
  }

  /**
   * One transaction holding the trail's lock; inside `exclusive`, a savepoint of its transaction, so a
   * write refused there is undone alone.
   */
  async #write<T>(fn: (db: pg.PoolClient) => Promise<T>): Promise<T> {
    if (this.#locked) {
      const client = this.#locked;
      await client.query('SAVEPOINT audit_write');
      try {
        const result = await fn(client);
        await client.query('RELEASE SAVEPOINT audit_write');
        return result;
      } catch (err) {
        await client.query('ROLLBACK TO SAVEPOINT audit_write; RELEASE SAVEPOINT audit_write');
        throw err;
      }
    }
    return inTransaction(this.#shared.pool, async (client) => {
      const [locked] = await this.#rows(
        client,
        `SELECT 1 FROM ${this.#t('audit_logs')} WHERE log = $1 FOR UPDATE`,
        [],
      );
      if (!locked) {
        throw new SluiceError(
          'AUDIT_INTEGRITY',
          `The audit trail ${this.#shared.log} has no log id any more.`,
        );
      }
      return fn(client);
    });
  }

  async #append(db: pg.PoolClient, batch: AppendBatch): Promise<void> {
    const size = await this.#size(db);
    if (size !== batch.expectedSize) {
      throw new SluiceError(
        'AUDIT_CONCURRENT_APPEND',
        `The audit log grew to ${size} entries while a batch built on ${batch.expectedSize} was being written.`,
        { details: { size, expectedSize: batch.expectedSize } },
      );
    }
    batch.entries.forEach((entry, i) => {
      if (entry.seq !== batch.expectedSize + i || typeof entry.canonical !== 'string') {
        throw new SluiceError('INTERNAL', 'An audit batch is not dense from the expected size.');
      }
    });
    try {
      if (batch.entries.length > 0) {
        await this.#rows(
          db,
          `INSERT INTO ${this.#t('audit_entries')} (log, seq, canonical, leaf_hash, chain_hash)
           SELECT $1, * FROM unnest($2::BIGINT[], $3::TEXT[], $4::BYTEA[], $5::BYTEA[])`,
          [
            batch.entries.map((e) => e.seq),
            batch.entries.map((e) => e.canonical as string),
            batch.entries.map((e) => toBuffer(e.leafHash)),
            batch.entries.map((e) => toBuffer(e.chainHash)),
          ],
        );
      }
      await this.#insertNodes(db, batch.nodes);
    } catch (err) {
      if ((err as { code?: unknown }).code !== '23505') throw err;
      // A primary-key clash means stored rows exist beyond what the log says its size is: truncation.
      throw new SluiceError(
        'AUDIT_INTEGRITY',
        `Appending at ${batch.expectedSize} collided with stored audit rows; the log was truncated or altered.`,
        { cause: err, details: { expectedSize: batch.expectedSize } },
      );
    }
  }

  async #insertNodes(db: pg.PoolClient, nodes: readonly { level: number; index: number; hash: Hash }[]) {
    if (nodes.length === 0) return;
    await this.#rows(
      db,
      `INSERT INTO ${this.#t('audit_nodes')} (log, level, idx, hash)
       SELECT $1, * FROM unnest($2::INTEGER[], $3::BIGINT[], $4::BYTEA[])`,
      [nodes.map((n) => n.level), nodes.map((n) => n.index), nodes.map((n) => toBuffer(n.hash))],
    );
  }

  async #size(db: Db): Promise<number> {
    const [row] = await this.#rows<{ top: string | null; cut: string }>(
      db,
      `SELECT (SELECT max(seq) FROM ${this.#t('audit_entries')} WHERE log = $1) AS top,
              (SELECT coalesce(max(cut), 0) FROM ${this.#t('audit_retention')} WHERE log = $1) AS cut`,
      [],
    );
    if (!row) return 0;
    return row.top === null ? Number(row.cut) : Number(row.top) + 1;
  }

  async #cut(db: Db): Promise<number> {
    const [row] = await this.#rows<{ cut: string }>(
      db,
      `SELECT coalesce(max(cut), 0) AS cut FROM ${this.#t('audit_retention')} WHERE log = $1`,
      [],
    );
    return Number(row?.cut ?? 0);
  }
}

/** Creates or upgrades the audit tables and the trail, under a lock other openers wait for. */
async function migrate(
  client: pg.PoolClient,
  schema: string,
  log: string,
  newLogId: string,
): Promise<string> {
  let current = 0;
  try {
    await client.query('BEGIN');
    await client.query(MIGRATION_LOCK, ['sluice audit migrations', schema]);
    // CREATE SCHEMA needs a privilege a schema prepared by a DBA does not: only when it is missing, and
    // surviving the state store creating it at the same moment (see ensureSchema).
    await ensureSchema(client, schema, 'audit_schema');
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${schema}.audit_schema_version (
         version INTEGER PRIMARY KEY,
         applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
       )`,
    );
    const found = await client.query<{ v: number | null }>(
      `SELECT max(version) AS v FROM ${schema}.audit_schema_version`,
    );
    current = found.rows[0]?.v ?? 0;
    if (current > SCHEMA_VERSION) {
      throw new SluiceError('STORE_NEWER_SCHEMA', 'The audit tables were written by a newer Sluice.', {
        details: { schemaVersion: current, schema },
      });
    }
    const steps = auditMigrations(schema);
    for (let v = current; v < SCHEMA_VERSION; v++) {
      await client.query(steps[v] ?? '');
      await client.query(`INSERT INTO ${schema}.audit_schema_version (version) VALUES ($1)`, [v + 1]);
    }
    await client.query(
      `INSERT INTO ${schema}.audit_logs (log, log_id) VALUES ($1, $2) ON CONFLICT (log) DO NOTHING`,
      [log, newLogId],
    );
    const row = await client.query<{ log_id: string }>(
      `SELECT log_id FROM ${schema}.audit_logs WHERE log = $1`,
      [log],
    );
    await client.query('COMMIT');
    const logId = row.rows[0]?.log_id;
    if (logId === undefined) throw new SluiceError('AUDIT_INTEGRITY', 'The audit trail has no log id.');
    return logId;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    if (err instanceof SluiceError) throw err;
    throw new SluiceError('STORE_MIGRATION_FAILED', 'Creating or upgrading the audit tables failed.', {
      cause: err,
      details: { fromVersion: current, toVersion: SCHEMA_VERSION, schema },
    });
  }
}

/**
 * The driver's error, as a message that names the server and never the password: the cause is left
 * out (a URL parse error carries the whole URL), and the URL's secrets are blanked should the text hold
 * them.
 */
function openFailed(url: string, log: string, err: unknown): SluiceError {
  const server = serverOf(url);
  const reason = scrubbed(err, passwordsOf(url)).message;
  const code = (err as { code?: unknown }).code;
  return new SluiceError(
    'STORE_OPEN_FAILED',
    `The audit trail ${log} could not be opened: PostgreSQL at ${server} is not reachable (${reason}).`,
    { details: { server, ...(typeof code === 'string' ? { reason: code } : {}) } },
  );
}

function fromRow(row: EntryRow): StoredEntryRow {
  return {
    seq: Number(row.seq),
    canonical: row.canonical,
    leafHash: bytes(row.leaf_hash),
    chainHash: bytes(row.chain_hash),
  };
}

function toCheckpoint(row: { tree_size: string; jws: string }): StoredCheckpoint {
  return { treeSize: Number(row.tree_size), jws: row.jws };
}

/** A plain Uint8Array copy, as the SQLite store returns (the driver's Buffers may share a slab). */
function bytes(buffer: Buffer): Uint8Array {
  return new Uint8Array(buffer);
}

function toBuffer(value: Uint8Array): Buffer {
  return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}
