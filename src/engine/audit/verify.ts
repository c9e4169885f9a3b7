import type { JSONWebKeySet } from 'jose';
import { type Checkpoint, type CheckpointCheck, checkpointVerifier } from './checkpoint.ts';
import { decodeEntry, leafHashOf } from './entry.ts';
import { chainHash, type Hash, sameHash, toHex, ZERO_HASH } from './hash.ts';
import { MerkleFrontier, perfectSubtrees, subtreeKey } from './merkle.ts';
import type { AuditStore, RetentionBase, StoredEntryRow } from './store.ts';

/**
 * Walks the whole log (from the retention base, if pruned) and every signed checkpoint, and reports
 * the first place where it breaks. Each entry must decode to canonical text matching its leaf hash,
 * claim its own position, and extend the chain; at every checkpoint size the recomputed Merkle root
 * and chain head must equal what was signed. Without the signing key nobody can rewrite history
 * consistently: a rewrite with recomputed hashes still fails at the next checkpoint. Entries after the
 * latest checkpoint are only chained, not signed: the report counts them as `unsealed`.
 */

export type AuditBreakKind =
  | 'content-changed'
  | 'entry-missing'
  | 'entry-inserted'
  | 'reordered'
  | 'chain-broken'
  | 'checkpoint-signature'
  | 'checkpoint-root-mismatch';

export interface AuditBreak {
  /**
   * The position of the break. For checkpoint breaks: the first entry the failing checkpoint covers
   * that no earlier verified checkpoint does (the altered entry is in [seq, treeSize)).
   */
  readonly seq: number;
  readonly kind: AuditBreakKind;
  readonly message: string;
  /** For checkpoint breaks: the tree size the checkpoint claims. */
  readonly treeSize?: number;
}

export interface AuditVerifyReport {
  readonly ok: boolean;
  readonly logId: string;
  /** The retention cut the walk started from (0 if never pruned). */
  readonly base: number;
  /** The log size seen (one past the last entry). */
  readonly size: number;
  /** Entries that passed every check before the first break. */
  readonly entries: number;
  /** Checkpoints (stored, the retention base's, and anchors) whose signature and hashes matched. */
  readonly checkpoints: number;
  /** The largest tree size vouched for by a verified checkpoint. */
  readonly sealedSize: number;
  /** Entries above `sealedSize`: chained but not yet covered by a signature. */
  readonly unsealed: number;
  /** Anchors older than the retention cut, which can no longer be checked. */
  readonly anchorsSkipped: number;
  readonly firstBreak?: AuditBreak;
}

export interface VerifyAuditOptions {
  /**
   * Checkpoints kept outside the database (e.g. published, or saved by an auditor). Stored checkpoints
   * can be deleted along with the entries they cover; an anchor cannot.
   */
  readonly anchors?: readonly string[];
  /** Stop after this size (used before pruning): later entries and checks are not looked at. */
  readonly untilSize?: number;
  /** Rows read per store round-trip. */
  readonly pageSize?: number;
}

interface PendingCheck {
  readonly source: 'stored' | 'anchor';
  /** The size the row is stored under (stored checkpoints) or the signed size (anchors). */
  readonly treeSize: number;
  readonly jws: string;
  /** Anchors are verified up front. */
  readonly verified?: Checkpoint;
}

class Break extends Error {
  readonly found: AuditBreak;
  constructor(found: AuditBreak) {
    super(found.message);
    this.found = found;
  }
}

