/**
 * The durable state of flows: checkpoints, the delivery ledger, quarantine and run history. One
 * interface, several engines: the embedded default (`node:sqlite`) and, for cluster mode, PostgreSQL.
 * Methods are async so both engines fit; `commitPage` is the one transaction a page of work ends with.
 */
import type { ProvenanceFacts } from '../../core/fhir/provenance.ts';

/** Where a stream stands: every record at or before `position` is delivered, withheld or quarantined. */
export interface Checkpoint {
  readonly flow: string;
  readonly stream: string;
  /** Source change position (ISO instant for FHIR `_lastUpdated`). */
  readonly position: string;
  /** The source's own place beside it (an event bus: the stream sequence read up to), when it has one. */
  readonly cursor?: string;
  /** The hash of the flow definition that produced this checkpoint. */
  readonly definitionHash: string;
  /** Which source and target it was taken against (a hash of their URLs): another EHR starts afresh. */
  readonly environment: string;
  readonly runId: string;
  readonly updatedAt: string;
}

/** What Sluice last wrote to a target record, so unchanged records are not written again. */
export interface LedgerEntry {
  readonly flow: string;
  readonly object: string;
  readonly externalId: string;
  /** SHA-256 of the written payload (object + fields): equal hash means nothing to send. */
  readonly payloadHash: string;
  /** The id the target gave the record. */
  readonly targetId: string;
  /** The source record it came from, as `Type/id`, or the pseudonym for patient data. */
  readonly sourceRef: string;
  readonly mappingVersion: string;
  readonly runId: string;
  readonly deliveredAt: string;
}

export type QuarantineStage = 'parse' | 'validate' | 'policy' | 'map' | 'deliver';
/**
 * `superseded`: a later version of the same source record was processed (delivered, withheld, deleted
 * or quarantined in turn), so this one can no longer be released over it.
 */
export const QUARANTINE_STATUSES = ['open', 'released', 'discarded', 'superseded'] as const;
export type QuarantineStatus = (typeof QUARANTINE_STATUSES)[number];

export interface QuarantineIssue {
  readonly severity: 'error' | 'warning' | 'information';
  readonly code: string;
  readonly path: string;
  readonly message: string;
}

export interface NewQuarantineEntry {
  readonly flow: string;
  readonly runId: string;
  readonly stream: string;
  readonly stage: QuarantineStage;
  /** The catalog code that decided (e.g. REC_INVALID_FHIR). */
  readonly code: string;
  readonly issues: readonly QuarantineIssue[];
  /** Where the record was found (URL path, file and line). No content. */
  readonly origin: string;
  /** `Type/id` of the source record when it had one. */
  readonly sourceRef?: string;
  /** The raw record, kept so it can be inspected and released. Never logged. */
  readonly payload: string;
  /** The policy versions it was judged under (allowlist, consent policy, mapping). */
  readonly policyVersion?: string;
}

/**
 * A quarantine entry as listed and shown: everything but the record itself, so reading it needs no
 * payload key. The record is read on its own (`readQuarantinePayload`) and only while the entry is
 * open: releasing or discarding an entry erases its copy of the record and keeps its SHA-256.
 */
export interface QuarantineEntry extends Omit<NewQuarantineEntry, 'payload'> {
  readonly id: string;
  readonly createdAt: string;
  readonly status: QuarantineStatus;
  /** When it was released or discarded (absent while open). */
  readonly closedAt?: string;
  /** SHA-256 (hex) of the record as quarantined: which record a release or discard was about. */
  readonly payloadSha256?: string;
  /** Whether the store still holds the record (false once closed). */
  readonly payloadKept: boolean;
}

export interface RunRecord {
  readonly runId: string;
  readonly flow: string;
  readonly startedAt: string;
  readonly finishedAt?: string;
  readonly status: 'running' | 'succeeded' | 'failed';
  /** The run summary (counts only) as JSON. */
  readonly summary?: string;
}

