import { type Hash, sameHash, sha256 } from './hash.ts';

/**
 * The Merkle Tree Hash of RFC 9162 (section 2.1, unchanged from RFC 6962): leaves are hashed as
 * H(0x00 || data), interior nodes as H(0x01 || left || right), the empty tree is H(""), and a tree of n
 * leaves splits at the largest power of two below n. Proof generation is expressed over *ranges* so a
 * store can answer from cached subtree hashes; verification follows the RFC's step lists literally.
 *
 * Sizes and indices are plain numbers: exact up to 2^53, far beyond any audit log.
 */

const LEAF_PREFIX = new Uint8Array([0]);
const NODE_PREFIX = new Uint8Array([1]);

/** MTH of the empty tree: SHA-256 of the empty string. */
export const EMPTY_ROOT: Hash = sha256();

export function hashLeaf(data: Uint8Array): Hash {
  return sha256(LEAF_PREFIX, data);
}

export function hashChildren(left: Hash, right: Hash): Hash {
  return sha256(NODE_PREFIX, left, right);
}

/** A half-open range of leaves [start, end). */
export interface LeafRange {
  readonly start: number;
  readonly end: number;
}

/** A perfect subtree: the 2^level leaves starting at index * 2^level. */
export interface Subtree {
  readonly level: number;
  readonly index: number;
}

export interface SubtreeHash extends Subtree {
  readonly hash: Hash;
}

/** MTH(D[start:end]) for ranges that are nodes of the tree (the only ranges the algorithms ask for). */
export type RangeHasher = (start: number, end: number) => Hash;

/** The largest power of two strictly below n (n >= 2). */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

export function subtreeRange(subtree: Subtree): LeafRange {
  const width = 2 ** subtree.level;
  return { start: subtree.index * width, end: (subtree.index + 1) * width };
}

export function subtreeKey(subtree: Subtree): string {
  return `${subtree.level}:${subtree.index}`;
}

/**
 * The perfect subtrees that make up a tree node [start, end), left to right, largest first; the node's
 * hash is their right fold with `hashChildren`. For [0, n) these are the "frontier" of a tree of size n:
 * all a log must keep of its first n leaves to extend the tree and prove anything about later leaves.
 */
export function perfectSubtrees(start: number, end: number): Subtree[] {
  const out: Subtree[] = [];
  let at = start;
  let remaining = end - start;
  while (remaining > 0) {
    let width = 1;
    let level = 0;
    while (width * 2 <= remaining && at % (width * 2) === 0) {
      width *= 2;
      level++;
    }
    out.push({ level, index: at / width });
    at += width;
    remaining -= width;
  }
  return out;
}

/** Right fold of subtree hashes: H(a, H(b, H(c, d))). */
export function foldSubtrees(hashes: readonly Hash[]): Hash {
  if (hashes.length === 0) return EMPTY_ROOT;
  let acc = hashes[hashes.length - 1] as Hash;
  for (let i = hashes.length - 2; i >= 0; i--) acc = hashChildren(hashes[i] as Hash, acc);
  return acc;
}

/** The node ranges whose hashes form PATH(index, D[size]) (RFC 9162 2.1.3.1), leaf end first. */
export function inclusionRanges(index: number, size: number): LeafRange[] {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) {
    throw new RangeError(`no inclusion proof for leaf ${index} in a tree of size ${size}`);
  }
  const out: LeafRange[] = [];
  let start = 0;
  let end = size;
  let m = index;
  // Walk down from the root, remembering the sibling at each level; the proof lists them bottom-up.
  while (end - start > 1) {
    const k = splitPoint(end - start);
    if (m < k) {
      out.push({ start: start + k, end });
      end = start + k;
    } else {
      out.push({ start, end: start + k });
      start += k;
      m -= k;
    }
  }
  return out.reverse();
}

/** The node ranges whose hashes form PROOF(oldSize, D[newSize]) (RFC 9162 2.1.4.1). */
export function consistencyRanges(oldSize: number, newSize: number): LeafRange[] {
  if (!Number.isSafeInteger(oldSize) || !Number.isSafeInteger(newSize) || oldSize < 0 || oldSize > newSize) {
    throw new RangeError(`no consistency proof from size ${oldSize} to size ${newSize}`);
  }
  if (oldSize === 0 || oldSize === newSize) return [];
  const out: LeafRange[] = [];
  let start = 0;
  let end = newSize;
  let m = oldSize;
  let complete = true;
  // SUBPROOF(m, D[start:end], complete), unrolled; hashes are appended after the recursive part, so
  // collect them top-down and reverse.
  for (;;) {
    const n = end - start;
    if (m === n) {
      if (!complete) out.push({ start, end });
      break;
    }
    const k = splitPoint(n);
    if (m <= k) {
      out.push({ start: start + k, end });
      end = start + k;
    } else {
      out.push({ start, end: start + k });
      start += k;
      m -= k;
      complete = false;
    }
  }
  return out.reverse();
}

export function inclusionProof(index: number, size: number, hashRange: RangeHasher): Hash[] {
  return inclusionRanges(index, size).map((r) => hashRange(r.start, r.end));
}

export function consistencyProof(oldSize: number, newSize: number, hashRange: RangeHasher): Hash[] {
  return consistencyRanges(oldSize, newSize).map((r) => hashRange(r.start, r.end));
}

const isOdd = (n: number): boolean => n % 2 === 1;
const half = (n: number): number => Math.floor(n / 2);

