import pg from 'pg';
import { SluiceError } from '../../core/errors/index.ts';
import { utcInstant } from '../../core/fhir/instant.ts';
import { type ConsentChange, ConsentReplica } from './consent-replica.ts';
import { openPayload, type PayloadKey, sealPayload } from './payload-cipher.ts';
import {
  checkSchemaName,
  describeServer,
  ensureSchema,
  inTransaction,
  openPool,
  type PostgresServer,
  passwordsOf,
  postgresServer,
  scrubbed,
} from './pg-connection.ts';
import { PG_MIGRATIONS } from './pg-migrations.ts';
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
  lastOfEach,
  provenanceResource,
  provenanceRow,
  QUARANTINE_COLUMNS,
  quarantineAad,
  quarantineConditions,
  quarantineRowValues,
  type StoredRow,
  toBatch,
  toCheckpoint,
  toLedger,
  toQuarantine,
  toRefusedRemoval,
  toRun,
} from './store-rows.ts';

/** The first key of the advisory lock that serialises migrations (`sluc`); the second is the schema's. */
const MIGRATION_LOCK = 0x736c7563;

export interface PostgresStoreOptions {
  /** `postgres://user:password@host:port/database`; the password is never printed. */
  readonly url: string;
  /** The schema of Sluice's tables (created when missing); default `sluice`. */
  readonly schema?: string;
  readonly now?: () => Date;
  /** Seals quarantined records and change-log copies (see `payload-cipher.ts`). */
  readonly payloadKey?: PayloadKey;
  /** Connections this store keeps (default 4). */
  readonly poolSize?: number;
}

/** Column arrays of rows, for `unnest($1::text[], …)`: one array per column. */
function columnsOf(rows: readonly (readonly unknown[])[], width: number): unknown[][] {
  const columns: unknown[][] = Array.from({ length: width }, () => []);
  for (const row of rows) for (let i = 0; i < width; i++) columns[i]?.push(row[i] ?? null);
  return columns;
}

/**
 * `INSERT INTO table (columns) SELECT … FROM unnest(…)` in the rows' order (serial columns count in
 * it), then `tail` (e.g. ON CONFLICT). Nothing is sent for no rows.
 */
async function insertRows(
  client: pg.PoolClient,
  table: string,
  columns: readonly (readonly [name: string, type: 'text' | 'bigint'])[],
  rows: readonly (readonly unknown[])[],
  tail = '',
): Promise<void> {
  if (rows.length === 0) return;
  const names = columns.map(([name]) => name).join(', ');
  const arrays = columns.map(([, type], i) => `$${i + 1}::${type}[]`).join(', ');
  const aliases = columns.map((_, i) => `c${i}`).join(', ');
  await client.query(
    `INSERT INTO ${table} (${names})
     SELECT ${aliases} FROM unnest(${arrays}) WITH ORDINALITY AS u(${aliases}, ord) ORDER BY ord ${tail}`,
    columnsOf(rows, columns.length),
  );
}

const LEDGER_COLUMNS = [
  ['flow', 'text'],
  ['object', 'text'],
  ['external_id', 'text'],
  ['payload_hash', 'text'],
  ['target_id', 'text'],
  ['source_ref', 'text'],
  ['mapping_version', 'text'],
  ['run_id', 'text'],
  ['delivered_at', 'text'],
] as const;

const QUARANTINE_INSERT_COLUMNS = [
  ['id', 'text'],
  ['flow', 'text'],
  ['run_id', 'text'],
  ['stream', 'text'],
  ['stage', 'text'],
  ['code', 'text'],
  ['issues', 'text'],
  ['origin', 'text'],
  ['source_ref', 'text'],
  ['payload', 'text'],
  ['created_at', 'text'],
  ['policy_version', 'text'],
  ['payload_sha256', 'text'],
] as const;

/** Removes rows of a flow's table by object and external id (one statement for the lot). */
const deleteByTarget = (table: string): string =>
  `DELETE FROM ${table} WHERE flow = $1 AND (object, external_id) IN (SELECT * FROM unnest($2::text[], $3::text[]))`;

