import { SluiceError } from '../../core/errors/index.ts';
import {
  type AuditEventInput,
  canonicalEntry,
  leafHashOf,
  normalizeEntry,
  type StoredAuditEntry,
} from './entry.ts';
import { chainHash, type Hash, toHex, ZERO_HASH } from './hash.ts';
import { MerkleFrontier, perfectSubtrees, type SubtreeHash, subtreeKey } from './merkle.ts';
import { resolveSubtrees } from './proofs.ts';
import type { AppendBatch, AuditStore, StoredEntryRow } from './store.ts';

/**
 * The writer's view of the log head (size, chain head, Merkle frontier) and the building of append
 * batches from it. Building is pure: nothing is stored until the store accepts the whole batch.
 */
export interface LogHead {
  readonly size: number;
  readonly chainHead: Hash;
  readonly frontier: MerkleFrontier;
}

export async function loadHead(store: AuditStore): Promise<LogHead> {
  const size = await store.size();
  if (size === 0) return { size, chainHead: ZERO_HASH, frontier: MerkleFrontier.empty() };
  const base = await store.retentionBase();
  let chainHead: Hash;
  if (base && base.cut === size) {
    chainHead = base.chainHead;
  } else {
    const last = await store.entry(size - 1);
    if (!last) throw integrity(`The last audit entry (${size - 1}) is not stored.`);
    chainHead = last.chainHash;
  }
  const keys = perfectSubtrees(0, size);
  let hashes: Map<string, Hash>;
  try {
    hashes = await resolveSubtrees(store, keys);
  } catch (err) {
    throw integrity('The stored Merkle tree of the audit log is incomplete.', err);
  }
  const nodes: SubtreeHash[] = keys.map((k) => {
    const hash = hashes.get(subtreeKey(k));
    if (!hash) throw integrity('The stored Merkle tree of the audit log is incomplete.');
    return { ...k, hash };
  });
  return { size, chainHead, frontier: MerkleFrontier.of(size, nodes) };
}

export interface BuiltBatch {
  readonly batch: AppendBatch;
  readonly entries: StoredAuditEntry[];
  readonly next: LogHead;
}

/** Validates, numbers and hashes `inputs` on top of `head`. Throws AUDIT_ENTRY_INVALID before hashing anything. */
export function buildBatch(head: LogHead, inputs: readonly AuditEventInput[], now: Date): BuiltBatch {
  const normalized = inputs.map((input, i) => {
    try {
      return normalizeEntry(input, head.size + i, now);
    } catch (err) {
      if (err instanceof SluiceError) {
        throw new SluiceError(err.code, `Entry #${i} of the batch: ${err.message}`, {
          details: { ...err.details, index: i },
        });
      }
      throw err;
    }
  });
  const frontier = head.frontier.clone();
  let chain = head.chainHead;
  const rows: StoredEntryRow[] = [];
  const nodes: SubtreeHash[] = [];
  const entries: StoredAuditEntry[] = [];
  for (const entry of normalized) {
    const canonical = canonicalEntry(entry);
    const leaf = leafHashOf(canonical);
    chain = chainHash(chain, leaf);
    nodes.push(...frontier.append(leaf));
    rows.push({ seq: entry.seq, canonical, leafHash: leaf, chainHash: chain });
    entries.push({ ...entry, leafHash: toHex(leaf), chainHash: toHex(chain) });
  }
  return {
    batch: { expectedSize: head.size, entries: rows, nodes },
    entries,
    next: { size: head.size + normalized.length, chainHead: chain, frontier },
  };
}

function integrity(message: string, cause?: unknown): SluiceError {
  return new SluiceError('AUDIT_INTEGRITY', message, cause === undefined ? {} : { cause });
}
