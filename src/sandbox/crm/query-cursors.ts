import { recordId } from './ids.ts';
import type { QueryPlan } from './query.ts';

/**
 * Server-side query cursors: the ids a query matched, kept so `nextRecordsUrl` can page through them.
 * Like Salesforce's, a cursor expires after 15 minutes without use and only so many stay open (the
 * oldest is dropped first). Rows are read when a page is served.
 */
export interface QueryCursor {
  readonly id: string;
  readonly plan: QueryPlan;
  readonly ids: readonly string[];
  readonly batchSize: number;
  readonly all: boolean;
  usedMs: number;
}

export const DEFAULT_BATCH_SIZE = 2000;
export const MIN_BATCH_SIZE = 200;

/** The batch size from `Sforce-Query-Options: batchSize=N`, clamped to 200..2000; 2000 otherwise. */
export function batchSizeFrom(header: string | string[] | undefined): number {
  const text = Array.isArray(header) ? header.join(',') : (header ?? '');
  const m = /(?:^|[,;\s])batchSize\s*=\s*(\d+)/i.exec(text);
  if (!m) return DEFAULT_BATCH_SIZE;
  return Math.min(DEFAULT_BATCH_SIZE, Math.max(MIN_BATCH_SIZE, Number(m[1])));
}

export class QueryCursors {
  readonly #now: () => Date;
  readonly #ttlMs: number;
  readonly #max: number;
  readonly #cursors = new Map<string, QueryCursor>();
  #next = 1;

  constructor(now: () => Date, options: { ttlMs?: number; max?: number } = {}) {
    this.#now = now;
    this.#ttlMs = options.ttlMs ?? 15 * 60_000;
    this.#max = options.max ?? 100;
  }

  open(plan: QueryPlan, ids: readonly string[], batchSize: number, all: boolean): QueryCursor {
    this.#expire();
    while (this.#cursors.size >= this.#max) {
      const oldest = this.#cursors.keys().next().value;
      if (oldest === undefined) break;
      this.#cursors.delete(oldest);
    }
    const cursor: QueryCursor = {
      id: recordId('01g', this.#next++),
      plan,
      ids,
      batchSize,
      all,
      usedMs: this.#now().getTime(),
    };
    this.#cursors.set(cursor.id, cursor);
    return cursor;
  }

  /** The cursor and position a locator (`01g…-2000`) names, or undefined if unknown or expired. */
  resolve(locator: string): { cursor: QueryCursor; position: number } | undefined {
    this.#expire();
    const m = /^([0-9A-Za-z]{18})-(\d+)$/.exec(locator);
    if (!m) return undefined;
    const cursor = this.#cursors.get(m[1] ?? '');
    const position = Number(m[2]);
    if (!cursor || position > cursor.ids.length) return undefined;
    cursor.usedMs = this.#now().getTime();
    // Keep recently used cursors last, so eviction drops the least recently used.
    this.#cursors.delete(cursor.id);
    this.#cursors.set(cursor.id, cursor);
    return { cursor, position };
  }

  #expire(): void {
    const now = this.#now().getTime();
    for (const [id, cursor] of this.#cursors) if (now - cursor.usedMs > this.#ttlMs) this.#cursors.delete(id);
  }
}
