import type { TargetWrite } from '../mapping/canonical-to-veeva.ts';
import type { CrmRecordId } from '../model/ids.ts';

/** What happened to one write in a batch. Expected "no" answers are values, not exceptions. */
export type WriteResult =
  | { readonly status: 'created' | 'updated'; readonly id: CrmRecordId }
  /** The target refused this record (validation, unknown field, missing parent): quarantine it. */
  | {
      readonly status: 'rejected';
      readonly codes: readonly string[];
      readonly fields: readonly string[];
      readonly message: string;
    }
  /** The external id matched several records (HTTP 300): nothing was written; quarantine, never retry. */
  | { readonly status: 'ambiguous' }
  /** A transient failure for this entry only (e.g. a per-entry 429 inside a 200 batch answer). */
  | { readonly status: 'retry'; readonly codes: readonly string[] };

export interface UpsertOptions {
  /**
   * Seals the batch: given the exact records the request will carry, returns a signed envelope
   * (compact JWS) the target receives with them and can verify.
   */
  readonly seal?: (records: readonly unknown[]) => Promise<string | undefined>;
  /** All or nothing: when one record fails, the target rolls the whole request back. */
  readonly allOrNone?: boolean;
}

/** What happened to one delete. A record already gone counts as done: deletes are idempotent. */
export type DeleteResult =
  | { readonly status: 'deleted' | 'missing' }
  | { readonly status: 'rejected'; readonly codes: readonly string[] }
  | { readonly status: 'retry'; readonly codes: readonly string[] };

/**
 * A delivery target. `upsert` writes a batch of records of one object type keyed by external id and
 * returns one result per write, in order. Failures of the whole request throw.
 */
export interface Target {
  readonly system: string;
  /** The most records one upsert request may carry. */
  readonly maxBatchSize: number;
  upsert(
    object: string,
    externalIdField: string,
    writes: readonly TargetWrite[],
    signal: AbortSignal,
    options?: UpsertOptions,
  ): Promise<WriteResult[]>;
  /** Deletes records by target id (at most `maxBatchSize`), one result per id, in order. */
  delete(ids: readonly CrmRecordId[], signal: AbortSignal): Promise<DeleteResult[]>;
  /**
   * Which of these records of `object` (at most `maxBatchSize` ids) are live at the target, with when
   * each was last modified there (ISO instant): for reconciliation. Absent ids are not live.
   */
  inspect?(
    object: string,
    ids: readonly CrmRecordId[],
    signal: AbortSignal,
  ): Promise<Map<string, { readonly lastModified: string }>>;
}
