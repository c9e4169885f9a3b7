import type { AuditKind, AuditOutcome } from './entry.ts';
import type { Hash } from './hash.ts';
import type { Subtree, SubtreeHash } from './merkle.ts';

/**
 * Where the audit trail lives. The interface is asynchronous so a PostgreSQL store can follow the
 * SQLite one; it is append-only: entries and checkpoints are never updated, and only `prune` deletes
 * (entries below a recorded, signed retention cut). Stores persist what they are given; hashing, signing
 * and verification live outside, so a store is never trusted to vouch for its own content.
 */

/** One stored entry row: its position, canonical text and the two hashes written with it. */
export interface StoredEntryRow {
  readonly seq: number;
  /** The canonical JSON text; `unknown` because a tampered store may hand back anything. */
  readonly canonical: unknown;
  readonly leafHash: Uint8Array;
  readonly chainHash: Uint8Array;
}

export interface AppendBatch {
  /** The size the writer built the batch on; the store refuses the batch if it moved (AUDIT_CONCURRENT_APPEND). */
  readonly expectedSize: number;
  readonly entries: readonly StoredEntryRow[];
  /** Perfect subtrees (level >= 1) that the batch completed. */
  readonly nodes: readonly SubtreeHash[];
}

export interface StoredCheckpoint {
  readonly treeSize: number;
  readonly jws: string;
}

/** The state a pruned log restarts from: everything needed to verify and extend it without its prefix. */
export interface RetentionBase {
  /** Entries with seq < cut were pruned. */
  readonly cut: number;
  /** Chain hash of entry cut - 1. */
  readonly chainHead: Hash;
  /** The signed checkpoint at tree size `cut`. */
  readonly checkpointJws: string;
  readonly prunedAt: string;
}

export interface PrunePlan {
  readonly cut: number;
  readonly chainHead: Hash;
  readonly checkpointJws: string;
  readonly prunedAt: string;
  /** `perfectSubtrees(0, cut)` with their hashes: the only hashes of the pruned prefix that stay. */
  readonly frontier: readonly SubtreeHash[];
  /** The retention-prune entry that records this prune, appended in the same transaction. */
  readonly record: AppendBatch;
}

export interface PruneCounts {
  readonly entries: number;
  readonly nodes: number;
  readonly checkpoints: number;
}

/** Search criteria as a store applies them (already validated; see query.ts). */
export interface EntrySearch {
  readonly subject?: string;
  /** The source record a provider or organisation entry names (`details.source`, `Type/id`). */
  readonly source?: string;
  readonly batchId?: string;
  readonly runId?: string;
  readonly flow?: string;
  readonly recipient?: string;
  readonly kinds?: readonly AuditKind[];
  readonly outcome?: AuditOutcome;
  /** Inclusive lower bound on `at` (normalised ISO instant). */
  readonly from?: string;
  /** Exclusive upper bound on `at`. */
  readonly to?: string;
  /** Keyset paging: entries after this seq (before it when descending). */
  readonly after?: number;
  readonly order: 'asc' | 'desc';
  readonly limit: number;
}

export interface AuditStore {
  /** The log's id, fixed when the store was created; checkpoints name it. */
  logId(): Promise<string>;
  /** The next seq: one past the highest stored entry, or the retention cut when nothing is above it. */
  size(): Promise<number>;
  /** Entries with seq >= fromSeq, in seq order, at most `limit`. */
  entries(fromSeq: number, limit: number): Promise<StoredEntryRow[]>;
  entry(seq: number): Promise<StoredEntryRow | undefined>;
  /** Appends a batch in one transaction; all or nothing. */
  append(batch: AppendBatch): Promise<void>;
  /** Stored hashes of perfect subtrees; level 0 is the leaf hash. Missing ones are absent from the map. */
  subtrees(keys: readonly Subtree[]): Promise<Map<string, Hash>>;
  putCheckpoint(checkpoint: StoredCheckpoint): Promise<void>;
  /** All checkpoints, by tree size. */
  checkpoints(): Promise<StoredCheckpoint[]>;
  latestCheckpoint(): Promise<StoredCheckpoint | undefined>;
  /** The smallest checkpoint with treeSize >= size. */
  checkpointCovering(size: number): Promise<StoredCheckpoint | undefined>;
  retentionBase(): Promise<RetentionBase | undefined>;
  /** The lowest seq >= fromSeq whose `at` is at or after `at`, if any. */
  firstSeqAtOrAfter(at: string, fromSeq: number): Promise<number | undefined>;
  prune(plan: PrunePlan): Promise<PruneCounts>;
  search(criteria: EntrySearch): Promise<StoredEntryRow[]>;
  /**
   * Optional, for stores that several processes append to (PostgreSQL): runs `fn` holding the log's
   * write lock, with a store bound to it, so a writer whose batch was refused as stale can reload the
   * head and append again without another writer slipping in between. What `fn` writes commits together.
   */
  exclusive?<T>(fn: (locked: AuditStore) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}
