import { SluiceError } from '../../core/errors/index.ts';
import { asCrmRecordId } from '../../core/model/ids.ts';
import type { SourceDeletion } from '../../core/ports/source.ts';
import type { Target } from '../../core/ports/target.ts';
import type { StateStore } from '../store/state-store.ts';
import { ledgerRefOf, type RecordStageContext } from './record-stages.ts';

export interface DeletionResult {
  readonly ledgerDeletes: { object: string; externalId: string }[];
  /** Target records deleted (or found already gone). */
  readonly deleted: number;
  /** The source refs that had target records to delete. */
  readonly refs: string[];
  readonly batches: number;
}

/**
 * Propagates source deletions: every target record the ledger holds for a deleted source record is
 * deleted at the target (children first), and its ledger row removed in the page's transaction.
 * Patient data is found through its pseudonym, as it was written.
 */
export async function propagateDeletions(
  deletions: readonly SourceDeletion[],
  ctx: {
    readonly flow: string;
    readonly store: StateStore;
    readonly target: Target;
    readonly stages: Omit<RecordStageContext, 'asOf'>;
    readonly signal: AbortSignal;
  },
): Promise<DeletionResult> {
  return deleteByLedgerRefs(
    deletions.map((d) => ledgerRefOf(ctx.stages, d.resourceType, d.id)),
    ctx,
  );
}

/**
 * Deletes at the target every record the ledger holds for these source refs (`Type/id` or a
 * pseudonym): for source deletions and for consent revocations (suppression).
 */
export async function deleteByLedgerRefs(
  refs: readonly string[],
  ctx: {
    readonly flow: string;
    readonly store: StateStore;
    readonly target: Target;
    readonly signal: AbortSignal;
  },
): Promise<DeletionResult> {
  const found: { object: string; externalId: string; targetId: string }[] = [];
  const withRecords: string[] = [];
  for (const ref of refs) {
    const entries = await ctx.store.ledgerBySource(ctx.flow, ref);
    if (entries.length > 0) withRecords.push(ref);
    found.push(...entries);
  }
  // Children (addresses) before their parent account: ledgerBySource orders by object name descending.
  const ordered = [...found].sort(
    (a, b) => (a.object === 'Account' ? 1 : 0) - (b.object === 'Account' ? 1 : 0),
  );
  let deleted = 0;
  let batches = 0;
  for (let start = 0; start < ordered.length; start += ctx.target.maxBatchSize) {
    const chunk = ordered.slice(start, start + ctx.target.maxBatchSize);
    const results = await ctx.target.delete(
      chunk.map((e) => asCrmRecordId(e.targetId)),
      ctx.signal,
    );
    batches++;
    results.forEach((r, i) => {
      if (!('codes' in r)) {
        deleted++;
        return;
      }
      // Not committed: the page fails, its ledger rows stay, and the next run tries again.
      const entry = chunk[i];
      throw new SluiceError(
        'TGT_HTTP_ERROR',
        `The CRM did not delete a ${entry?.object ?? 'record'} (${r.codes.join(', ')}); the deletion will be retried next run.`,
        { details: { object: entry?.object ?? '', codes: [...r.codes] } },
      );
    });
  }
  return {
    ledgerDeletes: ordered.map((e) => ({ object: e.object, externalId: e.externalId })),
    deleted,
    batches,
    refs: withRecords,
  };
}
