import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite';
import { SluiceError } from '../../core/errors/index.ts';
import { utcInstant } from '../../core/fhir/instant.ts';
import { checkpointInBackground, deferAutocheckpoint } from './background-checkpoints.ts';
import { SQLITE_MIGRATIONS } from './migrations.ts';
import { openPayload, type PayloadKey, sealPayload } from './payload-cipher.ts';
import type {
  BatchManifest,
  ChangeLogEntry,
  Checkpoint,
  ConsentLookup,
  Halt,
  LedgerEntry,
  NewRefusedRemoval,
  PageCommit,
  QuarantineEntry,
  QuarantineFilter,
  QuarantineStatus,
  RefusedRemoval,
  RunRecord,
  SeenVersion,
  StateStore,
  StoredConsent,
} from './state-store.ts';
import {
  changeLogAad,
  checkpointRowValues,
  commitKeys,
  provenanceResource,
  provenanceRow,
  QUARANTINE_COLUMNS,
  quarantineAad,
  quarantineConditions,
  quarantineRowValues,
  toBatch,
  toCheckpoint,
  toLedger,
  toQuarantine,
  toRefusedRemoval,
  toRun,
} from './store-rows.ts';
import { WriterThread } from './writer-thread.ts';

type Row = Record<string, SQLInputValue>;

/** The WHERE clause of a quarantine selection (empty when nothing is selected), with its arguments. */
function quarantineWhere(filter: Omit<QuarantineFilter, 'limit'>): { where: string; args: SQLInputValue[] } {
  const conditions = quarantineConditions(filter);
  return {
    where: conditions.length ? `WHERE ${conditions.map((c) => `${c.column} = ?`).join(' AND ')}` : '',
    args: conditions.map((c) => c.value),
  };
}

const DROP_REFUSED_REMOVAL = 'DELETE FROM refused_removals WHERE flow = ? AND object = ? AND external_id = ?';

/**
 * The embedded state store on `node:sqlite`: WAL for concurrent readers, `synchronous=FULL` so a
 * committed page survives a crash, one transaction per page of work.
 */
export class SqliteStateStore implements StateStore {
  readonly kind = 'sqlite';
  readonly #db: DatabaseSync;
  readonly #now: () => Date;

  /** Statements prepared once per connection (the page commit runs hundreds of times per run). */
  readonly #statements = new Map<string, StatementSync>();