export class PostgresStateStore implements StateStore {
  readonly kind = 'postgres';
  /** The schema the store's tables live in. */
  readonly schema: string;
  readonly #pool: pg.Pool;
  readonly #now: () => Date;
  /** Seals the record copies kept (quarantine, change log); undefined: they are stored as they are. */
  readonly #payloadKey: PayloadKey | undefined;
  #closed: Promise<void> | undefined;
  /** The fencing token each flow's page commits must find on its lease (see `fence`). */
  readonly #fences = new Map<string, number>();
  /** The consents of the flows whose lookup was asked for, mirrored locally (made on first use). */
  #consents: ConsentReplica | undefined;

  private constructor(pool: pg.Pool, schema: string, now: () => Date, payloadKey: PayloadKey | undefined) {
    this.#pool = pool;
    this.schema = schema;
    this.#now = now;
    this.#payloadKey = payloadKey;
  }

  /**
   * Connects to the server, creates the schema when missing and migrates it (two processes opening a
   * fresh schema at once take turns). Throws STORE_OPEN_FAILED when the server cannot be reached,
   * naming host, port and database but never the credentials.
   */
  static async open(options: PostgresStoreOptions): Promise<PostgresStateStore> {
    const schema = checkSchemaName(options.schema ?? 'sluice');
    const server = postgresServer(options.url);
    const where = `PostgreSQL ${describeServer(server)} (schema ${schema})`;
    const pool = new pg.Pool({
      connectionString: options.url,
      max: options.poolSize ?? 4,
      connectionTimeoutMillis: 10_000,
      idleTimeoutMillis: 30_000,
      keepAlive: true,
      application_name: 'sluice',
      // Every connection works in the schema: the statements name their tables unqualified.
      options: `-c search_path=${schema}`,
    });
    await openPool(
      pool,
      (err) =>
        new SluiceError('STORE_OPEN_FAILED', `Cannot open the state store at ${where}.`, {
          cause: scrubbed(err, passwordsOf(options.url)),
          details: { ...server, schema },
        }),
      (client) => migrate(client, schema, where, server),
    );
    return new PostgresStateStore(pool, schema, options.now ?? (() => new Date()), options.payloadKey);
  }