export async function verifyAudit(
  store: AuditStore,
  jwks: JSONWebKeySet,
  options: VerifyAuditOptions = {},
): Promise<AuditVerifyReport> {
  const verify = checkpointVerifier(jwks);
  const logId = await store.logId();
  const storedSize = await store.size();
  const baseRow = await store.retentionBase();
  const base = baseRow?.cut ?? 0;
  const until = options.untilSize ?? Number.POSITIVE_INFINITY;
  const pageSize = options.pageSize ?? 1000;

  let pos = base;
  let chain: Hash = ZERO_HASH;
  let frontier = MerkleFrontier.empty();
  let entries = 0;
  let checkpoints = 0;
  let sealed = 0;
  let anchorsSkipped = 0;
  let prunedRecorded = false;

  const report = (firstBreak?: AuditBreak): AuditVerifyReport => {
    const size = firstBreak ? storedSize : Math.max(pos, storedSize);
    return {
      ok: firstBreak === undefined,
      logId,
      base,
      size,
      entries,
      checkpoints,
      sealedSize: sealed,
      unsealed: Math.max(0, size - sealed),
      anchorsSkipped,
      ...(firstBreak ? { firstBreak } : {}),
    };
  };

  try {
    if (baseRow) {
      ({ chain, frontier } = await checkBase(store, baseRow, logId, verify));
      checkpoints++;
      sealed = base;
    }

    const pending = new Map<number, PendingCheck[]>();
    const expect = (check: PendingCheck): void => {
      const list = pending.get(check.treeSize) ?? [];
      list.push(check);
      pending.set(check.treeSize, list);
    };
    for (const stored of await store.checkpoints()) {
      if (stored.treeSize > base) expect({ source: 'stored', treeSize: stored.treeSize, jws: stored.jws });
    }
    for (const [i, jws] of (options.anchors ?? []).entries()) {
      const checked = await verify(jws);
      if (!checked.ok) {
        throw new Break({
          seq: base,
          kind: 'checkpoint-signature',
          message: `Anchor #${i}: ${checked.message}.`,
        });
      }
      const size = checked.checkpoint.treeSize;
      if (size < base) anchorsSkipped++;
      else if (size === base) {
        // The base was already checked against its own checkpoint; the anchor must agree with it.
        checkAgainst(checked.checkpoint, logId, base, frontier.root(), chain, 0, 'anchor');
        checkpoints++;
      } else expect({ source: 'anchor', treeSize: size, jws, verified: checked.checkpoint });
    }

    let lastSealed = base;
    walk: for (;;) {
      const rows = await store.entries(pos, pageSize);
      if (rows.length === 0) break;
      for (const row of rows) {
        if (pos >= until) break walk;
        if (row.seq !== pos) {
          throw new Break({
            seq: pos,
            kind: 'entry-missing',
            message: `Entry ${pos} is missing: the next stored entry is ${row.seq}.`,
          });
        }
        const { leaf, retentionCut } = await checkRow(store, row, chain, pageSize);
        frontier.append(leaf);
        chain = row.chainHash;
        pos++;
        entries++;
        if (retentionCut === base) prunedRecorded = true;
        for (const check of pending.get(pos) ?? []) {
          const checkpoint = check.verified ?? (await verifyStored(verify, check, lastSealed));
          try {
            checkAgainst(checkpoint, logId, pos, frontier.root(), chain, lastSealed, check.source);
          } catch (err) {
            // A forged entry inside the signed range shows as a displaced original just after it.
            throw (await insertionAt(store, pos)) ?? err;
          }
          checkpoints++;
          sealed = pos;
          lastSealed = pos;
        }
        pending.delete(pos);
      }
    }

    if (options.untilSize === undefined) {
      const beyond = [...pending.keys()].filter((size) => size > pos).sort((a, b) => a - b)[0];
      if (beyond !== undefined) {
        throw new Break({
          seq: pos,
          kind: 'entry-missing',
          message: `A checkpoint covers ${beyond} entries but the log ends at ${pos}: entries from ${pos} are missing.`,
        });
      }
      if (baseRow && !prunedRecorded) {
        throw new Break({
          seq: 0,
          kind: 'entry-missing',
          message: `Entries before ${base} are gone but no retention-prune entry records a cut at ${base}.`,
        });
      }
    } else if (pos < options.untilSize) {
      throw new Break({
        seq: pos,
        kind: 'entry-missing',
        message: `The log ends at ${pos}, before the requested size ${options.untilSize}.`,
      });
    }
    return report();
  } catch (err) {
    if (err instanceof Break) return report(err.found);
    throw err;
  }
}