/** RFC 9162 2.1.3.2: does `path` prove that `leaf` is at `index` in the tree of `size` with `root`? */
export function verifyInclusion(
  leaf: Hash,
  index: number,
  size: number,
  path: readonly Hash[],
  root: Hash,
): boolean {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) {
    return false;
  }
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of path) {
    if (sn === 0) return false;
    if (isOdd(fn) || fn === sn) {
      r = hashChildren(p, r);
      if (!isOdd(fn)) {
        while (!isOdd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      r = hashChildren(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 && sameHash(r, root);
}

/** RFC 9162 2.1.4.2, plus the trivial cases: an empty old tree, and equal sizes (empty proof). */
export function verifyConsistency(
  oldSize: number,
  newSize: number,
  oldRoot: Hash,
  newRoot: Hash,
  proof: readonly Hash[],
): boolean {
  if (!Number.isSafeInteger(oldSize) || !Number.isSafeInteger(newSize)) return false;
  if (oldSize < 0 || oldSize > newSize) return false;
  if (oldSize === 0) return proof.length === 0 && sameHash(oldRoot, EMPTY_ROOT);
  if (oldSize === newSize) return proof.length === 0 && sameHash(oldRoot, newRoot);
  if (proof.length === 0) return false;
  const path = isPowerOfTwo(oldSize) ? [oldRoot, ...proof] : [...proof];
  let fn = oldSize - 1;
  let sn = newSize - 1;
  while (isOdd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  let fr = path[0] as Hash;
  let sr = fr;
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (isOdd(fn) || fn === sn) {
      fr = hashChildren(c, fr);
      sr = hashChildren(c, sr);
      if (!isOdd(fn)) {
        while (!isOdd(fn) && fn !== 0) {
          fn = half(fn);
          sn = half(sn);
        }
      }
    } else {
      sr = hashChildren(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sameHash(fr, oldRoot) && sameHash(sr, newRoot) && sn === 0;
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

/**
 * The right edge of an append-only tree: the perfect subtrees covering [0, size). Appending a leaf
 * merges equal-sized neighbours; each merge is a newly complete subtree worth storing. The root of the
 * current tree is the right fold of the frontier.
 */
export class MerkleFrontier {
  #nodes: SubtreeHash[];
  #size: number;

  private constructor(size: number, nodes: SubtreeHash[]) {
    this.#size = size;
    this.#nodes = nodes;
  }

  static empty(): MerkleFrontier {
    return new MerkleFrontier(0, []);
  }

  /** Rebuilds the frontier of a tree of `size` from its perfect subtrees (see `perfectSubtrees(0, size)`). */
  static of(size: number, nodes: readonly SubtreeHash[]): MerkleFrontier {
    const expected = perfectSubtrees(0, size);
    if (
      expected.length !== nodes.length ||
      expected.some((s, i) => s.level !== nodes[i]?.level || s.index !== nodes[i]?.index)
    ) {
      throw new RangeError(`the subtrees given are not the frontier of a tree of size ${size}`);
    }
    return new MerkleFrontier(size, [...nodes]);
  }

  get size(): number {
    return this.#size;
  }

  nodes(): readonly SubtreeHash[] {
    return this.#nodes;
  }

  root(): Hash {
    return foldSubtrees(this.#nodes.map((n) => n.hash));
  }

  clone(): MerkleFrontier {
    return new MerkleFrontier(this.#size, [...this.#nodes]);
  }

  /** Adds a leaf hash; returns the subtrees of level >= 1 that it completed, lowest first. */
  append(leaf: Hash): SubtreeHash[] {
    const completed: SubtreeHash[] = [];
    this.#nodes.push({ level: 0, index: this.#size, hash: leaf });
    this.#size++;
    for (;;) {
      const right = this.#nodes[this.#nodes.length - 1];
      const left = this.#nodes[this.#nodes.length - 2];
      if (!right || !left || left.level !== right.level) break;
      const parent = {
        level: left.level + 1,
        index: left.index / 2,
        hash: hashChildren(left.hash, right.hash),
      };
      this.#nodes.splice(this.#nodes.length - 2, 2, parent);
      completed.push(parent);
    }
    return completed;
  }
}

/**
 * A whole tree held in memory (tests, small logs, and the reference against which stored proofs are
 * checked): subtree hashes are memoised so every proof costs O(log n) after the first root.
 */
export class MemoryMerkleTree {
  readonly #leaves: readonly Hash[];
  readonly #memo = new Map<string, Hash>();

  constructor(leafHashes: readonly Hash[]) {
    this.#leaves = leafHashes;
  }

  static fromData(leaves: readonly Uint8Array[]): MemoryMerkleTree {
    return new MemoryMerkleTree(leaves.map(hashLeaf));
  }

  get size(): number {
    return this.#leaves.length;
  }

  leaf(index: number): Hash {
    const leaf = this.#leaves[index];
    if (!leaf) throw new RangeError(`no leaf ${index}`);
    return leaf;
  }

  /** MTH(D[start:end]) computed straight from the RFC definition. */
  readonly hashRange: RangeHasher = (start, end) => {
    if (start < 0 || end > this.#leaves.length || start >= end) {
      if (start === end) return EMPTY_ROOT;
      throw new RangeError(`no range [${start}, ${end}) in a tree of size ${this.#leaves.length}`);
    }
    if (end - start === 1) return this.leaf(start);
    const key = `${start}-${end}`;
    const known = this.#memo.get(key);
    if (known) return known;
    const k = splitPoint(end - start);
    const hash = hashChildren(this.hashRange(start, start + k), this.hashRange(start + k, end));
    this.#memo.set(key, hash);
    return hash;
  };

  root(size = this.#leaves.length): Hash {
    return size === 0 ? EMPTY_ROOT : this.hashRange(0, size);
  }
}
