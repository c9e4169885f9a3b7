/**
 * The consents of a flow in cluster mode, mirrored into a local SQLite file, so the consent gate reads
 * them synchronously through a bounded cache — as over the embedded store — instead of holding every
 * person's consents in memory. PostgreSQL stays the record: the mirror is brought up to date from it
 * when a run loads its consents (the rows changed since the last sync, by their change sequence, a
 * page at a time), and the store applies each page's consents to it once PostgreSQL has committed them.
 * One process runs a flow at a time (its lease), so nothing else writes a flow's consents meanwhile.
 *
 * The file is a cache: in a directory of its own that only this user can open, never synced to disk,
 * removed when the store closes (and, should the process die first, by the next one that opens a
 * mirror); its page cache is fixed, so memory stays flat however many people.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import type { ConsentLookup, StoredConsent } from './state-store.ts';

/** The mirrors' directories: `sluice-consents-<pid>-<random>` in the temp directory. */
const PREFIX = 'sluice-consents-';

/** Rows read from PostgreSQL per page while syncing. */
const SYNC_PAGE = 5_000;
/** The mirror's page cache, in KiB (as SQLite's negative `cache_size`). */
const CACHE_KIB = 16 * 1024;

/** A consent as the record holds it, with its change sequence (text: a bigint). */
export interface ConsentChange extends StoredConsent {
  readonly seq: string;
}

/**
 * A flow's consents changed after a sequence, in pages of at most `pageSize`, in any order, all read
 * from one snapshot of the record.
 */
export type ConsentChanges = (
  flow: string,
  after: string,
  pageSize: number,
) => AsyncIterable<ConsentChange[]>;

export class ConsentReplica {
  readonly #db: DatabaseSync;
  readonly #dir: string;
  /** The change sequence each flow's mirror is complete up to. */
  readonly #synced = new Map<string, string>();
  /** Nesting depth of `snapshot` (the outermost opens and ends the read transaction). */
  #depth = 0;
  #closed = false;

  private constructor(db: DatabaseSync, dir: string) {
    this.#db = db;
    this.#dir = dir;
  }

  static open(): ConsentReplica {
    removeOrphans();
    // mkdtemp makes the directory readable by this user only (0700); the name carries the process id.
    const dir = mkdtempSync(join(tmpdir(), `${PREFIX}${process.pid}-`));
    try {
      const db = new DatabaseSync(join(dir, 'consents.db'));
      db.exec(`
        PRAGMA journal_mode = OFF;
        PRAGMA synchronous = OFF;
        PRAGMA cache_size = -${CACHE_KIB};
        PRAGMA temp_store = FILE;
        CREATE TABLE consents (
          flow TEXT NOT NULL,
          consent_key TEXT NOT NULL,
          subject TEXT NOT NULL,
          state TEXT NOT NULL,
          PRIMARY KEY (flow, consent_key)
        ) STRICT;
        CREATE INDEX consents_subject ON consents (flow, subject);
      `);
      return new ConsentReplica(db, dir);
    } catch (err) {
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
  }

  /** Brings a flow's mirror up to date with the record: the consents changed since the last sync. */
  async sync(flow: string, changes: ConsentChanges): Promise<void> {
    const from = this.#synced.get(flow) ?? '0';
    let upTo = BigInt(from);
    for await (const rows of changes(flow, from, SYNC_PAGE)) {
      if (this.#closed) return;
      this.#upsert(flow, rows);
      for (const r of rows) if (BigInt(r.seq) > upTo) upTo = BigInt(r.seq);
    }
    this.#synced.set(flow, String(upTo));
  }

  /**
   * Consents the record has just committed. A flow never synced is left alone: its first sync reads
   * them with the rest.
   */
  apply(flow: string, consents: readonly StoredConsent[]): void {
    if (this.#closed || !this.#synced.has(flow) || consents.length === 0) return;
    this.#upsert(flow, consents);
  }

  /** Synchronous reads of a flow's mirrored consents. */
  lookup(flow: string): ConsentLookup {
    const states = this.#db.prepare('SELECT state FROM consents WHERE flow = ? AND subject = ?');
    const subject = this.#db.prepare('SELECT subject FROM consents WHERE flow = ? AND consent_key = ?');
    const count = this.#db.prepare('SELECT count(*) AS n FROM consents WHERE flow = ?');
    return {
      snapshot: (read) => this.#snapshot(read),
      statesOf: (s) => states.all(flow, s).map((r) => String(r.state)),
      subjectOf: (key) => {
        const row = subject.get(flow, key);
        return row === undefined ? undefined : String(row.subject);
      },
      count: () => Number(count.get(flow)?.n ?? 0),
    };
  }

  /** Removes the mirror (idempotent). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#db.close();
    } finally {
      rmSync(this.#dir, { recursive: true, force: true });
    }
  }

  #upsert(flow: string, rows: readonly StoredConsent[]): void {
    if (rows.length === 0) return;
    const upsert = this.#db.prepare(
      `INSERT INTO consents (flow, consent_key, subject, state) VALUES (?, ?, ?, ?)
       ON CONFLICT (flow, consent_key) DO UPDATE SET subject = excluded.subject, state = excluded.state`,
    );
    this.#db.exec('BEGIN');
    try {
      for (const r of rows) upsert.run(flow, r.key, r.subject, r.state);
      this.#db.exec('COMMIT');
    } catch (err) {
      this.#db.exec('ROLLBACK');
      throw err;
    }
  }

  /** Runs `read` in one read transaction (nested calls share the outermost). */
  #snapshot<T>(read: () => T): T {
    if (this.#depth > 0) return read();
    this.#db.exec('BEGIN');
    this.#depth++;
    try {
      return read();
    } finally {
      this.#depth--;
      this.#db.exec('COMMIT');
    }
  }
}

/**
 * Removes the mirrors of processes that ended without closing their store (killed, crashed): a
 * directory whose process id no longer runs. Another user's, or one that cannot be read, stays.
 */
function removeOrphans(): void {
  let entries: string[];
  try {
    entries = readdirSync(tmpdir());
  } catch {
    return;
  }
  for (const name of entries) {
    const pid = Number(/^sluice-consents-(\d+)-/.exec(name)?.[1]);
    if (!Number.isSafeInteger(pid) || pid === process.pid || isRunning(pid)) continue;
    try {
      rmSync(join(tmpdir(), name), { recursive: true, force: true });
    } catch {
      // Not ours to remove.
    }
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it runs, as another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