  #statement(sql: string): StatementSync {
    let statement = this.#statements.get(sql);
    if (statement === undefined) {
      statement = this.#db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  /** Ends background checkpoints of this database (when they were asked for). */
  readonly #release: () => Promise<void>;

  /** Where page commits run when they run on their own thread. */
  readonly #committer: WriterThread<PageCommit> | undefined;

  /** Seals the record copies kept (quarantine, change log); undefined: they are stored as they are. */
  readonly #payloadKey: PayloadKey | undefined;

  private constructor(
    db: DatabaseSync,
    now: () => Date,
    release: () => Promise<void>,
    committer: WriterThread<PageCommit> | undefined,
    payloadKey: PayloadKey | undefined,
  ) {
    this.#db = db;
    this.#now = now;
    this.#release = release;
    this.#committer = committer;
    this.#payloadKey = payloadKey;
  }

  /**
   * Opens (creating if needed) the store at `path` (`:memory:` for tests) and migrates it. With
   * `backgroundCheckpoints`, WAL checkpoints run on a worker thread (see `background-checkpoints.ts`).
   * With `commitThread` (a file, not `:memory:`), page commits run on a thread of their own with their
   * own connection (see `writer-thread.ts`), stamped with the real clock; everything else runs here.
   */
  static open(
    path: string,
    options: {
      now?: () => Date;
      backgroundCheckpoints?: boolean;
      commitThread?: boolean;
      /** Another connection checkpoints this database in the background (a writer thread's own). */
      checkpointedElsewhere?: boolean;
      /** Seals quarantined records and change-log copies (see `payload-cipher.ts`). */
      payloadKey?: PayloadKey;
    } = {},
  ): SqliteStateStore {
    let db: DatabaseSync;
    try {
      // The state holds quarantined records (PHI): a new state directory is the owner's alone.
      if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      db = new DatabaseSync(path, { timeout: 5000 });
      // A 32 MiB page cache (bounded): the ledger, version and provenance indexes are keyed by ids and
      // pseudonyms in no particular order, so at millions of rows the default 2 MiB re-reads pages.
      // `secure_delete = FAST` zeroes the space SQLite frees or leaves unused in the pages it writes,
      // so a record erased (a closed quarantine entry, a pruned change log) leaves no copy in the file.
      db.exec(
        'PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA cache_size = -32768; PRAGMA secure_delete = FAST;',
      );
    } catch (err) {
      throw new SluiceError('STORE_OPEN_FAILED', `Cannot open the state store at ${path}.`, {
        cause: err,
        details: { path },
      });
    }
    migrate(db, path);
    let release = async () => {};
    if (options.checkpointedElsewhere) deferAutocheckpoint(db);
    else if (options.backgroundCheckpoints && path !== ':memory:') release = checkpointInBackground(db, path);
    // The thread's connection commits the pages; checkpoints stay with this process's checkpoint thread.
    const committer =
      options.commitThread && path !== ':memory:'
        ? new WriterThread<PageCommit>('state', path, {
            checkpointedElsewhere: options.backgroundCheckpoints === true,
            ...(options.payloadKey ? { payloadKey: options.payloadKey } : {}),
          })
        : undefined;
    return new SqliteStateStore(
      db,
      options.now ?? (() => new Date()),
      release,
      committer,
      options.payloadKey,
    );
  }

  async getCheckpoint(flow: string, stream: string): Promise<Checkpoint | undefined> {
    const row = this.#db
      .prepare('SELECT * FROM checkpoints WHERE flow = ? AND stream = ?')
      .get(flow, stream) as Row | undefined;
    return row ? toCheckpoint(row) : undefined;
  }

  async listCheckpoints(flow: string): Promise<Checkpoint[]> {
    const rows = this.#db
      .prepare('SELECT * FROM checkpoints WHERE flow = ? ORDER BY stream')
      .all(flow) as Row[];
    return rows.map(toCheckpoint);
  }

  async deleteCheckpoints(flow: string): Promise<number> {
    return Number(this.#db.prepare('DELETE FROM checkpoints WHERE flow = ?').run(flow).changes);
  }

  async getLedger(
    flow: string,
    object: string,
    externalIds: readonly string[],
  ): Promise<Map<string, LedgerEntry>> {
    const out = new Map<string, LedgerEntry>();
    const select = this.#statement('SELECT * FROM ledger WHERE flow = ? AND object = ? AND external_id = ?');
    this.snapshot(() => {
      for (const id of externalIds) {
        const row = select.get(flow, object, id) as Row | undefined;
        if (row) out.set(id, toLedger(row));
      }
    });
    return out;
  }

  async countLedger(flow: string): Promise<number> {
    const row = this.#db.prepare('SELECT count(*) AS n FROM ledger WHERE flow = ?').get(flow) as Row;
    return Number(row.n);
  }

  async listLedger(
    flow: string,
    after: { readonly object: string; readonly externalId: string } | undefined,
    limit: number,
  ): Promise<LedgerEntry[]> {
    // The primary key's order, resumed after the last row seen (a row value comparison).
    const rows = (
      after === undefined
        ? this.#statement('SELECT * FROM ledger WHERE flow = ? ORDER BY object, external_id LIMIT ?').all(
            flow,
            limit,
          )
        : this.#statement(
            'SELECT * FROM ledger WHERE flow = ? AND (object, external_id) > (?, ?) ORDER BY object, external_id LIMIT ?',
          ).all(flow, after.object, after.externalId, limit)
    ) as Row[];
    return rows.map(toLedger);
  }

