import { DatabaseSync } from 'node:sqlite';
import type { JSONWebKeySet } from 'jose';
import { isSluiceError, SluiceError } from '../../core/errors/index.ts';
import { buildBatch, type LogHead, loadHead } from './append.ts';
import { type Checkpoint, type CheckpointSigner, checkpointVerifier } from './checkpoint.ts';
import {
  type AuditEventInput,
  type AuditKind,
  decodeEntry,
  leafHashOf,
  type StoredAuditEntry,
} from './entry.ts';
import { auditEventsNdjson, type FhirExportOptions } from './fhir-export.ts';
import { sameHash, toHex } from './hash.ts';
import {
  type ConsistencyProof,
  type InclusionProof,
  proveConsistency,
  proveInclusion,
  rootAt,
} from './proofs.ts';
import { type AuditPage, type AuditQuery, iterateAudit, queryAudit } from './query.ts';
import { type PruneResult, pruneAudit, type RetentionPolicy } from './retention.ts';
import { SqliteAuditStore } from './sqlite-audit-store.ts';
import type { AuditStore } from './store.ts';
import { type AuditVerifyReport, type VerifyAuditOptions, verifyAudit } from './verify.ts';

export {
  CHECKPOINT_TYP,
  type Checkpoint,
  type CheckpointBody,
  type CheckpointSigner,
  checkpointVerifier,
  createCheckpointSigner,
  generateCheckpointKey,
  parseJwks,
} from './checkpoint.ts';
export {
  AUDIT_KINDS,
  AUDIT_OUTCOMES,
  type AuditDetails,
  type AuditEntry,
  type AuditEventInput,
  type AuditKind,
  type AuditOutcome,
  type AuditPurpose,
  PSEUDONYM_PATTERN,
  type StoredAuditEntry,
} from './entry.ts';
export { auditEventsNdjson, type FhirExportOptions, toAuditEvent } from './fhir-export.ts';
export { verifyConsistency, verifyInclusion } from './merkle.ts';
export { PostgresAuditStore, type PostgresAuditStoreOptions } from './pg-audit-store.ts';
export type { ConsistencyProof, InclusionProof } from './proofs.ts';
export type { AuditPage, AuditQuery } from './query.ts';
export type { PruneResult, RetentionPolicy } from './retention.ts';
export { SqliteAuditStore } from './sqlite-audit-store.ts';
export type { AuditStore } from './store.ts';
export type { AuditBreak, AuditBreakKind, AuditVerifyReport, VerifyAuditOptions } from './verify.ts';
export { verifyAudit } from './verify.ts';

/** Kinds that seal the log at once (a signed checkpoint right after the batch that holds them). */
export const SEALING_KINDS: readonly AuditKind[] = ['run-end', 'kill-switch', 'policy-change'];

export const DEFAULT_CHECKPOINT_EVERY = 1000;

export interface OpenAuditLogOptions {
  /** A SQLite file path (or `:memory:`), an open `DatabaseSync` (stays yours to close), or any AuditStore. */
  readonly store: string | DatabaseSync | AuditStore;
  /** With an AuditStore: the log closes it when it is closed (or fails to open). */
  readonly ownsStore?: boolean;
  /** Signs checkpoints; without it the log is read-only (query, verify, proofs, export). */
  readonly signer?: CheckpointSigner;
  /** Verification keys (all kids ever used); default: the signer's public key. */
  readonly jwks?: JSONWebKeySet;
  /** Sign a checkpoint once this many entries are unsealed (default 1000; 0: only on sealing kinds). */
  readonly checkpointEvery?: number;
  /** The log id when the store is created (default: random). */
  readonly logId?: string;
  /** With a file path: WAL checkpoints on a worker thread instead of inside appends. */
  readonly backgroundCheckpoints?: boolean;
  /** With a file path: appends run on a thread of their own (see `store/writer-thread.ts`). */
  readonly appendThread?: boolean;
  readonly clock?: () => Date;
  readonly fhir?: FhirExportOptions;
}

/** An inclusion proof with the signed checkpoint whose root it proves against. */
export interface SignedInclusionProof extends InclusionProof {
  readonly checkpoint?: Checkpoint;
}

