import { SluiceError } from '../../core/errors/index.ts';
import { asCrmRecordId } from '../../core/model/ids.ts';
import type { Target } from '../../core/ports/target.ts';
import { NO_PROGRESS, type ProgressSink } from '../pipeline/progress.ts';
import type { LedgerEntry, StateStore } from '../store/state-store.ts';

/**
 * Reconciliation: the flow's delivery ledger (what Sluice last wrote, and when) against what the target
 * holds now. Each delivered record is looked up by its target id: gone (deleted or merged away in the
 * CRM), or modified there after Sluice's last write (a CRM user's edit, an automation), or as written.
 * Reads only; counts and ids (target ids, `Type/id` or pseudonyms), never record content.
 */

export interface ReconcileFinding {
  readonly object: string;
  /** The external id Sluice writes it by. */
  readonly externalId: string;
  readonly targetId: string;
  /** `Type/id` of provider data, the pseudonym of patient data. */
  readonly sourceRef: string;
  readonly deliveredAt: string;
  /** When the target last modified it (changed records only). */
  readonly lastModified?: string;
}

export interface ObjectReconciliation {
  /** Ledger rows looked up. */
  checked: number;
  /** Live at the target, unmodified since Sluice's last write. */
  asWritten: number;
  /** Not live at the target any more. */
  missing: number;
  /** Modified at the target after Sluice's last write (beyond the tolerance). */
  changed: number;
}

export interface ReconcileReport {
  readonly flow: string;
  readonly checkedAt: string;
  /** Nothing missing, nothing changed. */
  readonly clean: boolean;
  readonly checked: number;
  readonly objects: Record<string, ObjectReconciliation>;
  /** The first missing records (up to the sample size), in ledger order. */
  readonly missing: ReconcileFinding[];
  /** The first changed records (up to the sample size), in ledger order. */
  readonly changed: ReconcileFinding[];
  readonly toleranceSeconds: number;
}

export interface ReconcileOptions {
  readonly flow: string;
  readonly store: StateStore;
  readonly target: Target;
  readonly signal: AbortSignal;
  /**
   * A modification at the target up to this many seconds after Sluice's last write is taken as that
   * write itself (clocks differ between hosts); default 60.
   */
  readonly toleranceSeconds?: number;
  /** How many findings of each kind the report lists; default 20. */
  readonly sample?: number;
  readonly progress?: ProgressSink;
  readonly now?: () => Date;
  /** Ledger rows read at a time (default 2,000). */
  readonly ledgerPage?: number;
  /** Called with every missing record (not only the sample), e.g. to repair them. */
  readonly onMissing?: (finding: ReconcileFinding) => void;
}

export async function reconcileFlow(options: ReconcileOptions): Promise<ReconcileReport> {
  const { flow, store, target, signal } = options;
  const inspect = target.inspect?.bind(target);
  if (inspect === undefined) {
    throw new SluiceError(
      'CFG_FLOW_INVALID',
      `The target ${target.system} cannot be looked up by record id.`,
    );
  }
  const toleranceSeconds = options.toleranceSeconds ?? 60;
  const sample = options.sample ?? 20;
  const progress = options.progress ?? NO_PROGRESS;
  const ledgerPage = options.ledgerPage ?? 2000;
  const checkedAt = (options.now ?? (() => new Date()))().toISOString();
  const objects: Record<string, ObjectReconciliation> = {};
  const missing: ReconcileFinding[] = [];
  const changed: ReconcileFinding[] = [];
  let checked = 0;
  let current: string | undefined;

  const lookUp = async (object: string, rows: readonly LedgerEntry[]): Promise<void> => {
    const counts = objects[object] ?? { checked: 0, asWritten: 0, missing: 0, changed: 0 };
    objects[object] = counts;
    const live = await inspect(
      object,
      rows.map((r) => asCrmRecordId(r.targetId)),
      signal,
    );
    for (const row of rows) {
      counts.checked++;
      checked++;
      const finding = {
        object,
        externalId: row.externalId,
        targetId: row.targetId,
        sourceRef: row.sourceRef,
        deliveredAt: row.deliveredAt,
      };
      const at = live.get(row.targetId);
      if (at === undefined) {
        counts.missing++;
        if (missing.length < sample) missing.push(finding);
        options.onMissing?.(finding);
      } else if (
        at.lastModified !== '' &&
        Date.parse(at.lastModified) > Date.parse(row.deliveredAt) + toleranceSeconds * 1000
      ) {
        counts.changed++;
        if (changed.length < sample) changed.push({ ...finding, lastModified: at.lastModified });
      } else counts.asWritten++;
    }
    progress.pageCommitted(object, counts.checked, undefined);
  };

  let after: LedgerEntry | undefined;
  let pending: LedgerEntry[] = [];
  while (true) {
    signal.throwIfAborted();
    const page = await store.listLedger(flow, after, ledgerPage);
    for (const row of page) {
      if (row.object !== current) {
        if (current !== undefined) {
          if (pending.length > 0) await lookUp(current, pending);
          progress.streamFinished(current, objects[current]?.checked ?? 0);
        }
        current = row.object;
        pending = [];
        progress.streamStarted(current);
      }
      pending.push(row);
      if (pending.length === target.maxBatchSize) {
        await lookUp(current, pending);
        pending = [];
      }
    }
    if (page.length < ledgerPage) break;
    after = page.at(-1);
  }
  if (current !== undefined) {
    if (pending.length > 0) await lookUp(current, pending);
    progress.streamFinished(current, objects[current]?.checked ?? 0);
  }
  const total = Object.values(objects);
  return {
    flow,
    checkedAt,
    clean: total.every((o) => o.missing === 0 && o.changed === 0),
    checked,
    objects,
    missing,
    changed,
    toleranceSeconds,
  };
}