  /** A query on any connection of the pool; driver errors come without the row values they quote. */
  async #query(sql: string, args: readonly unknown[] = []): Promise<pg.QueryResult<StoredRow>> {
    try {
      return await this.#pool.query<StoredRow>(sql, args as unknown[]);
    } catch (err) {
      throw scrubbed(err);
    }
  }

  async #rows(sql: string, args: readonly unknown[] = []): Promise<StoredRow[]> {
    return (await this.#query(sql, args)).rows;
  }

  /** Runs `work` in one transaction on one connection: committed whole, or rolled back and thrown. */
  #transaction(work: (client: pg.PoolClient) => Promise<void>): Promise<void> {
    return inTransaction(this.#pool, work);
  }

  async getCheckpoint(flow: string, stream: string): Promise<Checkpoint | undefined> {
    const [row] = await this.#rows('SELECT * FROM checkpoints WHERE flow = $1 AND stream = $2', [
      flow,
      stream,
    ]);
    return row ? toCheckpoint(row) : undefined;
  }

  async listCheckpoints(flow: string): Promise<Checkpoint[]> {
    return (await this.#rows('SELECT * FROM checkpoints WHERE flow = $1 ORDER BY stream', [flow])).map(
      toCheckpoint,
    );
  }

  async deleteCheckpoints(flow: string): Promise<number> {
    return (await this.#query('DELETE FROM checkpoints WHERE flow = $1', [flow])).rowCount ?? 0;
  }

  async getLedger(
    flow: string,
    object: string,
    externalIds: readonly string[],
  ): Promise<Map<string, LedgerEntry>> {
    const out = new Map<string, LedgerEntry>();
    if (externalIds.length === 0) return out;
    const rows = await this.#rows(
      'SELECT * FROM ledger WHERE flow = $1 AND object = $2 AND external_id = ANY($3::text[])',
      [flow, object, [...new Set(externalIds)]],
    );
    const byId = new Map(rows.map((r) => [String(r.external_id), r]));
    // In the order asked, as the embedded store answers.
    for (const id of externalIds) {
      const row = byId.get(id);
      if (row) out.set(id, toLedger(row));
    }
    return out;
  }

  async countLedger(flow: string): Promise<number> {
    const [row] = await this.#rows('SELECT count(*) AS n FROM ledger WHERE flow = $1', [flow]);
    return Number(row?.n ?? 0);
  }

  async listLedger(
    flow: string,
    after: { readonly object: string; readonly externalId: string } | undefined,
    limit: number,
  ): Promise<LedgerEntry[]> {
    // The primary key's order, resumed after the last row seen (a row value comparison).
    const rows =
      after === undefined
        ? await this.#rows('SELECT * FROM ledger WHERE flow = $1 ORDER BY object, external_id LIMIT $2', [
            flow,
            limit,
          ])
        : await this.#rows(
            'SELECT * FROM ledger WHERE flow = $1 AND (object, external_id) > ($2, $3) ORDER BY object, external_id LIMIT $4',
            [flow, after.object, after.externalId, limit],
          );
    return rows.map(toLedger);
  }

  async ledgerBySource(flow: string, sourceRef: string): Promise<LedgerEntry[]> {
    const rows = await this.#rows(
      'SELECT * FROM ledger WHERE flow = $1 AND source_ref = $2 ORDER BY object DESC, external_id',
      [flow, sourceRef],
    );
    return rows.map(toLedger);
  }

  async getSeen(flow: string, stream: string, refs: readonly string[]): Promise<Map<string, SeenVersion>> {
    const out = new Map<string, SeenVersion>();
    if (refs.length === 0) return out;
    const rows = await this.#rows(
      'SELECT ref, version_key, outcome FROM source_versions WHERE flow = $1 AND stream = $2 AND ref = ANY($3::text[])',
      [flow, stream, [...new Set(refs)]],
    );
    const byRef = new Map(rows.map((r) => [String(r.ref), r]));
    for (const ref of refs) {
      const row = byRef.get(ref);
      if (row) {
        out.set(ref, {
          ref,
          versionKey: String(row.version_key),
          outcome: String(row.outcome) as SeenVersion['outcome'],
        });
      }
    }
    return out;
  }

  async withheldRefsOf(flow: string, stream: string, subjects: readonly string[]): Promise<string[]> {
    return this.#refsOf(flow, stream, subjects, "AND outcome = 'withheld'");
  }

  async refsOfSubjects(flow: string, stream: string, subjects: readonly string[]): Promise<string[]> {
    return this.#refsOf(flow, stream, subjects, '');
  }

  /** Refs of each subject in turn (in the order given), each subject's by ref. */
  async #refsOf(flow: string, stream: string, subjects: readonly string[], and: string): Promise<string[]> {
    if (subjects.length === 0) return [];
    const rows = await this.#rows(
      `SELECT subject, ref FROM source_versions WHERE flow = $1 AND stream = $2 AND subject = ANY($3::text[]) ${and}
       ORDER BY ref`,
      [flow, stream, [...new Set(subjects)]],
    );
    const bySubject = new Map<string, string[]>();
    for (const r of rows) {
      const subject = String(r.subject);
      bySubject.set(subject, [...(bySubject.get(subject) ?? []), String(r.ref)]);
    }
    return subjects.flatMap((s) => bySubject.get(s) ?? []);
  }

  async forgetSeen(flow: string, stream: string, refs: readonly string[]): Promise<void> {
    if (refs.length === 0) return;
    await this.#query(
      'DELETE FROM source_versions WHERE flow = $1 AND stream = $2 AND ref = ANY($3::text[])',
      [flow, stream, [...refs]],
    );
  }

  async readChangeLog(
    flow: string,
    stream: string,
    from: string | undefined,
    afterSeq: number,
    limit: number,
  ): Promise<ChangeLogEntry[]> {
    const since = from === undefined ? null : (utcInstant(from) ?? from);
    const rows = await this.#rows(
      `SELECT * FROM change_log WHERE flow = $1 AND stream = $2 AND seq > $3
         AND ($4::text IS NULL OR last_updated IS NULL OR last_updated >= $4::text) ORDER BY seq LIMIT $5`,
      [flow, stream, afterSeq, since, limit],
    );
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
    const rows = await this.#rows(
      'SELECT consent_key, subject, state FROM consent_states WHERE flow = $1 ORDER BY consent_key',
      [flow],
    );
    return rows.map((r) => ({
      key: String(r.consent_key),
      subject: String(r.subject),
      state: String(r.state),
    }));
  }

  /**
   * Synchronous reads of a flow's consents, from a local mirror brought up to date first (see
   * `consent-replica.ts`): the consent gate keeps a bounded cache, as over the embedded store.
   */
  async consentLookup(flow: string): Promise<ConsentLookup> {
    this.#consents ??= ConsentReplica.open();
    await this.#consents.sync(flow, (f, after, pageSize) => this.#consentChanges(f, after, pageSize));
    return this.#consents.lookup(flow);
  }

  /**
   * A flow's consents changed after a sequence, from one snapshot through a cursor (no sort: a first
   * sync reads the whole table in storage order), `pageSize` rows at a time.
   */
  async *#consentChanges(flow: string, after: string, pageSize: number): AsyncGenerator<ConsentChange[]> {
    const client = await this.#pool.connect();
    let open = false;
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      open = true;
      await client.query(
        `DECLARE consent_changes NO SCROLL CURSOR FOR
         SELECT consent_key, subject, state, change_seq::text AS seq FROM consent_states
         WHERE flow = $1 AND change_seq > $2::bigint`,
        [flow, after],
      );
      for (;;) {
        const { rows } = await client.query<StoredRow>(`FETCH ${pageSize} FROM consent_changes`);
        if (rows.length === 0) break;
        yield rows.map((r) => ({
          key: String(r.consent_key),
          subject: String(r.subject),
          state: String(r.state),
          seq: String(r.seq),
        }));
      }
      await client.query('COMMIT');
      open = false;
    } catch (err) {
      throw scrubbed(err);
    } finally {
      if (open) await client.query('ROLLBACK').catch(() => undefined);
      client.release();
    }
  }

  async listBatches(flow: string, limit = 50): Promise<BatchManifest[]> {
    const rows = await this.#rows(
      'SELECT * FROM batches WHERE flow = $1 ORDER BY created_at DESC, seq DESC LIMIT $2',
      [flow, limit],
    );
    return rows.map(toBatch);
  }

  async provenanceOf(flow: string, entity: string): Promise<Record<string, unknown>[]> {
    // Whole resources (the embedded store's rows of before its facts) and facts, merged oldest first.
    const rows = await this.#rows(
      `SELECT recorded_at, 0 AS form, seq AS n, resource AS body, run_id FROM provenance
         WHERE flow = $1 AND entity = $2
       UNION ALL
       SELECT recorded_at, 1 AS form, seq AS n, facts AS body, run_id FROM provenance_facts
         WHERE flow = $1 AND entity = $2
       ORDER BY recorded_at, form, n`,
      [flow, entity],
    );
    return rows.map((r) => provenanceResource(flow, entity, r));
  }

  async getBatch(batchId: string): Promise<BatchManifest | undefined> {
    const [row] = await this.#rows('SELECT * FROM batches WHERE batch_id = $1', [batchId]);
    return row ? toBatch(row) : undefined;
  }

  async pruneChangeLog(flow: string, before: string): Promise<number> {
    const result = await this.#query('DELETE FROM change_log WHERE flow = $1 AND recorded_at < $2', [
      flow,
      before,
    ]);
    return result.rowCount ?? 0;
  }

  fence(flow: string, fence: number | undefined): void {
    if (fence === undefined) this.#fences.delete(flow);
    else this.#fences.set(flow, fence);
  }

  async commitPage(commit: PageCommit): Promise<void> {
    const createdAt = commit.recordedAt ?? this.#now().toISOString();
    try {
      await this.#transaction(async (client) => {
        await this.#checkFence(client, commit.flow ?? commit.checkpoint?.flow);
        await this.#writePage(client, commit, createdAt);
      });
    } catch (err) {
      if (err instanceof SluiceError) throw err;
      throw new SluiceError(
        'STORE_WRITE_FAILED',
        'A page of work could not be committed to the state store.',
        { cause: scrubbed(err) },
      );
    }
    // Committed: the local mirror of the flow's consents (when a gate reads it) follows.
    // (A page with consents names its flow: `commitKeys` refused it otherwise.)
    if (this.#consents !== undefined && commit.consents?.length && commit.flow !== undefined) {
      this.#consents.apply(
        commit.flow,
        lastOfEach(commit.consents, (c) => c.key),
      );
    }
  }

  /**
   * A fenced flow's page commits only while its lease row carries the token: read with a share lock,
   * which a process taking the lease over (its update of the row) waits for, and which waits for it.
   */
  async #checkFence(client: pg.PoolClient, flow: string | undefined): Promise<void> {
    const fence = flow === undefined ? undefined : this.#fences.get(flow);
    if (fence === undefined) return;
    const row = await client.query<{ fence: string; host: string; pid: number }>(
      'SELECT fence::text AS fence, host, pid FROM flow_leases WHERE flow = $1 FOR SHARE',
      [flow],
    );
    const lease = row.rows[0];
    if (lease !== undefined && Number(lease.fence) === fence) return;
    throw new SluiceError(
      'FLOW_LEASE_LOST',
      `The lease of flow ${flow} was taken over${lease ? ` (host ${lease.host}, pid ${lease.pid})` : ''}; this process committed nothing more and stops.`,
      { details: { flow: flow as string, fence, ...(lease ? { current: Number(lease.fence) } : {}) } },
    );
  }

  /** The statements of a page, in the order the embedded store runs them. */
  async #writePage(client: pg.PoolClient, commit: PageCommit, createdAt: string): Promise<void> {
    // Upserts applied one after another leave the last row of each key: so do these, in one statement.
    const ledger = lastOfEach(commit.ledger, (e) => `${e.flow}\u0000${e.object}\u0000${e.externalId}`);
    await insertRows(
      client,
      'ledger',
      LEDGER_COLUMNS,
      ledger.map((e) => [
        e.flow,
        e.object,
        e.externalId,
        e.payloadHash,
        e.targetId,
        e.sourceRef,
        e.mappingVersion,
        e.runId,
        e.deliveredAt,
      ]),
      `ON CONFLICT (flow, object, external_id) DO UPDATE SET
         payload_hash = excluded.payload_hash, target_id = excluded.target_id, source_ref = excluded.source_ref,
         mapping_version = excluded.mapping_version, run_id = excluded.run_id, delivered_at = excluded.delivered_at`,
    );
    // Before this page's own entries go in: those stay open.
    if (commit.supersedes?.length && commit.flow !== undefined && commit.stream !== undefined) {
      await client.query(
        `UPDATE quarantine SET status = 'superseded', payload = '', closed_at = $1
         WHERE flow = $2 AND stream = $3 AND status = 'open' AND source_ref = ANY($4::text[])`,
        [createdAt, commit.flow, commit.stream, [...commit.supersedes]],
      );
    }
    await insertRows(
      client,
      'quarantine',
      QUARANTINE_INSERT_COLUMNS,
      commit.quarantine.map((q) => quarantineRowValues(q, createdAt, (p, aad) => this.#seal(p, aad))),
    );
    const { flow, stream } = commitKeys(commit);
    const consents = lastOfEach(commit.consents ?? [], (c) => c.key);
    await insertRows(
      client,
      'consent_states',
      [
        ['flow', 'text'],
        ['consent_key', 'text'],
        ['subject', 'text'],
        ['state', 'text'],
        ['updated_at', 'text'],
      ],
      consents.map((c) => [flow, c.key, c.subject, c.state, createdAt]),
      `ON CONFLICT (flow, consent_key) DO UPDATE SET subject = excluded.subject, state = excluded.state,
         updated_at = excluded.updated_at, change_seq = nextval('consent_change_seq')`,
    );
    const deletes = commit.ledgerDeletes ?? [];
    if (deletes.length > 0) {
      await client.query(deleteByTarget('ledger'), [
        flow,
        deletes.map((d) => d.object),
        deletes.map((d) => d.externalId),
      ]);
    }
    // A record removed, or wanted again, has nothing left to remove; then this page's refusals.
    const dropped = [...deletes, ...(commit.keptTargets ?? [])];
    if (dropped.length > 0) {
      await client.query(deleteByTarget('refused_removals'), [
        flow,
        dropped.map((d) => d.object),
        dropped.map((d) => d.externalId),
      ]);
    }
    // One at a time: the same record refused twice in a page counts two attempts.
    for (const r of commit.refusedRemovals ?? []) await keepRefusedRemoval(client, r);
    const seen = lastOfEach(commit.seen ?? [], (v) => v.ref);
    await insertRows(
      client,
      'source_versions',
      [
        ['flow', 'text'],
        ['stream', 'text'],
        ['ref', 'text'],
        ['version_key', 'text'],
        ['outcome', 'text'],
        ['updated_at', 'text'],
        ['subject', 'text'],
      ],
      seen.map((v) => [flow, stream, v.ref, v.versionKey, v.outcome, createdAt, v.subject ?? null]),
      `ON CONFLICT (flow, stream, ref) DO UPDATE SET version_key = excluded.version_key,
         outcome = excluded.outcome, updated_at = excluded.updated_at, subject = excluded.subject`,
    );
    await insertRows(
      client,
      'change_log',
      [
        ['flow', 'text'],
        ['stream', 'text'],
        ['ref', 'text'],
        ['version_key', 'text'],
        ['last_updated', 'text'],
        ['payload', 'text'],
        ['recorded_at', 'text'],
      ],
      (commit.changeLog ?? []).map((c) => [
        flow,
        stream,
        c.ref,
        c.versionKey,
        // UTC text sorts as it compares, so a replay window's bound holds whatever the source's zone.
        utcInstant(c.lastUpdated) ?? null,
        this.#seal(c.payload, changeLogAad(flow as string, stream as string, c.ref, c.versionKey)),
        createdAt,
      ]),
      'ON CONFLICT (flow, stream, ref, version_key) DO NOTHING',
    );
    await insertRows(
      client,
      'provenance_facts',
      [
        ['flow', 'text'],
        ['entity', 'text'],
        ['run_id', 'text'],
        ['recorded_at', 'text'],
        ['facts', 'text'],
      ],
      (commit.provenance ?? []).map((p) => {
        const row = provenanceRow(p);
        return [row.flow, row.entity, row.runId, row.recorded, row.facts];
      }),
    );
    // A batch written again replaces the first, as the latest (the embedded store's INSERT OR REPLACE).
    const batches = lastOfEach(commit.batches ?? [], (b) => b.batchId);
    await insertRows(
      client,
      'batches',
      [
        ['batch_id', 'text'],
        ['flow', 'text'],
        ['run_id', 'text'],
        ['object', 'text'],
        ['created_at', 'text'],
        ['purpose', 'text'],
        ['policy_version', 'text'],
        ['record_count', 'bigint'],
        ['envelope', 'text'],
        ['jws', 'text'],
        ['results', 'text'],
        ['batch_key', 'text'],
      ],
      batches.map((b) => [
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
      ]),
      `ON CONFLICT (batch_id) DO UPDATE SET seq = DEFAULT, flow = excluded.flow, run_id = excluded.run_id,
         object = excluded.object, created_at = excluded.created_at, purpose = excluded.purpose,
         policy_version = excluded.policy_version, record_count = excluded.record_count,
         envelope = excluded.envelope, jws = excluded.jws, results = excluded.results,
         batch_key = excluded.batch_key`,
    );
    const c = commit.checkpoint;
    if (c) {
      await client.query(
        `INSERT INTO checkpoints (flow, stream, position, cursor, definition_hash, environment, run_id, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (flow, stream) DO UPDATE SET position = excluded.position, cursor = excluded.cursor,
           environment = excluded.environment, definition_hash = excluded.definition_hash,
           run_id = excluded.run_id, updated_at = excluded.updated_at`,
        checkpointRowValues(c),
      );
    }
  }

  async listRefusedRemovals(
    flow: string,
    options: { readonly dueBy?: string; readonly sourceRef?: string; readonly limit?: number } = {},
  ): Promise<RefusedRemoval[]> {
    const args: unknown[] = [flow];
    const where = ['flow = $1'];
    if (options.dueBy !== undefined) {
      args.push(options.dueBy);
      where.push(`next_attempt_at <= $${args.length}`);
    }
    if (options.sourceRef !== undefined) {
      args.push(options.sourceRef);
      where.push(`source_ref = $${args.length}`);
    }
    args.push(options.limit ?? 10_000);
    const rows = await this.#rows(
      `SELECT * FROM refused_removals WHERE ${where.join(' AND ')}
       ORDER BY first_refused_at, object, external_id LIMIT $${args.length}`,
      args,
    );
    return rows.map(toRefusedRemoval);
  }

  async countRefusedRemovals(flow: string): Promise<{ readonly count: number; readonly oldest?: string }> {
    const [row] = await this.#rows(
      'SELECT count(*) AS n, min(first_refused_at) AS oldest FROM refused_removals WHERE flow = $1',
      [flow],
    );
    return {
      count: Number(row?.n ?? 0),
      ...(row?.oldest == null ? {} : { oldest: String(row.oldest) }),
    };
  }

  async settleRefusedRemovals(
    flow: string,
    outcome: {
      readonly removed: readonly { readonly object: string; readonly externalId: string }[];
      readonly refused: readonly NewRefusedRemoval[];
    },
  ): Promise<void> {
    try {
      await this.#transaction(async (client) => {
        const { removed } = outcome;
        if (removed.length > 0) {
          const args = [flow, removed.map((d) => d.object), removed.map((d) => d.externalId)];
          await client.query(deleteByTarget('ledger'), args);
          await client.query(deleteByTarget('refused_removals'), args);
        }
        for (const r of outcome.refused) await keepRefusedRemoval(client, r);
      });
    } catch (err) {
      throw new SluiceError(
        'STORE_WRITE_FAILED',
        'Retried removals could not be recorded in the state store.',
        { cause: scrubbed(err) },
      );
    }
  }

  async listQuarantine(filter: QuarantineFilter = {}): Promise<QuarantineEntry[]> {
    const { where, args } = quarantineWhere(filter);
    const rows = await this.#rows(
      `SELECT ${QUARANTINE_COLUMNS} FROM quarantine ${where} ORDER BY created_at, seq LIMIT $${args.length + 1}`,
      [...args, filter.limit ?? 1000],
    );
    return rows.map(toQuarantine);
  }

  async countQuarantineMatching(filter: Omit<QuarantineFilter, 'limit'>): Promise<number> {
    const { where, args } = quarantineWhere(filter);
    const [row] = await this.#rows(`SELECT count(*) AS n FROM quarantine ${where}`, args);
    return Number(row?.n ?? 0);
  }

  async getQuarantine(id: string): Promise<QuarantineEntry | undefined> {
    const [row] = await this.#rows(`SELECT ${QUARANTINE_COLUMNS} FROM quarantine WHERE id = $1`, [id]);
    return row ? toQuarantine(row) : undefined;
  }

  async readQuarantinePayload(id: string): Promise<string | undefined> {
    const [row] = await this.#rows("SELECT flow, payload FROM quarantine WHERE id = $1 AND status = 'open'", [
      id,
    ]);
    if (row === undefined) return undefined;
    return openPayload(
      this.#payloadKey,
      String(row.payload),
      quarantineAad(String(row.flow), id),
      `Quarantined record ${id}`,
    );
  }

  async setQuarantineStatus(id: string, status: 'released' | 'discarded'): Promise<boolean> {
    // The record goes with the entry's closing. PostgreSQL keeps the old row version until vacuum
    // reclaims it (sealed, when the flow has a key).
    const closed = await this.#query(
      "UPDATE quarantine SET status = $1, payload = '', closed_at = $2 WHERE id = $3 AND status = 'open'",
      [status, this.#now().toISOString(), id],
    );
    return closed.rowCount === 1;
  }

  async countQuarantineByCode(flow: string, status: QuarantineStatus): Promise<Record<string, number>> {
    const rows = await this.#rows(
      'SELECT code, count(*) AS n FROM quarantine WHERE flow = $1 AND status = $2 GROUP BY code ORDER BY n DESC, code',
      [flow, status],
    );
    return Object.fromEntries(rows.map((r) => [String(r.code), Number(r.n)]));
  }

  async countQuarantine(flow: string, status?: QuarantineStatus): Promise<number> {
    const [row] =
      status === undefined
        ? await this.#rows('SELECT count(*) AS n FROM quarantine WHERE flow = $1', [flow])
        : await this.#rows('SELECT count(*) AS n FROM quarantine WHERE flow = $1 AND status = $2', [
            flow,
            status,
          ]);
    return Number(row?.n ?? 0);
  }

  async startRun(run: { runId: string; flow: string; startedAt: string }): Promise<void> {
    await this.#query("INSERT INTO runs (run_id, flow, started_at, status) VALUES ($1, $2, $3, 'running')", [
      run.runId,
      run.flow,
      run.startedAt,
    ]);
  }

  async finishRun(run: {
    runId: string;
    finishedAt: string;
    status: 'succeeded' | 'failed';
    summary: string;
  }): Promise<void> {
    await this.#query('UPDATE runs SET finished_at = $1, status = $2, summary = $3 WHERE run_id = $4', [
      run.finishedAt,
      run.status,
      run.summary,
      run.runId,
    ]);
  }

  async getHalt(flow: string): Promise<Halt | undefined> {
    const [row] = await this.#rows('SELECT reason, engaged_at FROM halts WHERE flow = $1', [flow]);
    return row ? { reason: String(row.reason), engagedAt: String(row.engaged_at) } : undefined;
  }

  async setHalt(flow: string, halt: Halt | undefined): Promise<boolean> {
    const changed =
      halt === undefined
        ? await this.#query('DELETE FROM halts WHERE flow = $1', [flow])
        : await this.#query(
            'INSERT INTO halts (flow, reason, engaged_at) VALUES ($1, $2, $3) ON CONFLICT (flow) DO NOTHING',
            [flow, halt.reason, halt.engagedAt],
          );
    return changed.rowCount === 1;
  }

  async forgetRun(runId: string): Promise<void> {
    await this.#query('DELETE FROM runs WHERE run_id = $1', [runId]);
  }

  async listRuns(flow: string, limit = 20): Promise<RunRecord[]> {
    const rows = await this.#rows(
      'SELECT * FROM runs WHERE flow = $1 ORDER BY started_at DESC, seq DESC LIMIT $2',
      [flow, limit],
    );
    return rows.map(toRun);
  }

  #seal(payload: string, aad: string): string {
    return this.#payloadKey === undefined ? payload : sealPayload(this.#payloadKey, payload, aad);
  }

  /** Ends the pool (idempotent): waits for the connections in use to be given back. */
  close(): Promise<void> {
    this.#consents?.close();
    this.#closed ??= this.#pool.end();
    return this.#closed;
  }
}