/** A source record version the flow has finished with (delivered, withheld or quarantined). */
export interface SeenVersion {
  readonly ref: string;
  readonly versionKey: string;
  readonly outcome: 'delivered' | 'withheld' | 'quarantined' | 'deleted' | 'applied';
  /** The person's pseudonym, for patient data. */
  readonly subject?: string;
}

/** A source record as read, kept for replay under the flow's retention. */
export interface ChangeLogEntry {
  readonly seq: number;
  readonly stream: string;
  readonly ref: string;
  readonly versionKey: string;
  readonly lastUpdated?: string;
  readonly payload: string;
}

/** A sent batch as recorded: its envelope (what, when, why, under which policy) and outcome counts. */
export interface BatchManifest {
  readonly batchId: string;
  readonly flow: string;
  readonly runId: string;
  readonly object: string;
  readonly createdAt: string;
  readonly purpose: string;
  readonly policyVersion: string;
  readonly recordCount: number;
  /** The envelope JSON (batch id, systems, purpose, policy, items with pseudonymous source ids, hash). */
  readonly envelope: string;
  /** The signed envelope (compact JWS) when the flow signs batches. */
  readonly jws?: string;
  /** The consent-aware grouping key the batch was formed under (purpose|scope|policy|role|region). */
  readonly batchKey?: string;
  /** Outcome counts: created, updated, rejected, ambiguous, retried. */
  readonly results: Readonly<Record<string, number>>;
}

/** A canonical consent directive as stored: its key, its (pseudonymous) subject and its JSON. */
export interface StoredConsent {
  readonly key: string;
  readonly subject: string;
  readonly state: string;
}

/** Everything one page of work changes, committed atomically. */
export interface PageCommit {
  readonly flow?: string;
  readonly stream?: string;
  readonly ledger: readonly LedgerEntry[];
  /** Ledger rows to remove (the target records were deleted). */
  readonly ledgerDeletes?: readonly { readonly object: string; readonly externalId: string }[];
  readonly seen?: readonly SeenVersion[];
  readonly changeLog?: readonly Omit<ChangeLogEntry, 'seq' | 'stream'>[];
  readonly batches?: readonly BatchManifest[];
  /** The facts of each delivered record's FHIR Provenance (`provenanceOf` builds the resources). */
  readonly provenance?: readonly ProvenanceFacts[];
  /** Consent directives read in this page (JSON of the canonical ConsentState, keyed). */
  readonly consents?: readonly StoredConsent[];
  readonly quarantine: readonly NewQuarantineEntry[];
  /**
   * Source records (`Type/id`) of which this page processed a newer version: their open quarantine
   * entries of earlier pages are closed as superseded, their records erased (those of `quarantine`
   * above stay open).
   */
  readonly supersedes?: readonly string[];
  /**
   * Removals the target refused in this page (kept, and tried again by later runs); a row already kept
   * for the same target record counts one more attempt.
   */
  readonly refusedRemovals?: readonly NewRefusedRemoval[];
  /**
   * Target records this page delivered (or found unchanged) that have a refused removal waiting: the
   * record is wanted again, so the removal is dropped. Rows in `ledgerDeletes` are dropped as well.
   */
  readonly keptTargets?: readonly { readonly object: string; readonly externalId: string }[];
  /** The checkpoint to move to, when the page lets it advance. */
  readonly checkpoint?: Checkpoint;
  /** When the page is recorded (ISO instant), stamped on its rows; the store's clock when absent. */
  readonly recordedAt?: string;
}

export interface QuarantineFilter {
  readonly flow?: string;
  readonly status?: QuarantineStatus;
  /** The catalog code that held the records back. */
  readonly code?: string;
  readonly stream?: string;
  /** `Type/id` of the source record. */
  readonly sourceRef?: string;
  /** The run that held them back. */
  readonly runId?: string;
  /** At most this many, oldest first (default 1,000). */
  readonly limit?: number;
}

