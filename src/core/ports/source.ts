import type { SystemName } from '../model/ids.ts';

/**
 * A record as read from a source, before anything trusts it: the raw value plus what the adapter could
 * tell about it. `resource` is `unknown` until validation says otherwise.
 */
export interface SourceRecord {
  readonly stream: string;
  readonly resource: unknown;
  /** Where the record was found, for quarantine (a URL path, a file and line) — no content. */
  readonly origin: string;
}

/** A resource the source reports as deleted since the last checkpoint. */
export interface SourceDeletion {
  readonly resourceType: string;
  readonly id: string;
  /** When it was deleted, if the source says. */
  readonly at?: string;
  readonly origin: string;
}

/** One page (or file chunk) of a stream: the unit after which a checkpoint may advance. */
export interface SourcePage {
  readonly records: readonly SourceRecord[];
  /** Resources deleted at the source (bulk export `deleted`, `_history` DELETE entries). */
  readonly deletions?: readonly SourceDeletion[];
  /**
   * The position to checkpoint once this page (and every page before it) is committed, when the
   * source knows it better than the records' `meta.lastUpdated` — e.g. a bulk export's
   * `transactionTime`, or the time the server answered a complete search, given only on the last page.
   * With `explicitCheckpoints` only this moves the checkpoint; otherwise the pipeline takes the later
   * of it and the greatest `meta.lastUpdated` of the page's records.
   */
  readonly checkpoint?: string;
  /**
   * The source's own place beside the checkpoint's time, stored with it and handed back to the next
   * `read` (an event bus: the stream sequence every event of the stream was read up to). A page may
   * carry no records and only move it.
   */
  readonly cursor?: string;
  /** The server's total for the whole query when it reports one (progress only). */
  readonly total?: number;
  /** Non-fatal notes from the source (e.g. OperationOutcome entries in a searchset), no PHI. */
  readonly notes?: readonly string[];
}

/**
 * A change source. `read` yields the records of one stream changed at or after `since` (an ISO
 * instant; undefined means everything), in ascending last-updated order where the source can sort.
 */
export interface Source {
  readonly system: SystemName;
  readonly streams: readonly string[];
  /**
   * True when only `SourcePage.checkpoint` may move a checkpoint: the records are not in change order
   * (a bulk export's files), so their `meta.lastUpdated` says nothing about what was already read.
   */
  readonly explicitCheckpoints?: boolean;
  read(
    stream: string,
    since: string | undefined,
    signal: AbortSignal,
    resume?: SourceResume,
  ): AsyncIterable<SourcePage>;
  /**
   * Reads named records again, whatever their change time (a policy event such as a consent granted
   * anew makes records withheld earlier eligible). Records that no longer exist are left out.
   */
  fetch?(stream: string, ids: readonly string[], signal: AbortSignal): Promise<SourcePage>;
  /**
   * The reads a run is about to make, in order. A source may start preparing the next one while the
   * current one is read (a bulk export kicked off ahead); reads it was not told about work as before.
   */
  plan?(reads: readonly PlannedRead[], signal: AbortSignal): void;
  /** Ends a run: anything prepared and not read is released at the source. */
  close?(): Promise<void>;
}

/** Where a read resumes besides its time: what the checkpoint kept of the source's own place. */
export interface SourceResume {
  /** The `cursor` of the last page committed, when it came from the checkpoint `since` was taken from. */
  readonly cursor?: string;
}

/** One stream read a run will make: the stream and the position it reads from. */
export interface PlannedRead {
  readonly stream: string;
  readonly since: string | undefined;
}
