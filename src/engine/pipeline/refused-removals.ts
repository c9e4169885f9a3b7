import type { Target } from '../../core/ports/target.ts';
import type { NewRefusedRemoval, RefusedRemoval, RemovalCause, StateStore } from '../store/state-store.ts';
import { type DeletionResult, deleteDelivered } from './deletions.ts';

/**
 * Removals the target refuses (a locked record, a record another one depends on) do not stop the flow:
 * each is kept with its codes, its ledger row stays (the record is still there), later runs try it
 * again, and `sluice status` shows what waits. A record delivered again meanwhile drops its removal.
 */

/** The first retry a minute after a refusal, then doubling, at most hourly (loop cycles). */
const FIRST_RETRY_MS = 60_000;
const LONGEST_RETRY_MS = 3_600_000;

/** When to try again after the `attempts`-th refusal. */
export function nextAttemptAt(at: Date, attempts: number): string {
  const wait = Math.min(LONGEST_RETRY_MS, FIRST_RETRY_MS * 2 ** Math.max(0, attempts - 1));
  return new Date(at.getTime() + wait).toISOString();
}

/** A refusal as the row to keep: the `attempts`-th for this target record. */
function refusalRow(
  r: DeletionResult['refused'][number],
  cause: RemovalCause,
  because: string | undefined,
  ctx: { readonly flow: string; readonly runId: string; readonly at: Date },
  attempts: number,
): NewRefusedRemoval {
  return {
    flow: ctx.flow,
    object: r.object,
    externalId: r.externalId,
    targetId: r.targetId,
    sourceRef: r.sourceRef,
    cause,
    ...(because === undefined ? {} : { because }),
    codes: r.codes,
    runId: ctx.runId,
    attemptedAt: ctx.at.toISOString(),
    nextAttemptAt: nextAttemptAt(ctx.at, attempts),
  };
}

/** The refusals of a deletion step, as rows to keep. */
export function refusalsOf(
  result: DeletionResult | undefined,
  cause: RemovalCause,
  ctx: {
    readonly flow: string;
    readonly runId: string;
    readonly at: Date;
    /** The withhold reason of a retracted source ref. */
    readonly because?: (sourceRef: string) => string | undefined;
  },
): NewRefusedRemoval[] {
  return (result?.refused ?? []).map((r) => refusalRow(r, cause, ctx.because?.(r.sourceRef), ctx, 1));
}

export interface RetryOutcome {
  /** Refused removals this attempt completed (the record is gone from the target). */
  readonly completed: RefusedRemoval[];
  /** Those refused again. */
  readonly refused: NewRefusedRemoval[];
  /** Every removal still waiting after this attempt (tried or not yet due), as `object` NUL `externalId`. */
  readonly waiting: string[];
  readonly batches: number;
}

/**
 * Tries the flow's refused removals again (all of them, or only those due), and records the outcome
 * in one transaction.
 */
export async function retryRefusedRemovals(ctx: {
  readonly flow: string;
  readonly runId: string;
  readonly store: StateStore;
  readonly target: Target;
  readonly signal: AbortSignal;
  readonly beforeRequest?: () => Promise<void>;
  readonly now: Date;
  readonly which: 'all' | 'due';
}): Promise<RetryOutcome> {
  // One read of what waits: those due are tried, the others stay known to the run.
  const all = await ctx.store.listRefusedRemovals(ctx.flow);
  const dueBy = ctx.now.toISOString();
  const waiting = ctx.which === 'due' ? all.filter((r) => r.nextAttemptAt <= dueBy) : all;
  const keyOf = (r: { object: string; externalId: string }) => `${r.object}\u0000${r.externalId}`;
  if (waiting.length === 0) return { completed: [], refused: [], waiting: all.map(keyOf), batches: 0 };
  // A transient answer leaves the removal waiting for the next attempt instead of failing the run.
  const result = await deleteDelivered(waiting, { ...ctx, transient: 'refuse' });
  const removed = new Set(result.ledgerDeletes.map(keyOf));
  const byKey = new Map(waiting.map((w) => [keyOf(w), w]));
  const refused = result.refused.map((r) => {
    const before = byKey.get(keyOf(r)) as RefusedRemoval;
    return refusalRow(r, before.cause, before.because, { ...ctx, at: ctx.now }, before.attempts + 1);
  });
  await ctx.store.settleRefusedRemovals(ctx.flow, { removed: result.ledgerDeletes, refused });
  return {
    completed: waiting.filter((w) => removed.has(keyOf(w))),
    refused,
    waiting: all.map(keyOf).filter((k) => !removed.has(k)),
    batches: result.batches,
  };
}