/** Persisted consent states of one flow, read synchronously (see `StateStore.consentLookup`). */
export interface ConsentLookup {
  /** Runs `read`, which may call the lookups below many times, against one snapshot of the store. */
  snapshot<T>(read: () => T): T;
  /** The stored states (JSON) of a person's consents. */
  statesOf(subject: string): string[];
  /** The person a stored consent belongs to. */
  subjectOf(key: string): string | undefined;
  /** How many consents are stored. */
  count(): number;
}

/** Why Sluice removes a record at the target: named as the audit trail names the removal. */
export type RemovalCause = 'source-deletion' | 'consent-revoked-suppression' | 'withheld-retraction';

/** A removal the target refused (e.g. a locked record), as a page records it. */
export interface NewRefusedRemoval {
  readonly flow: string;
  readonly object: string;
  readonly externalId: string;
  readonly targetId: string;
  /** The ledger's source ref: `Type/id` of provider data, the pseudonym of patient data. */
  readonly sourceRef: string;
  readonly cause: RemovalCause;
  /** The withhold reason of a retraction. */
  readonly because?: string;
  /** The target's error codes. */
  readonly codes: readonly string[];
  readonly runId: string;
  /** When this attempt was made (ISO instant). */
  readonly attemptedAt: string;
  /** When a loop should try again (ISO instant); a run started by hand tries every one. */
  readonly nextAttemptAt: string;
}

/** A refused removal waiting: the record is still at the target, its ledger row kept. */
export interface RefusedRemoval extends Omit<NewRefusedRemoval, 'attemptedAt'> {
  readonly firstRefusedAt: string;
  readonly lastAttemptAt: string;
  readonly attempts: number;
}

/** A flow's engaged kill switch: why (a short code) and since when. */
export interface Halt {
  readonly reason: string;
  readonly engagedAt: string;
}