/** Checks one row at its position; throws a Break that classifies what is wrong. */
async function checkRow(
  store: AuditStore,
  row: StoredEntryRow,
  chain: Hash,
  pageSize: number,
): Promise<{ leaf: Hash; retentionCut?: number }> {
  const pos = row.seq;
  const decoded = decodeEntry(row.canonical);
  const leaf = typeof row.canonical === 'string' ? leafHashOf(row.canonical) : undefined;
  if (!decoded.ok || !leaf || !sameHash(leaf, row.leafHash)) {
    if (await isDisplacedOriginal(store, pos, chain)) throw insertedBefore(pos);
    const problem = decoded.ok ? 'its canonical text does not match its stored leaf hash' : decoded.problem;
    throw new Break({ seq: pos, kind: 'content-changed', message: `Entry ${pos} was altered: ${problem}.` });
  }
  const claimed = decoded.entry.seq;
  if (claimed > pos) {
    const elsewhere = await findClaiming(store, pos, pos + 1, pageSize);
    throw new Break(
      elsewhere === undefined
        ? {
            seq: pos,
            kind: 'entry-missing',
            message: `Entry ${pos} is missing: the entry stored there is entry ${claimed}.`,
          }
        : {
            seq: pos,
            kind: 'reordered',
            message: `Entries were reordered: position ${pos} holds entry ${claimed}, and entry ${pos} sits at ${elsewhere}.`,
          },
    );
  }
  if (claimed < pos) throw await insertion(store, row, claimed);
  if (!sameHash(chainHash(chain, leaf), row.chainHash)) {
    if (await isDisplacedOriginal(store, pos, chain)) throw insertedBefore(pos);
    throw new Break({
      seq: pos,
      kind: 'chain-broken',
      message: `The chain hash stored with entry ${pos} does not follow from entry ${pos - 1}.`,
    });
  }
  const cut = decoded.entry.kind === 'retention-prune' ? decoded.entry.details.cut : undefined;
  return typeof cut === 'number' ? { leaf, retentionCut: cut } : { leaf };
}

/** Is the row after `pos` the genuine entry `pos`, chaining straight from the verified prefix? */
async function isDisplacedOriginal(store: AuditStore, pos: number, chain: Hash): Promise<boolean> {
  const next = await store.entry(pos + 1);
  if (!next || typeof next.canonical !== 'string') return false;
  const decoded = decodeEntry(next.canonical);
  if (!decoded.ok || decoded.entry.seq !== pos) return false;
  const leaf = leafHashOf(next.canonical);
  return sameHash(leaf, next.leafHash) && sameHash(chainHash(chain, leaf), next.chainHash);
}

function insertedBefore(pos: number): Break {
  return new Break({
    seq: pos,
    kind: 'entry-inserted',
    message: `An entry was inserted at ${pos}: the original entry ${pos} now sits at ${pos + 1}.`,
  });
}

/** A row claims an earlier position: entries were inserted before it, or it is a copy. */
async function insertion(store: AuditStore, row: StoredEntryRow, claimed: number): Promise<Break> {
  const original = await store.entry(claimed);
  if (original && sameHash(original.leafHash, row.leafHash) && original.canonical === row.canonical) {
    return new Break({
      seq: row.seq,
      kind: 'entry-inserted',
      message: `A copy of entry ${claimed} was inserted at ${row.seq}.`,
    });
  }
  const count = row.seq - claimed;
  return new Break({
    seq: claimed,
    kind: 'entry-inserted',
    message: `${count} entr${count === 1 ? 'y was' : 'ies were'} inserted at ${claimed}: the original entry ${claimed} now sits at ${row.seq}.`,
  });
}

/** After a checkpoint mismatch: does the next row show that an entry was slipped in before it? */
async function insertionAt(store: AuditStore, pos: number): Promise<Break | undefined> {
  const next = await store.entry(pos);
  if (!next || typeof next.canonical !== 'string') return undefined;
  const decoded = decodeEntry(next.canonical);
  if (!decoded.ok || decoded.entry.seq >= pos || !sameHash(leafHashOf(next.canonical), next.leafHash))
    return undefined;
  return insertion(store, next, decoded.entry.seq);
}