  async ledgerBySource(flow: string, sourceRef: string): Promise<LedgerEntry[]> {
    // By the source index, named: without statistics the planner prefers scanning the flow's whole
    // primary key, which already has the order wanted (milliseconds per call at 30,000 rows).
    const rows = this.#statement(
      'SELECT * FROM ledger INDEXED BY ledger_source WHERE flow = ? AND source_ref = ? ORDER BY object DESC, external_id',
    ).all(flow, sourceRef) as Row[];
    return rows.map(toLedger);
  }

  async getSeen(flow: string, stream: string, refs: readonly string[]): Promise<Map<string, SeenVersion>> {
    const out = new Map<string, SeenVersion>();
    const select = this.#statement('SELECT * FROM source_versions WHERE flow = ? AND stream = ? AND ref = ?');
    this.snapshot(() => {
      for (const ref of refs) {
        const row = select.get(flow, stream, ref) as Row | undefined;
        if (row) {
          out.set(ref, {
            ref,
            versionKey: String(row.version_key),
            outcome: String(row.outcome) as SeenVersion['outcome'],
          });
        }
      }
    });
    return out;
  }

  async withheldRefsOf(flow: string, stream: string, subjects: readonly string[]): Promise<string[]> {
    const select = this.#statement(
      "SELECT ref FROM source_versions WHERE flow = ? AND stream = ? AND subject = ? AND outcome = 'withheld' ORDER BY ref",
    );
    return this.snapshot(() =>
      subjects.flatMap((s) => (select.all(flow, stream, s) as Row[]).map((r) => String(r.ref))),
    );
  }

  async refsOfSubjects(flow: string, stream: string, subjects: readonly string[]): Promise<string[]> {
    const select = this.#statement(
      'SELECT ref FROM source_versions WHERE flow = ? AND stream = ? AND subject = ? ORDER BY ref',
    );
    return this.snapshot(() =>
      subjects.flatMap((s) => (select.all(flow, stream, s) as Row[]).map((r) => String(r.ref))),
    );
  }

  async forgetSeen(flow: string, stream: string, refs: readonly string[]): Promise<void> {
    const del = this.#db.prepare('DELETE FROM source_versions WHERE flow = ? AND stream = ? AND ref = ?');
    for (const ref of refs) del.run(flow, stream, ref);
  }

  async readChangeLog(
    flow: string,
    stream: string,
    from: string | undefined,
    afterSeq: number,
    limit: number,
  ): Promise<ChangeLogEntry[]> {
    const since = from === undefined ? null : (utcInstant(from) ?? from);
    // In recorded order from `afterSeq`, on the primary key: by the time index every page would read
    // and sort the stream's whole log again.
    const rows = this.#statement(
      `SELECT * FROM change_log NOT INDEXED WHERE flow = ? AND stream = ? AND seq > ?
         AND (? IS NULL OR last_updated IS NULL OR last_updated >= ?) ORDER BY seq LIMIT ?`,
    ).all(flow, stream, afterSeq, since, since, limit) as Row[];
    return rows.map((r) => ({
      seq: Number(r.seq),
      stream: String(r.stream),
      ref: String(r.ref),
      versionKey: String(r.version_key),
      ...(r.last_updated == null ? {} : { lastUpdated: String(r.last_updated) }),
      payload: openPayload(
        this.#payloadKey,
        String(r.payload),
        changeLogAad(flow, stream, String(r.ref), String(r.version_key)),
        `Change log entry #${String(r.seq)}`,
      ),
    }));
  }

  async listConsents(flow: string): Promise<StoredConsent[]> {
    const rows = this.#db
      .prepare('SELECT consent_key, subject, state FROM consent_states WHERE flow = ? ORDER BY consent_key')
      .all(flow) as Row[];
    return rows.map((r) => ({
      key: String(r.consent_key),
      subject: String(r.subject),
      state: String(r.state),
    }));
  }

  consentLookup(flow: string): ConsentLookup {
    const states = this.#db.prepare('SELECT state FROM consent_states WHERE flow = ? AND subject = ?');
    const subject = this.#db.prepare('SELECT subject FROM consent_states WHERE flow = ? AND consent_key = ?');
    const count = this.#db.prepare('SELECT count(*) AS n FROM consent_states WHERE flow = ?');
    return {
      snapshot: (read) => this.snapshot(read),
      statesOf: (s) => (states.all(flow, s) as Row[]).map((r) => String(r.state)),
      subjectOf: (key) => {
        const row = subject.get(flow, key) as Row | undefined;
        return row === undefined ? undefined : String(row.subject);
      },
      count: () => Number((count.get(flow) as Row).n),
    };
  }

  async listBatches(flow: string, limit = 50): Promise<BatchManifest[]> {
    const rows = this.#db
      .prepare('SELECT * FROM batches WHERE flow = ? ORDER BY created_at DESC, rowid DESC LIMIT ?')
      .all(flow, limit) as Row[];
    return rows.map(toBatch);
  }

  async provenanceOf(flow: string, entity: string): Promise<Record<string, unknown>[]> {
    // Whole resources (written before migration 9) and facts, merged oldest first.
    const rows = this.#db
      .prepare(`
        SELECT recorded_at, 0 AS form, rowid AS n, resource AS body, run_id FROM provenance
          WHERE flow = ? AND entity = ?
        UNION ALL
        SELECT recorded_at, 1 AS form, rowid AS n, facts AS body, run_id FROM provenance_facts
          WHERE flow = ? AND entity = ?
        ORDER BY recorded_at, form, n`)
      .all(flow, entity, flow, entity) as Row[];
    return rows.map((r) => provenanceResource(flow, entity, r));
  }

  async getBatch(batchId: string): Promise<BatchManifest | undefined> {
    const row = this.#db.prepare('SELECT * FROM batches WHERE batch_id = ?').get(batchId) as Row | undefined;
    return row ? toBatch(row) : undefined;
  }

  async pruneChangeLog(flow: string, before: string): Promise<number> {
    return this.#erasing(() =>
      Number(
        this.#db.prepare('DELETE FROM change_log WHERE flow = ? AND recorded_at < ?').run(flow, before)
          .changes,
      ),
    );
  }

  /**
   * Runs a statement that removes records (PHI) with `secure_delete = ON`: SQLite then zeroes every
   * page it frees, overflow pages included, which `FAST` leaves as they were on the free list.
   */
  #erasing<T>(remove: () => T): T {
    this.#db.exec('PRAGMA secure_delete = ON');
    try {
      return remove();
    } finally {
      this.#db.exec('PRAGMA secure_delete = FAST');
    }
  }

  /**
   * Runs `read` (synchronous reads on this connection) in one read transaction: one snapshot and one
   * WAL read lock for all of them, where each statement on its own would take and drop both. Inside a
   * transaction already, `read` simply runs in it.
   */
  snapshot<T>(read: () => T): T {
    const db = this.#db;
    if (db.isTransaction) return read();
    db.exec('BEGIN');
    try {
      return read();
    } finally {
      if (db.isTransaction) db.exec('COMMIT');
    }
  }

  async commitPage(commit: PageCommit): Promise<void> {
    // The writer thread's store has a clock of its own: the page is stamped with this store's.
    if (this.#committer) {
      return this.#committer.write(
        commit.recordedAt === undefined ? { ...commit, recordedAt: this.#now().toISOString() } : commit,
      );
    }
    const db = this.#db;
    const upsertLedger = this.#statement(`
      INSERT INTO ledger (flow, object, external_id, payload_hash, target_id, source_ref, mapping_version, run_id, delivered_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (flow, object, external_id) DO UPDATE SET
        payload_hash = excluded.payload_hash, target_id = excluded.target_id, source_ref = excluded.source_ref,
        mapping_version = excluded.mapping_version, run_id = excluded.run_id, delivered_at = excluded.delivered_at`);
    const insertQuarantine = this.#statement(`
      INSERT INTO quarantine (id, flow, run_id, stream, stage, code, issues, origin, source_ref, payload, created_at, policy_version, payload_sha256)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    const upsertCheckpoint = this.#statement(`
      INSERT INTO checkpoints (flow, stream, position, cursor, definition_hash, environment, run_id, updated_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (flow, stream) DO UPDATE SET position = excluded.position, cursor = excluded.cursor,
        environment = excluded.environment,
        definition_hash = excluded.definition_hash, run_id = excluded.run_id, updated_at = excluded.updated_at`);
    const deleteLedger = this.#statement(
      'DELETE FROM ledger WHERE flow = ? AND object = ? AND external_id = ?',
    );
    const upsertSeen = this.#statement(`
      INSERT INTO source_versions (flow, stream, ref, version_key, outcome, updated_at, subject) VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (flow, stream, ref) DO UPDATE SET version_key = excluded.version_key,
        outcome = excluded.outcome, updated_at = excluded.updated_at, subject = excluded.subject`);
    const upsertConsent = this.#statement(`
      INSERT INTO consent_states (flow, consent_key, subject, state, updated_at) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (flow, consent_key) DO UPDATE SET subject = excluded.subject, state = excluded.state,
        updated_at = excluded.updated_at`);
    const insertBatch = this.#statement(`
      INSERT OR REPLACE INTO batches (batch_id, flow, run_id, object, created_at, purpose, policy_version,
        record_count, envelope, jws, results, batch_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    const insertProvenance = this.#statement(
      'INSERT INTO provenance_facts (flow, entity, run_id, recorded_at, facts) VALUES (?, ?, ?, ?, ?)',
    );
    const supersede = this.#statement(`
      UPDATE quarantine SET status = 'superseded', payload = '', closed_at = ?
      WHERE flow = ? AND stream = ? AND status = 'open' AND source_ref IN (SELECT value FROM json_each(?))`);
    const insertChange = this.#statement(`
      INSERT OR IGNORE INTO change_log (flow, stream, ref, version_key, last_updated, payload, recorded_at)
      VALUES (?, ?, ?, ?, ?, ?, ?)`);
    const createdAt = commit.recordedAt ?? this.#now().toISOString();
    db.exec('BEGIN IMMEDIATE');
    try {
      for (const e of commit.ledger) {
        upsertLedger.run(
          e.flow,
          e.object,
          e.externalId,
          e.payloadHash,
          e.targetId,
          e.sourceRef,
          e.mappingVersion,
          e.runId,
          e.deliveredAt,
        );
      }
      // Before this page's own entries go in: those stay open.
      if (commit.supersedes?.length && commit.flow !== undefined && commit.stream !== undefined) {
        const { flow, stream, supersedes } = commit;
        this.#erasing(() => supersede.run(createdAt, flow, stream, JSON.stringify(supersedes)));
      }
      for (const q of commit.quarantine) {
        insertQuarantine.run(...quarantineRowValues(q, createdAt, (p, aad) => this.#seal(p, aad)));
      }
      const { flow, stream } = commitKeys(commit);
      for (const c of commit.consents ?? [])
        upsertConsent.run(flow as string, c.key, c.subject, c.state, createdAt);
      for (const d of commit.ledgerDeletes ?? []) deleteLedger.run(flow as string, d.object, d.externalId);
      if (commit.keptTargets?.length || commit.ledgerDeletes?.length || commit.refusedRemovals?.length) {
        // A record removed, or wanted again, has nothing left to remove; then this page's refusals.
        const drop = this.#statement(DROP_REFUSED_REMOVAL);
        for (const d of [...(commit.ledgerDeletes ?? []), ...(commit.keptTargets ?? [])])
          drop.run(flow as string, d.object, d.externalId);
        for (const r of commit.refusedRemovals ?? []) this.#keepRefusedRemoval(r);
      }
      for (const v of commit.seen ?? [])
        upsertSeen.run(
          flow as string,
          stream as string,
          v.ref,
          v.versionKey,
          v.outcome,
          createdAt,
          v.subject ?? null,
        );
      for (const c of commit.changeLog ?? []) {
        insertChange.run(
          flow as string,
          stream as string,
          c.ref,
          c.versionKey,
          // UTC text sorts as it compares, so a replay window's bound holds whatever the source's zone.
          utcInstant(c.lastUpdated) ?? null,
          this.#seal(c.payload, changeLogAad(flow as string, stream as string, c.ref, c.versionKey)),
          createdAt,
        );
      }
      for (const p of commit.provenance ?? []) {
        const row = provenanceRow(p);
        insertProvenance.run(row.flow, row.entity, row.runId, row.recorded, row.facts);
      }
      for (const b of commit.batches ?? []) {
        insertBatch.run(
          b.batchId,
          b.flow,
          b.runId,
          b.object,
          b.createdAt,
          b.purpose,
          b.policyVersion,
          b.recordCount,
          b.envelope,
          b.jws ?? null,
          JSON.stringify(b.results),
          b.batchKey ?? null,
        );
      }
      const c = commit.checkpoint;
      if (c) {
        upsertCheckpoint.run(...checkpointRowValues(c));
      }
      db.exec('COMMIT');
    } catch (err) {
      db.exec('ROLLBACK');
      throw new SluiceError(
        'STORE_WRITE_FAILED',
        'A page of work could not be committed to the state store.',
        {
          cause: err,
        },
      );
    }
  }

  #keepRefusedRemoval(r: NewRefusedRemoval): void {
    this.#statement(`
      INSERT INTO refused_removals (flow, object, external_id, target_id, source_ref, cause, because, codes,
        run_id, first_refused_at, last_attempt_at, attempts, next_attempt_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)
      ON CONFLICT (flow, object, external_id) DO UPDATE SET target_id = excluded.target_id,
        source_ref = excluded.source_ref, cause = excluded.cause, because = excluded.because,
        codes = excluded.codes, run_id = excluded.run_id, last_attempt_at = excluded.last_attempt_at,
        attempts = refused_removals.attempts + 1, next_attempt_at = excluded.next_attempt_at`).run(
      r.flow,
      r.object,
      r.externalId,
      r.targetId,
      r.sourceRef,
      r.cause,
      r.because ?? null,
      JSON.stringify(r.codes),
      r.runId,
      r.attemptedAt,
      r.attemptedAt,
      r.nextAttemptAt,
    );
  }

  async listRefusedRemovals(
    flow: string,
    options: { readonly dueBy?: string; readonly sourceRef?: string; readonly limit?: number } = {},
  ): Promise<RefusedRemoval[]> {
    const where = ['flow = ?'];
    const args: SQLInputValue[] = [flow];
    if (options.dueBy !== undefined) {
      where.push('next_attempt_at <= ?');
      args.push(options.dueBy);
    }
    if (options.sourceRef !== undefined) {
      where.push('source_ref = ?');
      args.push(options.sourceRef);
    }
    const rows = this.#db
      .prepare(
        `SELECT * FROM refused_removals WHERE ${where.join(' AND ')} ORDER BY first_refused_at, object, external_id LIMIT ?`,
      )
      .all(...args, options.limit ?? 10_000) as Row[];
    return rows.map(toRefusedRemoval);
  }

  async countRefusedRemovals(flow: string): Promise<{ readonly count: number; readonly oldest?: string }> {
    const row = this.#statement(
      'SELECT count(*) AS n, min(first_refused_at) AS oldest FROM refused_removals WHERE flow = ?',
    ).get(flow) as Row;
    return { count: Number(row.n), ...(row.oldest == null ? {} : { oldest: String(row.oldest) }) };
  }

  async settleRefusedRemovals(
    flow: string,
    outcome: {
      readonly removed: readonly { readonly object: string; readonly externalId: string }[];
      readonly refused: readonly NewRefusedRemoval[];
    },
  ): Promise<void> {
    const db = this.#db;
    const deleteLedger = this.#statement(
      'DELETE FROM ledger WHERE flow = ? AND object = ? AND external_id = ?',
    );
    const drop = this.#statement(DROP_REFUSED_REMOVAL);
    db.exec('BEGIN IMMEDIATE');
    try {
      for (const d of outcome.removed) {
        deleteLedger.run(flow, d.object, d.externalId);
        drop.run(flow, d.object, d.externalId);
      }
      for (const r of outcome.refused) this.#keepRefusedRemoval(r);
      db.exec('COMMIT');
    } catch (err) {
      db.exec('ROLLBACK');
      throw new SluiceError(
        'STORE_WRITE_FAILED',
        'Retried removals could not be recorded in the state store.',
        {
          cause: err,
        },
      );
    }
  }

  async listQuarantine(filter: QuarantineFilter = {}): Promise<QuarantineEntry[]> {
    const { where, args } = quarantineWhere(filter);
    const sql = `SELECT ${QUARANTINE_COLUMNS} FROM quarantine ${where} ORDER BY created_at, rowid LIMIT ?`;
    return (this.#db.prepare(sql).all(...args, filter.limit ?? 1000) as Row[]).map(toQuarantine);
  }

  async countQuarantineMatching(filter: Omit<QuarantineFilter, 'limit'>): Promise<number> {
    const { where, args } = quarantineWhere(filter);
    return Number((this.#db.prepare(`SELECT count(*) AS n FROM quarantine ${where}`).get(...args) as Row).n);
  }

  async getQuarantine(id: string): Promise<QuarantineEntry | undefined> {
    const row = this.#db.prepare(`SELECT ${QUARANTINE_COLUMNS} FROM quarantine WHERE id = ?`).get(id) as
      | Row
      | undefined;
    return row ? toQuarantine(row) : undefined;
  }

  async readQuarantinePayload(id: string): Promise<string | undefined> {
    const row = this.#db
      .prepare("SELECT flow, payload FROM quarantine WHERE id = ? AND status = 'open'")
      .get(id) as Row | undefined;
    if (row === undefined) return undefined;
    return openPayload(
      this.#payloadKey,
      String(row.payload),
      quarantineAad(String(row.flow), id),
      `Quarantined record ${id}`,
    );
  }

  async setQuarantineStatus(id: string, status: 'released' | 'discarded'): Promise<boolean> {
    // The record goes with the entry's closing, zeroed where it lay; a truncating checkpoint then
    // drops the WAL's copies of those pages, unless another connection is reading (a running flow:
    // its own checkpoints overwrite them in time).
    const closed = this.#erasing(() =>
      this.#db
        .prepare(
          "UPDATE quarantine SET status = ?, payload = '', closed_at = ? WHERE id = ? AND status = 'open'",
        )
        .run(status, this.#now().toISOString(), id),
    );
    if (Number(closed.changes) !== 1) return false;
    try {
      this.#db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
    } catch {
      // Busy: see above.
    }
    return true;
  }

  async countQuarantineByCode(flow: string, status: QuarantineStatus): Promise<Record<string, number>> {
    const rows = this.#db
      .prepare(
        'SELECT code, count(*) AS n FROM quarantine WHERE flow = ? AND status = ? GROUP BY code ORDER BY n DESC, code',
      )
      .all(flow, status) as Row[];
    return Object.fromEntries(rows.map((r) => [String(r.code), Number(r.n)]));
  }

  async countQuarantine(flow: string, status?: QuarantineStatus): Promise<number> {
    const row = (
      status === undefined
        ? this.#db.prepare('SELECT count(*) AS n FROM quarantine WHERE flow = ?').get(flow)
        : this.#db
            .prepare('SELECT count(*) AS n FROM quarantine WHERE flow = ? AND status = ?')
            .get(flow, status)
    ) as Row;
    return Number(row.n);
  }

  async startRun(run: { runId: string; flow: string; startedAt: string }): Promise<void> {
    this.#db
      .prepare("INSERT INTO runs (run_id, flow, started_at, status) VALUES (?, ?, ?, 'running')")
      .run(run.runId, run.flow, run.startedAt);
  }

  async finishRun(run: {
    runId: string;
    finishedAt: string;
    status: 'succeeded' | 'failed';
    summary: string;
  }): Promise<void> {
    this.#db
      .prepare('UPDATE runs SET finished_at = ?, status = ?, summary = ? WHERE run_id = ?')
      .run(run.finishedAt, run.status, run.summary, run.runId);
  }

  async getHalt(flow: string): Promise<Halt | undefined> {
    // Read before every request a run sends: a prepared statement, kept.
    const row = this.#statement('SELECT reason, engaged_at FROM halts WHERE flow = ?').get(flow) as
      | Row
      | undefined;
    return row ? { reason: String(row.reason), engagedAt: String(row.engaged_at) } : undefined;
  }

  async setHalt(flow: string, halt: Halt | undefined): Promise<boolean> {
    const changed =
      halt === undefined
        ? this.#db.prepare('DELETE FROM halts WHERE flow = ?').run(flow)
        : this.#db
            .prepare(
              'INSERT INTO halts (flow, reason, engaged_at) VALUES (?, ?, ?) ON CONFLICT (flow) DO NOTHING',
            )
            .run(flow, halt.reason, halt.engagedAt);
    return Number(changed.changes) === 1;
  }

  async forgetRun(runId: string): Promise<void> {
    this.#statement('DELETE FROM runs WHERE run_id = ?').run(runId);
  }

  async listRuns(flow: string, limit = 20): Promise<RunRecord[]> {
    const rows = this.#db
      .prepare('SELECT * FROM runs WHERE flow = ? ORDER BY started_at DESC, rowid DESC LIMIT ?')
      .all(flow, limit) as Row[];
    return rows.map(toRun);
  }

  #seal(payload: string, aad: string): string {
    return this.#payloadKey === undefined ? payload : sealPayload(this.#payloadKey, payload, aad);
  }

  async close(): Promise<void> {
    await this.#committer?.close();
    await this.#release();
    if (this.#db.isOpen) this.#db.close();
  }
}

function migrate(db: DatabaseSync, path: string): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL) STRICT');
  const row = db.prepare('SELECT max(version) AS v FROM schema_version').get() as Row | undefined;
  const current = Number(row?.v ?? 0);
  if (current > SQLITE_MIGRATIONS.length) {
    throw new SluiceError(
      'STORE_NEWER_SCHEMA',
      `The state store at ${path} has schema version ${current}; this Sluice knows up to ${SQLITE_MIGRATIONS.length}.`,
      { details: { path, version: current } },
    );
  }
  for (let step = current; step < SQLITE_MIGRATIONS.length; step++) {
    db.exec('BEGIN IMMEDIATE');
    try {
      db.exec(SQLITE_MIGRATIONS[step] as string);
      db.prepare('INSERT INTO schema_version (version) VALUES (?)').run(step + 1);
      db.exec('COMMIT');
    } catch (err) {
      db.exec('ROLLBACK');
      throw new SluiceError(
        'STORE_MIGRATION_FAILED',
        `State store migration ${step + 1} failed at ${path}.`,
        {
          cause: err,
          details: { path, step: step + 1 },
        },
      );
    }
  }
}