export interface StateStore {
  readonly kind: 'sqlite' | 'postgres';
  getCheckpoint(flow: string, stream: string): Promise<Checkpoint | undefined>;
  listCheckpoints(flow: string): Promise<Checkpoint[]>;
  deleteCheckpoints(flow: string): Promise<number>;
  /** Ledger entries for the given external ids of one object (absent ids are missing from the map). */
  getLedger(flow: string, object: string, externalIds: readonly string[]): Promise<Map<string, LedgerEntry>>;
  countLedger(flow: string): Promise<number>;
  /**
   * The flow's ledger a page at a time, by object and external id, after the given row (reconciliation
   * walks it whole without holding it).
   */
  listLedger(
    flow: string,
    after: { readonly object: string; readonly externalId: string } | undefined,
    limit: number,
  ): Promise<LedgerEntry[]>;
  /** Ledger entries written for one source record (`Type/id`, or a pseudonym). */
  ledgerBySource(flow: string, sourceRef: string): Promise<LedgerEntry[]>;
  /** The versions already processed, for the refs given. */
  getSeen(flow: string, stream: string, refs: readonly string[]): Promise<Map<string, SeenVersion>>;
  /** Refs of a stream withheld for these people (pseudonyms), e.g. by consent. */
  withheldRefsOf(flow: string, stream: string, subjects: readonly string[]): Promise<string[]>;
  /** Refs of a stream last processed for these people (pseudonyms), whatever the outcome. */
  refsOfSubjects(flow: string, stream: string, subjects: readonly string[]): Promise<string[]>;
  /** Forgets processed versions, so the records are processed again when read. */
  forgetSeen(flow: string, stream: string, refs: readonly string[]): Promise<void>;
  /** Change log entries of a stream from a time (by `meta.lastUpdated`), in order, a page at a time. */
  readChangeLog(
    flow: string,
    stream: string,
    from: string | undefined,
    afterSeq: number,
    limit: number,
  ): Promise<ChangeLogEntry[]>;
  listConsents(flow: string): Promise<StoredConsent[]>;
  /**
   * Synchronous reads of the persisted consents of a flow, so the consent gate can keep only a bounded
   * cache in memory (absent: the gate loads every consent with `listConsents`). An engine may prepare
   * them first (PostgreSQL brings a local mirror up to date).
   */
  consentLookup?(flow: string): ConsentLookup | Promise<ConsentLookup>;
  listBatches(flow: string, limit?: number): Promise<BatchManifest[]>;
  /** Provenance resources of a record (`Type/id` or pseudonym), oldest first. */
  provenanceOf(flow: string, entity: string): Promise<Record<string, unknown>[]>;
  getBatch(batchId: string): Promise<BatchManifest | undefined>;
  /** Removes change log entries recorded before `before` (ISO instant); returns how many. */
  pruneChangeLog(flow: string, before: string): Promise<number>;
  commitPage(commit: PageCommit): Promise<void>;
  /**
   * Cluster mode: from now on a page of `flow` (its `flow`, or its checkpoint's) commits only while the
   * flow's lease still carries `fence`, else fails with FLOW_LEASE_LOST and writes nothing; undefined
   * stops checking. The embedded store, run by one process, has none.
   */
  fence?(flow: string, fence: number | undefined): void;
  listQuarantine(filter?: QuarantineFilter): Promise<QuarantineEntry[]>;
  getQuarantine(id: string): Promise<QuarantineEntry | undefined>;
  /** The quarantined record, opened under the payload key; undefined once the entry is closed. */
  readQuarantinePayload(id: string): Promise<string | undefined>;
  /**
   * Moves an open entry to released or discarded and erases its copy of the record (its SHA-256
   * stays); false when it is not open (e.g. superseded meanwhile).
   */
  setQuarantineStatus(id: string, status: 'released' | 'discarded'): Promise<boolean>;
  countQuarantine(flow: string, status?: QuarantineStatus): Promise<number>;
  /** How many entries a selection holds (as `listQuarantine` selects them, without its limit). */
  countQuarantineMatching(filter: Omit<QuarantineFilter, 'limit'>): Promise<number>;
  /** How many entries of one status each code holds, most first. */
  countQuarantineByCode(flow: string, status: QuarantineStatus): Promise<Record<string, number>>;
  startRun(run: { runId: string; flow: string; startedAt: string }): Promise<void>;
  finishRun(run: {
    runId: string;
    finishedAt: string;
    status: 'succeeded' | 'failed';
    summary: string;
  }): Promise<void>;
  /** The flow's kill switch, when engaged (read fresh: another process may engage it at any time). */
  getHalt(flow: string): Promise<Halt | undefined>;
  /**
   * Engages the flow's kill switch (a halt) or releases it (undefined). False when it was already in
   * that state (an engaged switch keeps its first reason and time).
   */
  setHalt(flow: string, halt: Halt | undefined): Promise<boolean>;
  /**
   * Refused removals of a flow waiting to be tried again, oldest first: all of them, those due by
   * `dueBy` (ISO instant), or those of one source record (its ledger ref).
   */
  listRefusedRemovals(
    flow: string,
    options?: { readonly dueBy?: string; readonly sourceRef?: string; readonly limit?: number },
  ): Promise<RefusedRemoval[]>;
  /** How many refused removals a flow has waiting, and since when the oldest. */
  countRefusedRemovals(flow: string): Promise<{ readonly count: number; readonly oldest?: string }>;
  /**
   * Records a retry of refused removals in one transaction: those `removed` lose their ledger row and
   * their refused row; those refused again count one more attempt.
   */
  settleRefusedRemovals(
    flow: string,
    outcome: {
      readonly removed: readonly { readonly object: string; readonly externalId: string }[];
      readonly refused: readonly NewRefusedRemoval[];
    },
  ): Promise<void>;
  /** Removes a run from the history (a loop cycle that found nothing to do). */
  forgetRun(runId: string): Promise<void>;
  listRuns(flow: string, limit?: number): Promise<RunRecord[]>;
  close(): Promise<void>;
}
