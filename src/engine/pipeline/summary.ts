/** Counts of one stream in a run. */
export interface StreamCounts {
  read: number;
  /** Target records written (created + updated). */
  delivered: number;
  unchanged: number;
  quarantined: number;
  withheld: number;
}

/**
 * What a run did, in counts and codes only: it is printed, logged and stored, so it never carries
 * record content.
 */
export interface RunSummary {
  readonly flow: string;
  readonly runId: string;
  readonly status: 'succeeded' | 'failed';
  readonly startedAt: string;
  readonly finishedAt: string;
  /**
   * A quiet loop cycle that found nothing to do (every record read already processed, nothing removed,
   * no error): it left no entry in the audit trail or the run history.
   */
  readonly idle?: boolean;
  readonly durationMs: number;
  /** Source records read. */
  readonly read: number;
  /** Target records written in this run (created + updated). */
  readonly delivered: number;
  readonly created: number;
  readonly updated: number;
  /** Target records skipped because the ledger shows the same payload was already delivered. */
  readonly unchanged: number;
  /** Source records skipped because this version was already processed (overlap re-reads, repeats). */
  readonly skipped: number;
  /** Target records deleted because their source record was deleted. */
  readonly deleted: number;
  /** Target records deleted because the person's consent no longer permits (suppression). */
  readonly suppressed: number;
  /**
   * Target records deleted because a withhold rule (or the provenance policy) now keeps back a record
   * an earlier run delivered, where the rule says so (`delivered: delete`).
   */
  readonly retracted: number;
  /**
   * Removals the target refused (e.g. a locked record): `refused` in this run, `completed` of earlier
   * refusals this run managed, `pending` still waiting after it (tried again by later runs; see
   * `sluice status`). Absent when all three are zero.
   */
  readonly removals?: { readonly refused: number; readonly completed: number; readonly pending: number };
  /** Records read again because a policy event (a consent now permitting) made them eligible. */
  readonly reconsidered?: number;
  /** Source records quarantined in this run. */
  readonly quarantined: number;
  /** Source records a withhold rule kept back. */
  readonly withheld: number;
  /** Upsert requests sent to the target. */
  readonly batches: number;
  readonly byStream: Readonly<Record<string, StreamCounts>>;
  readonly quarantineReasons: Readonly<Record<string, number>>;
  readonly withholdReasons: Readonly<Record<string, number>>;
  /** Checkpoint position per stream after the run. */
  readonly checkpoints: Readonly<Record<string, string>>;
  /**
   * The target's flow control at the end of the run: rate, adaptive limit, breaker state, quota use,
   * total admission wait (counts only).
   */
  readonly flowControl?: Readonly<Record<string, string | number | undefined>>;
  /** `Object.Field` values the recipient allowlist dropped (never sent), with counts. */
  readonly droppedFields?: Readonly<Record<string, number>>;
  /** Re-identification risk of the de-identified pages (when the flow sets thresholds). */
  readonly risk?: {
    readonly pages: number;
    readonly belowThreshold: number;
    readonly held: number;
    readonly minK: number;
    readonly maxProsecutorRisk: number;
    readonly action: 'hold' | 'report';
  };
  /** Present when the run failed: the error code and message (no PHI). */
  readonly error?: { readonly code: string; readonly message: string; readonly action: string };
}

export function emptyCounts(): StreamCounts {
  return { read: 0, delivered: 0, unchanged: 0, quarantined: 0, withheld: 0 };
}