/**
 * The audit trail of Sluice: append entries, seal them with signed checkpoints, prove and verify,
 * search, export as FHIR, prune by retention policy. Writes go through one queue per instance; run one
 * writing instance per SQLite database (a second writer is detected and its batch retried once). On a
 * store with a write lock (PostgreSQL), several instances may append to one trail: the one that lost a
 * race rebuilds its batch under the lock.
 */
export class AuditLog {
  readonly #store: AuditStore;
  readonly #ownsStore: boolean;
  readonly #signer: CheckpointSigner | undefined;
  readonly #jwks: JSONWebKeySet | undefined;
  readonly #every: number;
  readonly #clock: () => Date;
  readonly #fhir: FhirExportOptions;
  readonly #logId: string;
  #head: LogHead;
  #sealedSize: number;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(
    init: { store: AuditStore; ownsStore: boolean; logId: string; head: LogHead; sealedSize: number },
    options: OpenAuditLogOptions,
  ) {
    this.#store = init.store;
    this.#ownsStore = init.ownsStore;
    this.#logId = init.logId;
    this.#head = init.head;
    this.#sealedSize = init.sealedSize;
    this.#signer = options.signer;
    this.#jwks = options.jwks ?? (options.signer ? { keys: [options.signer.publicJwk] } : undefined);
    this.#every = options.checkpointEvery ?? DEFAULT_CHECKPOINT_EVERY;
    this.#clock = options.clock ?? (() => new Date());
    this.#fhir = options.fhir ?? {};
  }

  /**
   * Opens (creating if needed) the log. When verification keys are known, the latest checkpoint is
   * checked against the stored tree (a cheap check; `verify()` walks everything).
   */
  static async open(options: OpenAuditLogOptions): Promise<AuditLog> {
    const own =
      typeof options.store === 'string' ||
      options.store instanceof DatabaseSync ||
      options.ownsStore === true;
    const store =
      typeof options.store === 'string' || options.store instanceof DatabaseSync
        ? SqliteAuditStore.open(options.store, {
            ...(options.logId === undefined ? {} : { logId: options.logId }),
            ...(options.backgroundCheckpoints ? { backgroundCheckpoints: true } : {}),
            ...(options.appendThread ? { appendThread: true } : {}),
          })
        : options.store;
    try {
      const every = options.checkpointEvery ?? DEFAULT_CHECKPOINT_EVERY;
      if (!Number.isSafeInteger(every) || every < 0) {
        throw new SluiceError('INTERNAL', 'checkpointEvery must be a non-negative integer.');
      }
      const logId = await store.logId();
      const head = await loadHead(store);
      const log = new AuditLog({ store, ownsStore: own, logId, head, sealedSize: 0 }, options);
      const latest = await log.latestCheckpoint();
      if (latest) await log.#checkHead(latest);
      log.#sealedSize = latest?.treeSize ?? (await store.retentionBase())?.cut ?? 0;
      return log;
    } catch (err) {
      if (own) await store.close();
      throw err;
    }
  }

  get logId(): string {
    return this.#logId;
  }

  /** Entries in the log as this writer knows it (one past the last seq). */
  get size(): number {
    return this.#head.size;
  }

  /**
   * Appends entries in one transaction and returns them with seq and hashes. Seals when the batch
   * holds a sealing kind or `checkpointEvery` entries are unsealed.
   */
  append(entries: readonly AuditEventInput[]): Promise<StoredAuditEntry[]> {
    return this.#exclusive(async () => {
      if (entries.length === 0) return [];
      this.#requireSigner('append');
      const now = this.#clock();
      let built = buildBatch(this.#head, entries, now);
      try {
        await this.#store.append(built.batch);
      } catch (err) {
        // The store rolled the batch back and the head here was not advanced: only a second writer
        // makes it stale. Rebuild on the new head once, holding the log's write lock where the store
        // has one (several processes on one trail), so the rebuilt batch cannot be stale; without
        // it, a second clash is reported.
        if (!isSluiceError(err) || err.code !== 'AUDIT_CONCURRENT_APPEND') throw err;
        const rebuild = async (store: AuditStore): Promise<void> => {
          this.#head = await loadHead(store);
          built = buildBatch(this.#head, entries, now);
          await store.append(built.batch);
        };
        if (this.#store.exclusive) await this.#store.exclusive(rebuild);
        else await rebuild(this.#store);
      }
      this.#head = built.next;
      const seal =
        entries.some((e) => SEALING_KINDS.includes(e.kind)) ||
        (this.#every > 0 && this.#head.size - this.#sealedSize >= this.#every);
      if (seal) await this.#checkpoint();
      return built.entries;
    });
  }

  /** Signs a checkpoint over everything appended so far (or returns the one that already covers it). */
  checkpoint(): Promise<Checkpoint | undefined> {
    return this.#exclusive(() => this.#checkpoint());
  }

  /** The latest stored checkpoint, signature-checked. */
  async latestCheckpoint(): Promise<Checkpoint | undefined> {
    const stored = await this.#store.latestCheckpoint();
    if (!stored || !this.#jwks) return undefined;
    return this.#verified(stored.jws, stored.treeSize);
  }

  verify(options: VerifyAuditOptions = {}): Promise<AuditVerifyReport> {
    return verifyAudit(this.#store, this.#requireJwks(), options);
  }

  /**
   * Proves that entry `seq` is in the tree of `treeSize` (default: the latest checkpoint, sealing first
   * if the entry is not covered yet). The proof is checked before it is returned.
   */
  async inclusionProof(seq: number, treeSize?: number): Promise<SignedInclusionProof> {
    let checkpoint: Checkpoint | undefined;
    let size = treeSize;
    if (size === undefined) {
      checkpoint = await this.latestCheckpoint();
      if ((!checkpoint || checkpoint.treeSize <= seq) && this.#signer) checkpoint = await this.checkpoint();
      if (!checkpoint || checkpoint.treeSize <= seq) {
        throw new SluiceError(
          'AUDIT_PROOF_UNAVAILABLE',
          `Entry ${seq} is not covered by a signed checkpoint.`,
        );
      }
      size = checkpoint.treeSize;
    } else {
      checkpoint = await this.#checkpointAt(size);
    }
    const proof = await proveInclusion(this.#store, seq, size);
    const row = await this.#store.entry(seq);
    const decoded = decodeEntry(row?.canonical);
    const leafOk =
      row !== undefined && decoded.ok && sameHash(leafHashOf(row.canonical as string), row.leafHash);
    if (!leafOk || (checkpoint && checkpoint.rootHash !== proof.rootHash)) {
      throw new SluiceError(
        'AUDIT_INTEGRITY',
        `Entry ${seq} or the tree above it does not match the signed checkpoint.`,
        {
          details: { seq, treeSize: size },
        },
      );
    }
    return checkpoint ? { ...proof, checkpoint } : proof;
  }

  /** Proves that the tree of `fromSize` is a prefix of the tree of `toSize` (default: latest checkpoint). */
  async consistencyProof(fromSize: number, toSize?: number): Promise<ConsistencyProof> {
    const to = toSize ?? (await this.latestCheckpoint())?.treeSize ?? this.#head.size;
    const proof = await proveConsistency(this.#store, fromSize, to);
    for (const [size, root] of [
      [fromSize, proof.fromRoot],
      [to, proof.toRoot],
    ] as const) {
      const checkpoint = size > 0 ? await this.#checkpointAt(size) : undefined;
      if (checkpoint && checkpoint.rootHash !== root) {
        throw new SluiceError(
          'AUDIT_INTEGRITY',
          `The stored tree at size ${size} does not match its checkpoint.`,
        );
      }
    }
    return proof;
  }

  query(query: AuditQuery): Promise<AuditPage> {
    return queryAudit(this.#store, query);
  }

  /** Every entry a query matches, oldest first, page by page (memory stays at one page). */
  entries(query: Omit<AuditQuery, 'limit' | 'after'> = {}): AsyncGenerator<StoredAuditEntry> {
    return iterateAudit(this.#store, { ...query, limit: 1000 });
  }

  /** FHIR R4 AuditEvents as NDJSON lines (each ends in `\n`), streamed page by page. */
  async *exportFhir(
    query: Omit<AuditQuery, 'limit'> = {},
    options: FhirExportOptions = {},
  ): AsyncGenerator<string> {
    yield* auditEventsNdjson(iterateAudit(this.#store, { ...query, limit: 500 }), {
      ...this.#fhir,
      ...options,
    });
  }

  /** Prunes entries older than `policy.before` (see retention.ts), then seals the prune record. */
  prune(policy: RetentionPolicy): Promise<PruneResult> {
    return this.#exclusive(async () => {
      this.#requireSigner('prune');
      const result = await pruneAudit(this.#store, this.#requireJwks(), policy, this.#clock());
      this.#head = await loadHead(this.#store);
      if (result.entriesPruned > 0) await this.#checkpoint();
      return result;
    });
  }

  /** Waits for queued writes, then closes the store if this log opened it. */
  async close(): Promise<void> {
    await this.#queue.catch(() => undefined);
    if (this.#ownsStore) await this.#store.close();
  }

  async #checkpoint(): Promise<Checkpoint | undefined> {
    const signer = this.#requireSigner('checkpoint');
    if ((await this.#store.size()) !== this.#head.size) this.#head = await loadHead(this.#store);
    const head = this.#head;
    if (head.size === 0) return undefined;
    const latest = await this.#store.latestCheckpoint();
    if (latest && latest.treeSize === head.size) return this.#verified(latest.jws, latest.treeSize);
    const checkpoint = await signer.sign({
      log: this.#logId,
      treeSize: head.size,
      rootHash: toHex(head.frontier.root()),
      chainHead: toHex(head.chainHead),
      at: this.#clock().toISOString(),
    });
    await this.#store.putCheckpoint({ treeSize: checkpoint.treeSize, jws: checkpoint.jws });
    this.#sealedSize = checkpoint.treeSize;
    return checkpoint;
  }

  async #checkpointAt(size: number): Promise<Checkpoint | undefined> {
    const stored = await this.#store.checkpointCovering(size);
    if (!stored || stored.treeSize !== size || !this.#jwks) return undefined;
    return this.#verified(stored.jws, size);
  }

  async #verified(jws: string, treeSize: number): Promise<Checkpoint> {
    const checked = await checkpointVerifier(this.#requireJwks())(jws);
    const problem = !checked.ok
      ? checked.message
      : checked.checkpoint.treeSize !== treeSize
        ? 'it was signed for another size'
        : checked.checkpoint.log !== this.#logId
          ? 'it was signed for another log'
          : undefined;
    if (problem !== undefined || !checked.ok) {
      // A retired key missing from the JWKS shows here too: keep every kid that signed kept checkpoints.
      throw new SluiceError(
        'AUDIT_INTEGRITY',
        `The stored checkpoint at size ${treeSize} does not verify: ${problem}.`,
        {
          details: { treeSize },
        },
      );
    }
    return checked.checkpoint;
  }

  /** The stored tree and chain at the latest checkpoint must be what it signed. */
  async #checkHead(latest: Checkpoint): Promise<void> {
    const root = await rootAt(this.#store, latest.treeSize).catch(() => undefined);
    const last = await this.#store.entry(latest.treeSize - 1);
    const base = await this.#store.retentionBase();
    const chain = last?.chainHash ?? (base?.cut === latest.treeSize ? base.chainHead : undefined);
    if (!root || toHex(root) !== latest.rootHash || !chain || toHex(chain) !== latest.chainHead) {
      throw new SluiceError(
        'AUDIT_INTEGRITY',
        `The audit log does not match its latest checkpoint (size ${latest.treeSize}).`,
        { details: { treeSize: latest.treeSize } },
      );
    }
  }

  #requireSigner(what: string): CheckpointSigner {
    if (!this.#signer) {
      throw new SluiceError(
        'AUDIT_SIGNER_MISSING',
        `The audit log cannot ${what} without a checkpoint signing key.`,
      );
    }
    return this.#signer;
  }

  #requireJwks(): JSONWebKeySet {
    if (!this.#jwks) {
      throw new SluiceError('CFG_KEY_INVALID', 'The audit log was opened without verification keys (JWKS).');
    }
    return this.#jwks;
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }
}
