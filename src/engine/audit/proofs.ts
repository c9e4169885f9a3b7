import { SluiceError } from '../../core/errors/index.ts';
import { type Hash, toHex } from './hash.ts';
import {
  consistencyRanges,
  EMPTY_ROOT,
  foldSubtrees,
  hashChildren,
  inclusionRanges,
  type LeafRange,
  perfectSubtrees,
  type RangeHasher,
  type Subtree,
  subtreeKey,
  verifyConsistency,
  verifyInclusion,
} from './merkle.ts';
import type { AuditStore } from './store.ts';

/**
 * Merkle proofs answered from a store. Every range a proof needs is split into perfect subtrees; the
 * store holds those hashes (level 0 is the leaf), and any it lacks are rebuilt from their children. A
 * leaf that is gone (pruned) makes the proof unavailable rather than wrong.
 */

export interface InclusionProof {
  readonly seq: number;
  readonly treeSize: number;
  readonly leafHash: string;
  readonly rootHash: string;
  /** RFC 9162 inclusion path, leaf end first (hex). */
  readonly path: readonly string[];
}

export interface ConsistencyProof {
  readonly fromSize: number;
  readonly toSize: number;
  readonly fromRoot: string;
  readonly toRoot: string;
  readonly path: readonly string[];
}

/** Hashes for `keys`, by `subtreeKey`; rebuilds missing interior subtrees from their children. */
export async function resolveSubtrees(
  store: AuditStore,
  keys: readonly Subtree[],
): Promise<Map<string, Hash>> {
  const found = await store.subtrees(keys);
  const missing = uniqueSubtrees(keys.filter((k) => !found.has(subtreeKey(k))));
  if (missing.length === 0) return found;
  const gone = missing.find((k) => k.level === 0);
  if (gone) {
    throw new SluiceError('AUDIT_PROOF_UNAVAILABLE', `The leaf hash of entry ${gone.index} is not stored.`, {
      details: { seq: gone.index },
    });
  }
  const children = missing.flatMap((k) => [
    { level: k.level - 1, index: k.index * 2 },
    { level: k.level - 1, index: k.index * 2 + 1 },
  ]);
  const below = await resolveSubtrees(store, children);
  for (const k of missing) {
    const left = below.get(subtreeKey({ level: k.level - 1, index: k.index * 2 }));
    const right = below.get(subtreeKey({ level: k.level - 1, index: k.index * 2 + 1 }));
    if (left && right) found.set(subtreeKey(k), hashChildren(left, right));
  }
  return found;
}

/** A synchronous hasher for `ranges`, after fetching every subtree they need in one go. */
export async function rangeHasher(store: AuditStore, ranges: readonly LeafRange[]): Promise<RangeHasher> {
  const keys = uniqueSubtrees(ranges.flatMap((r) => perfectSubtrees(r.start, r.end)));
  const hashes = await resolveSubtrees(store, keys);
  return (start, end) =>
    foldSubtrees(
      perfectSubtrees(start, end).map((s) => {
        const hash = hashes.get(subtreeKey(s));
        if (!hash) throw new SluiceError('INTERNAL', `Subtree ${subtreeKey(s)} was not resolved.`);
        return hash;
      }),
    );
}

/** MTH of the first `size` entries. */
export async function rootAt(store: AuditStore, size: number): Promise<Hash> {
  if (size === 0) return EMPTY_ROOT;
  const hasher = await rangeHasher(store, [{ start: 0, end: size }]);
  return hasher(0, size);
}

export async function proveInclusion(
  store: AuditStore,
  seq: number,
  treeSize: number,
): Promise<InclusionProof> {
  const size = await store.size();
  const cut = (await store.retentionBase())?.cut ?? 0;
  if (
    !Number.isSafeInteger(seq) ||
    !Number.isSafeInteger(treeSize) ||
    seq < cut ||
    seq >= treeSize ||
    treeSize > size
  ) {
    throw unavailable(
      `No inclusion proof for entry ${seq} in a tree of size ${treeSize} (log size ${size}, retention cut ${cut}).`,
    );
  }
  const ranges = inclusionRanges(seq, treeSize);
  const hasher = await rangeHasher(store, [
    ...ranges,
    { start: seq, end: seq + 1 },
    { start: 0, end: treeSize },
  ]);
  const leaf = hasher(seq, seq + 1);
  const root = hasher(0, treeSize);
  const path = ranges.map((r) => hasher(r.start, r.end));
  if (!verifyInclusion(leaf, seq, treeSize, path, root)) {
    throw new SluiceError('AUDIT_INTEGRITY', `The stored tree hashes do not prove entry ${seq}.`, {
      details: { seq },
    });
  }
  return { seq, treeSize, leafHash: toHex(leaf), rootHash: toHex(root), path: path.map(toHex) };
}

export async function proveConsistency(
  store: AuditStore,
  fromSize: number,
  toSize: number,
): Promise<ConsistencyProof> {
  const size = await store.size();
  const cut = (await store.retentionBase())?.cut ?? 0;
  const valid =
    Number.isSafeInteger(fromSize) &&
    Number.isSafeInteger(toSize) &&
    (fromSize === 0 || fromSize >= cut) &&
    fromSize <= toSize &&
    toSize <= size;
  if (!valid) {
    throw unavailable(
      `No consistency proof from size ${fromSize} to ${toSize} (log size ${size}, retention cut ${cut}).`,
    );
  }
  const ranges = consistencyRanges(fromSize, toSize);
  const roots: LeafRange[] = [];
  if (fromSize > 0) roots.push({ start: 0, end: fromSize });
  if (toSize > 0) roots.push({ start: 0, end: toSize });
  const hasher = await rangeHasher(store, [...ranges, ...roots]);
  const fromRoot = fromSize === 0 ? EMPTY_ROOT : hasher(0, fromSize);
  const toRoot = toSize === 0 ? EMPTY_ROOT : hasher(0, toSize);
  const path = ranges.map((r) => hasher(r.start, r.end));
  if (!verifyConsistency(fromSize, toSize, fromRoot, toRoot, path)) {
    throw new SluiceError(
      'AUDIT_INTEGRITY',
      `The stored tree hashes do not prove sizes ${fromSize} to ${toSize} consistent.`,
    );
  }
  return { fromSize, toSize, fromRoot: toHex(fromRoot), toRoot: toHex(toRoot), path: path.map(toHex) };
}

function uniqueSubtrees(keys: readonly Subtree[]): Subtree[] {
  const seen = new Map<string, Subtree>();
  for (const k of keys) seen.set(subtreeKey(k), k);
  return [...seen.values()];
}

function unavailable(message: string): SluiceError {
  return new SluiceError('AUDIT_PROOF_UNAVAILABLE', message);
}
