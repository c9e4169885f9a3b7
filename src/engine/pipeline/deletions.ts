import { SluiceError } from '../../core/errors/index.ts';
import { asCrmRecordId } from '../../core/model/ids.ts';
import type { SourceDeletion } from '../../core/ports/source.ts';
import type { Target } from '../../core/ports/target.ts';
import type { StateStore } from '../store/state-store.ts';
import { ledgerRefOf, type RecordStageContext } from './record-stages.ts';

/** A target record Sluice delivered, as the ledger knows it. */
export interface DeliveredRecord {
  readonly object: string;
  readonly externalId: string;
  readonly targetId: string;
  /** The ledger's source ref: `Type/id`, or the pseudonym of patient data. */
  readonly sourceRef: string;
}

export interface DeletionResult {
  readonly ledgerDeletes: { object: string; externalId: string }[];
  /** Target records deleted (or found already gone). */
  readonly deleted: number;
  /** The source refs at least one of whose target records was deleted (or found gone). */
  readonly refs: string[];
  /**
   * Target records the target refused to delete (e.g. locked): still there, their ledger rows kept,
   * the removal kept for later runs to try again.
   */
  readonly refused: (DeliveredRecord & { readonly codes: readonly string[] })[];
  readonly batches: number;
}

interface DeletionContext {
  readonly flow: string;
  readonly store: StateStore;
  readonly target: Target;
  readonly signal: AbortSignal;
  /** Awaited before each request; throws to stop (the flow's kill switch). */
  readonly beforeRequest?: () => Promise<void>;
  /**
   * What an answer the target marks as transient does: fail the call (a page, tried again as a whole;
   * the default) or count as refused this time (a retry of refused removals, tried again later).
   */
  readonly transient?: 'throw' | 'refuse';
}

/**
 * Propagates source deletions: every target record the ledger holds for a deleted source record is
 * deleted at the target (children first), and its ledger row removed in the page's transaction.
 * Patient data is found through its pseudonym, as it was written.
 */
export async function propagateDeletions(
  deletions: readonly SourceDeletion[],
  ctx: DeletionContext & { readonly stages: Omit<RecordStageContext, 'asOf'> },
): Promise<DeletionResult> {
  return deleteByLedgerRefs(
    deletions.map((d) => ledgerRefOf(ctx.stages, d.resourceType, d.id)),
    ctx,
  );
}

/**
 * Deletes at the target every record the ledger holds for these source refs (`Type/id` or a
 * pseudonym): for source deletions, consent revocations (suppression) and retractions.
 */
export async function deleteByLedgerRefs(
  refs: readonly string[],
  ctx: DeletionContext,
): Promise<DeletionResult> {
  const found: DeliveredRecord[] = [];
  for (const sourceRef of refs) {
    for (const e of await ctx.store.ledgerBySource(ctx.flow, sourceRef)) {
      found.push({ object: e.object, externalId: e.externalId, targetId: e.targetId, sourceRef });
    }
  }
  return deleteDelivered(found, ctx);
}

/**
 * Deletes delivered records at the target, children (addresses) before their parent account. A record
 * the target refuses is reported, not thrown: the rest of the work goes on and the refusal is kept.
 * An answer the target marks as transient fails the call (unless `transient: 'refuse'`), so the page
 * is tried again as a whole.
 */
export async function deleteDelivered(
  records: readonly DeliveredRecord[],
  ctx: DeletionContext,
): Promise<DeletionResult> {
  const ordered = [...records].sort(
    (a, b) => (a.object === 'Account' ? 1 : 0) - (b.object === 'Account' ? 1 : 0),
  );
  const ledgerDeletes: { object: string; externalId: string }[] = [];
  const refused: DeletionResult['refused'] = [];
  const removedRefs = new Set<string>();
  let batches = 0;
  for (let start = 0; start < ordered.length; start += ctx.target.maxBatchSize) {
    const chunk = ordered.slice(start, start + ctx.target.maxBatchSize);
    await ctx.beforeRequest?.();
    const results = await ctx.target.delete(
      chunk.map((e) => asCrmRecordId(e.targetId)),
      ctx.signal,
    );
    batches++;
    results.forEach((r, i) => {
      const entry = chunk[i] as DeliveredRecord;
      switch (r.status) {
        case 'deleted':
        case 'missing':
          ledgerDeletes.push({ object: entry.object, externalId: entry.externalId });
          removedRefs.add(entry.sourceRef);
          break;
        case 'rejected':
          refused.push({ ...entry, codes: r.codes });
          break;
        case 'retry':
          if (ctx.transient === 'refuse') {
            refused.push({ ...entry, codes: r.codes });
            break;
          }
          // Not committed: the page fails, its ledger rows stay, and the next run tries again.
          throw new SluiceError(
            'TGT_HTTP_ERROR',
            `The CRM asked to retry the deletion of a ${entry.object} (${r.codes.join(', ')}); it will be tried again next run.`,
            { details: { object: entry.object, codes: [...r.codes] } },
          );
      }
    });
  }
  return {
    ledgerDeletes,
    deleted: ledgerDeletes.length,
    batches,
    refs: [...removedRefs],
    refused,
  };
}