/** The position of the row whose canonical text claims `seq`, looking from `from` on. */
async function findClaiming(
  store: AuditStore,
  seq: number,
  from: number,
  pageSize: number,
): Promise<number | undefined> {
  let at = from;
  for (;;) {
    const rows = await store.entries(at, pageSize);
    if (rows.length === 0) return undefined;
    for (const row of rows) {
      const decoded = decodeEntry(row.canonical);
      if (decoded.ok && decoded.entry.seq === seq) return row.seq;
      at = row.seq + 1;
    }
  }
}

async function verifyStored(
  verify: (jws: string) => Promise<CheckpointCheck>,
  check: PendingCheck,
  lastSealed: number,
): Promise<Checkpoint> {
  const checked = await verify(check.jws);
  if (!checked.ok) {
    throw new Break({
      seq: lastSealed,
      kind: 'checkpoint-signature',
      treeSize: check.treeSize,
      message: `The checkpoint at size ${check.treeSize}: ${checked.message}.`,
    });
  }
  if (checked.checkpoint.treeSize !== check.treeSize) {
    throw new Break({
      seq: lastSealed,
      kind: 'checkpoint-signature',
      treeSize: check.treeSize,
      message: `The checkpoint stored at size ${check.treeSize} was signed for size ${checked.checkpoint.treeSize}.`,
    });
  }
  return checked.checkpoint;
}

function checkAgainst(
  checkpoint: Checkpoint,
  logId: string,
  size: number,
  root: Hash,
  chain: Hash,
  lastSealed: number,
  source: 'stored' | 'anchor' | 'base',
): void {
  const what =
    source === 'anchor' ? 'The anchor' : source === 'base' ? 'The retention checkpoint' : 'The checkpoint';
  if (checkpoint.log !== logId) {
    throw new Break({
      seq: lastSealed,
      kind: 'checkpoint-signature',
      treeSize: size,
      message: `${what} at size ${size} was signed for another log.`,
    });
  }
  if (checkpoint.rootHash !== toHex(root) || checkpoint.chainHead !== toHex(chain)) {
    throw new Break({
      seq: lastSealed,
      kind: 'checkpoint-root-mismatch',
      treeSize: size,
      message: `${what} at size ${size} does not match the stored entries: an entry in [${lastSealed}, ${size}) was altered and its hashes recomputed.`,
    });
  }
}

async function checkBase(
  store: AuditStore,
  base: RetentionBase,
  logId: string,
  verify: (jws: string) => Promise<CheckpointCheck>,
): Promise<{ chain: Hash; frontier: MerkleFrontier }> {
  const checked = await verify(base.checkpointJws);
  if (!checked.ok) {
    throw new Break({
      seq: base.cut,
      kind: 'checkpoint-signature',
      treeSize: base.cut,
      message: `The retention checkpoint: ${checked.message}.`,
    });
  }
  const keys = perfectSubtrees(0, base.cut);
  const stored = await store.subtrees(keys);
  const nodes = keys.map((k) => ({ ...k, hash: stored.get(subtreeKey(k)) }));
  if (checked.checkpoint.treeSize !== base.cut || nodes.some((n) => n.hash === undefined)) {
    throw new Break({
      seq: base.cut,
      kind: 'checkpoint-root-mismatch',
      treeSize: base.cut,
      message: `The hashes kept for the pruned prefix [0, ${base.cut}) are incomplete or belong to another size.`,
    });
  }
  const frontier = MerkleFrontier.of(
    base.cut,
    nodes.map((n) => ({ level: n.level, index: n.index, hash: n.hash as Hash })),
  );
  checkAgainst(checked.checkpoint, logId, base.cut, frontier.root(), base.chainHead, base.cut, 'base');
  return { chain: base.chainHead, frontier };
}