/** The WHERE clause of a quarantine selection (empty when nothing is selected), with its arguments. */
function quarantineWhere(filter: Omit<QuarantineFilter, 'limit'>): { where: string; args: string[] } {
  const conditions = quarantineConditions(filter);
  return {
    where: conditions.length
      ? `WHERE ${conditions.map((c, i) => `${c.column} = $${i + 1}`).join(' AND ')}`
      : '',
    args: conditions.map((c) => c.value),
  };
}

/** Keeps a refused removal; one already kept for the same target record counts one more attempt. */
async function keepRefusedRemoval(client: pg.PoolClient, r: NewRefusedRemoval): Promise<void> {
  await client.query(
    `INSERT INTO refused_removals (flow, object, external_id, target_id, source_ref, cause, because, codes,
       run_id, first_refused_at, last_attempt_at, attempts, next_attempt_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, 1, $11)
     ON CONFLICT (flow, object, external_id) DO UPDATE SET target_id = excluded.target_id,
       source_ref = excluded.source_ref, cause = excluded.cause, because = excluded.because,
       codes = excluded.codes, run_id = excluded.run_id, last_attempt_at = excluded.last_attempt_at,
       attempts = refused_removals.attempts + 1, next_attempt_at = excluded.next_attempt_at`,
    [
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
      r.nextAttemptAt,
    ],
  );
}

