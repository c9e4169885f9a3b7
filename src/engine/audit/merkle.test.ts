import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Hash, sha256, toHex } from './hash.ts';
import {
  consistencyProof,
  EMPTY_ROOT,
  hashLeaf,
  inclusionProof,
  MemoryMerkleTree,
  MerkleFrontier,
  perfectSubtrees,
  subtreeRange,
  verifyConsistency,
  verifyInclusion,
} from './merkle.ts';

const hex = (h: string): Hash => new Uint8Array(Buffer.from(h, 'hex'));

// The Certificate Transparency reference leaves and MTH values for sizes 1..8 (RFC 6962 test vectors,
// as published with google/certificate-transparency and google/trillian).
const CT_LEAVES = [
  '',
  '00',
  '10',
  '2021',
  '3031',
  '40414243',
  '5051525354555657',
  '606162636465666768696a6b6c6d6e6f',
].map(hex);
const CT_ROOTS = [
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
];

const ct = MemoryMerkleTree.fromData(CT_LEAVES);

// Independent of merkle.ts: the RFC definitions written out by hand.
const L = (data: string): Hash => sha256(new Uint8Array([0]), Buffer.from(data));
const N = (left: Hash, right: Hash): Hash => sha256(new Uint8Array([1]), left, right);

describe('RFC 9162 Merkle Tree Hash', () => {
  it('hashes the empty tree to SHA-256 of the empty string', () => {
    expect(toHex(EMPTY_ROOT)).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(toHex(new MemoryMerkleTree([]).root())).toBe(toHex(EMPTY_ROOT));
  });

  it('matches the Certificate Transparency reference roots for sizes 1 to 8', () => {
    expect(CT_ROOTS.map((_, i) => toHex(ct.root(i + 1)))).toEqual(CT_ROOTS);
  });

  it('matches hand-computed trees of 1, 2, 3, 5 and 7 leaves (unbalanced right edges)', () => {
    const [a, b, c, d, e, f, g] = ['a', 'b', 'c', 'd', 'e', 'f', 'g'].map(L) as [
      Hash,
      Hash,
      Hash,
      Hash,
      Hash,
      Hash,
      Hash,
    ];
    const tree = MemoryMerkleTree.fromData(['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((s) => Buffer.from(s)));
    expect(toHex(tree.root(1))).toBe(toHex(a));
    expect(toHex(tree.root(2))).toBe(toHex(N(a, b)));
    expect(toHex(tree.root(3))).toBe(toHex(N(N(a, b), c)));
    expect(toHex(tree.root(5))).toBe(toHex(N(N(N(a, b), N(c, d)), e)));
    expect(toHex(tree.root(7))).toBe(toHex(N(N(N(a, b), N(c, d)), N(N(e, f), g))));
  });

  it('produces the reference inclusion proofs', () => {
    const proof = (index: number, size: number): string[] =>
      inclusionProof(index, size, ct.hashRange).map(toHex);
    expect(proof(0, 8)).toEqual([
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ]);
    expect(proof(5, 8)).toEqual([
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ]);
    expect(proof(2, 3)).toEqual(['fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125']);
    expect(proof(1, 5)).toEqual([
      '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    ]);
    expect(proof(0, 1)).toEqual([]);
  });

  it('produces the reference consistency proofs', () => {
    const proof = (m: number, n: number): string[] => consistencyProof(m, n, ct.hashRange).map(toHex);
    expect(proof(1, 8)).toEqual([
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ]);
    expect(proof(6, 8)).toEqual([
      '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ]);
    expect(proof(2, 5)).toEqual([
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    ]);
    expect(proof(3, 8)).toEqual([
      '0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7',
      '07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7',
      'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ]);
    expect(proof(4, 4)).toEqual([]);
  });

  it('rejects the reference inclusion proof when the index, size, leaf, root or path is wrong', () => {
    const leaf = ct.leaf(5);
    const root = ct.root(8);
    const path = inclusionProof(5, 8, ct.hashRange);
    expect(verifyInclusion(leaf, 5, 8, path, root)).toBe(true);
    expect(verifyInclusion(leaf, 4, 8, path, root)).toBe(false);
    expect(verifyInclusion(leaf, 6, 8, path, root)).toBe(false);
    expect(verifyInclusion(leaf, 5, 16, path, root)).toBe(false);
    expect(verifyInclusion(leaf, 5, 4, path, root)).toBe(false);
    expect(verifyInclusion(leaf, 8, 8, path, root)).toBe(false);
    expect(verifyInclusion(hashLeaf(Buffer.from('WrongLeaf')), 5, 8, path, root)).toBe(false);
    expect(verifyInclusion(leaf, 5, 8, path, EMPTY_ROOT)).toBe(false);
    expect(verifyInclusion(leaf, 5, 8, [...path, root], root)).toBe(false);
    expect(verifyInclusion(leaf, 5, 8, path.slice(0, -1), root)).toBe(false);
    expect(verifyInclusion(leaf, 5, 8, [new Uint8Array(0), ...path], root)).toBe(false);
    for (let i = 0; i < path.length; i++) {
      const broken = path.map((p, j) => (j === i ? EMPTY_ROOT : p));
      expect(verifyInclusion(leaf, 5, 8, broken, root)).toBe(false);
    }
  });

  it('handles the trivial consistency cases the way RFC 9162 implementations do', () => {
    const r1 = ct.root(1);
    expect(verifyConsistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])).toBe(true);
    expect(verifyConsistency(0, 5, EMPTY_ROOT, ct.root(5), [])).toBe(true);
    expect(verifyConsistency(1, 1, r1, r1, [])).toBe(true);
    expect(verifyConsistency(1, 1, r1, EMPTY_ROOT, [])).toBe(false);
    expect(verifyConsistency(1, 1, r1, r1, [r1])).toBe(false);
    expect(verifyConsistency(2, 1, r1, r1, [])).toBe(false);
    expect(verifyConsistency(1, 2, r1, ct.root(2), [])).toBe(false);
  });

  it('rejects a consistency proof with swapped roots, wrong sizes or a changed element', () => {
    const proof = consistencyProof(3, 8, ct.hashRange);
    const [r3, r8] = [ct.root(3), ct.root(8)];
    expect(verifyConsistency(3, 8, r3, r8, proof)).toBe(true);
    expect(verifyConsistency(3, 8, r8, r3, proof)).toBe(false);
    expect(verifyConsistency(2, 8, r3, r8, proof)).toBe(false);
    expect(verifyConsistency(4, 8, r3, r8, proof)).toBe(false);
    expect(verifyConsistency(3, 16, r3, r8, proof)).toBe(false);
    expect(verifyConsistency(3, 4, r3, r8, proof)).toBe(false);
    expect(verifyConsistency(3, 8, r3, r8, proof.slice(1))).toBe(false);
    expect(verifyConsistency(3, 8, r3, r8, [...proof, r8])).toBe(false);
    for (let i = 0; i < proof.length; i++) {
      expect(
        verifyConsistency(
          3,
          8,
          r3,
          r8,
          proof.map((p, j) => (j === i ? EMPTY_ROOT : p)),
        ),
      ).toBe(false);
    }
  });
});

const leavesArb = fc.array(fc.uint8Array({ maxLength: 12 }), { minLength: 1, maxLength: 70 });

describe('Merkle properties', () => {
  it('every inclusion proof verifies, for every leaf and every tree size', () => {
    fc.assert(
      fc.property(leavesArb, (leaves) => {
        const tree = MemoryMerkleTree.fromData(leaves);
        for (let size = 1; size <= tree.size; size++) {
          const root = tree.root(size);
          for (let index = 0; index < size; index++) {
            const path = inclusionProof(index, size, tree.hashRange);
            if (!verifyInclusion(tree.leaf(index), index, size, path, root)) return false;
          }
        }
        return true;
      }),
      { numRuns: 40 },
    );
  });

  it('a proof for a modified leaf fails', () => {
    fc.assert(
      fc.property(
        leavesArb.chain((leaves) =>
          fc.tuple(
            fc.constant(leaves),
            fc.nat(leaves.length - 1),
            fc.uint8Array({ minLength: 1, maxLength: 12 }),
          ),
        ),
        ([leaves, index, extra]) => {
          const tree = MemoryMerkleTree.fromData(leaves);
          const path = inclusionProof(index, tree.size, tree.hashRange);
          const original = leaves[index] as Uint8Array;
          const modified = Buffer.concat([original, extra]);
          return !verifyInclusion(hashLeaf(modified), index, tree.size, path, tree.root());
        },
      ),
    );
  });

  it('a proof never verifies for another position or against another size', () => {
    fc.assert(
      fc.property(
        leavesArb.filter((l) => l.length >= 2),
        fc.nat(),
        fc.nat(),
        (leaves, a, b) => {
          // Distinct leaves, so a proof that verified elsewhere would be a real forgery.
          const distinct = leaves.map((l, i) => Buffer.concat([Buffer.from([i]), l]));
          const tree = MemoryMerkleTree.fromData(distinct);
          const index = a % tree.size;
          const other = (index + 1 + (b % (tree.size - 1))) % tree.size;
          const path = inclusionProof(index, tree.size, tree.hashRange);
          return (
            !verifyInclusion(tree.leaf(index), other, tree.size, path, tree.root()) &&
            !verifyInclusion(tree.leaf(other), index, tree.size, path, tree.root()) &&
            (index >= tree.size - 1 ||
              !verifyInclusion(tree.leaf(index), index, tree.size - 1, path, tree.root(tree.size - 1)))
          );
        },
      ),
    );
  });

  it('every consistency proof between two sizes verifies; a changed old leaf breaks it', () => {
    fc.assert(
      fc.property(leavesArb, fc.nat(), (leaves, pick) => {
        const tree = MemoryMerkleTree.fromData(leaves);
        for (let n = 1; n <= tree.size; n++) {
          for (let m = 0; m <= n; m++) {
            const proof = consistencyProof(m, n, tree.hashRange);
            if (!verifyConsistency(m, n, tree.root(m), tree.root(n), proof)) return false;
          }
        }
        // Rewriting history: change leaf `i` of the old tree; the old root no longer fits.
        const m = 1 + (pick % tree.size);
        const i = pick % m;
        const forged = leaves.map((l, j) => (j === i ? Buffer.concat([l, Buffer.from([1])]) : l));
        const forgedTree = MemoryMerkleTree.fromData(forged);
        const proof = consistencyProof(m, tree.size, tree.hashRange);
        return m === tree.size || !verifyConsistency(m, tree.size, forgedTree.root(m), tree.root(), proof);
      }),
      { numRuns: 40 },
    );
  });

  it('the frontier gives the same roots as the full tree and names every completed subtree once', () => {
    fc.assert(
      fc.property(leavesArb, (leaves) => {
        const tree = MemoryMerkleTree.fromData(leaves);
        const frontier = MerkleFrontier.empty();
        const completed = new Map<string, string>();
        for (let i = 0; i < tree.size; i++) {
          for (const node of frontier.append(tree.leaf(i))) {
            const key = `${node.level}:${node.index}`;
            if (completed.has(key)) return false;
            const range = subtreeRange(node);
            if (toHex(node.hash) !== toHex(tree.hashRange(range.start, range.end))) return false;
            completed.set(key, toHex(node.hash));
          }
          if (toHex(frontier.root()) !== toHex(tree.root(i + 1))) return false;
          const again = MerkleFrontier.of(i + 1, frontier.nodes());
          if (toHex(again.root()) !== toHex(frontier.root())) return false;
        }
        return true;
      }),
    );
  });

  it('perfect subtrees partition a range into aligned powers of two', () => {
    fc.assert(
      fc.property(fc.nat(5000), (n) => {
        const parts = perfectSubtrees(0, n);
        let at = 0;
        for (const p of parts) {
          const r = subtreeRange(p);
          if (r.start !== at || r.start % 2 ** p.level !== 0) return false;
          at = r.end;
        }
        return at === n && parts.length === n.toString(2).replace(/0/g, '').length;
      }),
    );
  });

  it('refuses a frontier that does not fit the size', () => {
    expect(() => MerkleFrontier.of(3, [{ level: 1, index: 0, hash: EMPTY_ROOT }])).toThrow(RangeError);
  });
});
