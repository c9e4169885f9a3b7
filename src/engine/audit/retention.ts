import type { JSONWebKeySet } from 'jose';
import { SluiceError } from '../../core/errors/index.ts';
import { buildBatch, loadHead } from './append.ts';
import { perfectSubtrees, type SubtreeHash, subtreeKey } from './merkle.ts';
import { resolveSubtrees } from './proofs.ts';
import type { AuditStore } from './store.ts';
import { verifyAudit } from './verify.ts';

/**
 * Retention: entries recorded before a cut-off are deleted, and the log stays verifiable.
 *
 * The cut is always at a signed checkpoint (the largest one whose entries are all older than the
 * cut-off, so no newer entry is ever lost to out-of-order timestamps). What stays of the pruned prefix:
 * the checkpoint at the cut, the chain hash of its last entry, and the hashes of `perfectSubtrees(0, cut)`
 * — at most log2(cut) hashes, the minimum from which (with the kept leaves) the Merkle root of any later
 * size, and so every later checkpoint, can be recomputed. After a prune:
 *  - verification restarts from the cut (checkpoint signature, root from the kept hashes, chain head);
 *  - inclusion proofs for kept entries, and consistency proofs from any size >= cut, still verify
 *    against later checkpoints;
 *  - pruned entries have no proofs any more, checkpoints below the cut are deleted (their roots
 *    cannot be recomputed), and consistency proofs from sizes below the cut are unavailable.
 * The prune records itself: a `retention-prune` entry with the cut is appended in the same
 * transaction, and verification fails if the base of the log is not recorded that way.
 */

export interface RetentionPolicy {
  /** Entries recorded (their `at`) strictly before this instant may be pruned. */
  readonly before: Date | string;
  /** The flow name on the retention-prune entry (default `sluice-audit`). */
  readonly flow?: string;
}

export interface PruneResult {
  /** Entries below this seq are gone (equal to `previousCut` when nothing was pruned). */
  readonly cut: number;
  readonly previousCut: number;
  readonly entriesPruned: number;
  readonly nodesPruned: number;
  readonly checkpointsPruned: number;
  /** The seq of the retention-prune entry, when something was pruned. */
  readonly recordSeq?: number;
}

export async function pruneAudit(
  store: AuditStore,
  jwks: JSONWebKeySet,
  policy: RetentionPolicy,
  now: Date,
): Promise<PruneResult> {
  const before = policy.before instanceof Date ? policy.before.getTime() : Date.parse(policy.before);
  if (!Number.isFinite(before)) {
    throw new SluiceError('AUDIT_QUERY_INVALID', 'The retention cut-off is not a valid instant.', {
      details: { fields: ['before'] },
    });
  }
  const cutoff = new Date(before).toISOString();
  const previousCut = (await store.retentionBase())?.cut ?? 0;
  const size = await store.size();
  const firstKept = (await store.firstSeqAtOrAfter(cutoff, previousCut)) ?? size;
  const checkpoint = (await store.checkpoints())
    .filter((c) => c.treeSize > previousCut && c.treeSize <= firstKept)
    .at(-1);
  if (!checkpoint)
    return { cut: previousCut, previousCut, entriesPruned: 0, nodesPruned: 0, checkpointsPruned: 0 };
  const cut = checkpoint.treeSize;

  const report = await verifyAudit(store, jwks, { untilSize: cut });
  if (!report.ok) {
    throw new SluiceError(
      'AUDIT_PRUNE_REFUSED',
      `Pruning up to ${cut} refused: the log breaks at ${report.firstBreak?.seq} (${report.firstBreak?.kind}).`,
      { details: { cut, breakSeq: report.firstBreak?.seq, breakKind: report.firstBreak?.kind } },
    );
  }
  const last = await store.entry(cut - 1);
  if (!last) throw new SluiceError('INTERNAL', `Entry ${cut - 1} vanished while pruning.`);
  const keys = perfectSubtrees(0, cut);
  const hashes = await resolveSubtrees(store, keys);
  const frontier: SubtreeHash[] = keys.map((k) => {
    const hash = hashes.get(subtreeKey(k));
    if (!hash) throw new SluiceError('INTERNAL', `Subtree ${subtreeKey(k)} was not resolved.`);
    return { ...k, hash };
  });

  const head = await loadHead(store);
  const record = buildBatch(
    head,
    [
      {
        kind: 'retention-prune',
        flow: policy.flow ?? 'sluice-audit',
        outcome: 'success',
        details: { cut, previousCut, entriesPruned: cut - previousCut, before: cutoff },
      },
    ],
    now,
  );
  const counts = await store.prune({
    cut,
    chainHead: last.chainHash,
    checkpointJws: checkpoint.jws,
    prunedAt: now.toISOString(),
    frontier,
    record: record.batch,
  });
  return {
    cut,
    previousCut,
    entriesPruned: counts.entries,
    nodesPruned: counts.nodes,
    checkpointsPruned: counts.checkpoints,
    recordSeq: head.size,
  };
}