/**
 * Creates the schema when missing and applies the migrations it lacks, in one transaction holding an
 * advisory lock of the schema: a second process opening it meanwhile waits, then finds it current.
 */
async function migrate(
  client: pg.PoolClient,
  schema: string,
  where: string,
  server: PostgresServer,
): Promise<void> {
  /** The migration being applied, when one is. */
  let step: number | undefined;
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [MIGRATION_LOCK, `state:${schema}`]);
    // Only when missing, and surviving the audit store creating it at the same moment (see ensureSchema).
    await ensureSchema(client, schema, 'state_schema');
    await client.query(`SET LOCAL search_path TO ${schema}`);
    await client.query('CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)');
    const version = await client.query<{ v: string | null }>('SELECT max(version) AS v FROM schema_version');
    const current = Number(version.rows[0]?.v ?? 0);
    if (current > PG_MIGRATIONS.length) {
      throw new SluiceError(
        'STORE_NEWER_SCHEMA',
        `The state store at ${where} has schema version ${current}; this Sluice knows up to ${PG_MIGRATIONS.length}.`,
        { details: { ...server, schema, version: current } },
      );
    }
    for (let next = current + 1; next <= PG_MIGRATIONS.length; next++) {
      step = next;
      await client.query(PG_MIGRATIONS[next - 1] as string);
      await client.query('INSERT INTO schema_version (version) VALUES ($1)', [next]);
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    if (err instanceof SluiceError) throw err;
    throw step === undefined
      ? new SluiceError('STORE_OPEN_FAILED', `Cannot prepare the state store at ${where}.`, {
          cause: scrubbed(err),
          details: { ...server, schema },
        })
      : new SluiceError('STORE_MIGRATION_FAILED', `State store migration ${step} failed at ${where}.`, {
          cause: scrubbed(err),
          details: { ...server, schema, step },
        });
  }
}
