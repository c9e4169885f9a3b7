import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { pseudonymize } from '../../core/anonymize/pseudonym.ts';
import { assessPatientProfileRisk } from '../../core/anonymize/release.ts';
import type { ConsentDecision } from '../../core/consent/index.ts';
import { SluiceError, toSluiceError } from '../../core/errors/index.ts';
import { DEFAULT_CLOCK_SKEW_SECONDS, instantMs } from '../../core/fhir/instant.ts';
import type { ProvenanceFacts } from '../../core/fhir/provenance.ts';
import type { Source, SourcePage, SourceRecord } from '../../core/ports/source.ts';
import type { Target } from '../../core/ports/target.ts';
import type { AuditEventInput } from '../audit/entry.ts';
import { CONSENT_STREAM, type ConsentGate } from '../consent/consent-gate.ts';
import type {
  BatchManifest,
  Checkpoint,
  NewQuarantineEntry,
  NewRefusedRemoval,
  SeenVersion,
  StateStore,
  StoredConsent,
} from '../store/state-store.ts';
import {
  type AuditContext,
  pageAuditEntries,
  type RecordNote,
  removalAuditEntries,
} from './audit-entries.ts';
import { type DeletionResult, deleteByLedgerRefs, propagateDeletions } from './deletions.ts';
import { type BatchSealing, type DeliveryItem, type DeliveryResult, deliverPage } from './deliver.ts';
import { prefetch } from './prefetch.ts';
import { NO_PROGRESS, type ProgressSink } from './progress.ts';
import {
  mappingEngine,
  prepareRecordStages,
  processRecord,
  type RecordStageContext,
} from './record-stages.ts';
import { refusalsOf, retryRefusedRemovals } from './refused-removals.ts';
import { emptyCounts, type RunSummary, type StreamCounts } from './summary.ts';
import { isOlderVersion, refOf, versionKeyOf } from './version-key.ts';
import { whileWaiting } from './while-waiting.ts';

/** Receives the audit entries of a run, page by page, before the page's state is committed. */
export interface AuditSink {
  append(entries: readonly AuditEventInput[]): Promise<unknown>;
  /** Retention: removes entries before `before`, keeping the log verifiable from its cut. */
  prune?(options: { before: Date | string; flow?: string }): Promise<unknown>;
}

/**
 * Pages prepared (record stages done) but not yet sent and committed, at most: enough to keep the
 * record stages busy while earlier pages wait on the network; each is one source page in memory.
 */
const PAGES_AHEAD = 3;
/** How long the run waits for a page before it does its start-up work meanwhile. */
const WAIT_BEFORE_PREPARING_MS = 50;

/** The mapping versions the pipeline runs (from the matrix files), stamped on ledger, batches and provenance. */
export const MAPPING_VERSION = (() => {
  const v = mappingEngine().versions();
  return `${v['fhir-r4->canonical'] ?? 'fhir-r4-to-canonical@?'}+${v['canonical->veeva'] ?? 'canonical-to-veeva@?'}`;
})();

export interface RunFlowOptions {
  readonly flow: string;
  /** Hash of the flow definition; checkpoints written under another hash need an explicit reset. */
  readonly definitionHash: string;
  readonly source: Source;
  readonly target: Target;
  readonly store: StateStore;
  readonly stages: Omit<RecordStageContext, 'asOf'>;
  readonly maxBatch: number;
  /** Which source and target this run talks to (a hash of their URLs); checkpoints are tied to it. */
  readonly environment?: string;
  /** Forget the checkpoints first and read everything again (the ledger keeps writes idempotent). */
  readonly reset?: boolean;
  /** Start every stream from this instant instead of its checkpoint (an explicit decision). */
  readonly from?: string;
  /**
   * Replay: re-process records already seen (from the change log source) without moving checkpoints.
   * Delivery stays idempotent through the ledger.
   */
  readonly replay?: boolean;
  /** Send again even what the ledger says the target already has (replay after a target restore). */
  readonly resend?: boolean;
  /** Re-read this many seconds before each checkpoint; versions already processed are skipped. */
  readonly overlapSeconds?: number;
  /** A `meta.lastUpdated` further than this in the future is quarantined as clock skew. */
  readonly clockSkewSeconds?: number;
  /** Keep source records for replay this many days (0 keeps none). */
  readonly changeLogDays?: number;
  /** What a deletion at the source does at the target. */
  readonly deletes?: 'delete' | 'ignore';
  /** Consent at ingest and send time (absent: the flow has no consent stage). */
  readonly consent?: ConsentGate;
  /** Where send-time consent refreshes read (a search source when the main source is a bulk export). */
  readonly consentSource?: Source;
  /** What a revoked consent does to data already delivered: delete it at the target, or leave it. */
  readonly onRevoke?: 'delete' | 'ignore';
  /** Flow-control figures of the target endpoint, reported with the summary. */
  readonly flowControlStats?: () => Readonly<Record<string, string | number | undefined>>;
  /** Where every decision and send is recorded (the tamper-evident audit log). */
  readonly audit?: AuditSink;
  /** Audit entries older than this are pruned after the run (retention policy). */
  readonly auditRetentionDays?: number;
  /** The flow's purpose of use, stamped on audit entries and provenance. */
  readonly purpose?: string;
  /** The flow's stated basis for moving patient data without a consent stage (`stages.withoutConsent`). */
  readonly withoutConsentBasis?: string;
  /** The adapter identity that reads the source (its client id), for provenance. */
  readonly readBy?: string;
  /**
   * Re-identification risk of the de-identified records a page would send (k-anonymity and prosecutor
   * risk over their quasi-identifiers): `hold` keeps a page below the thresholds back (withheld with
   * the figures), `report` only records them.
   */
  readonly risk?: {
    readonly object: string;
    readonly minK: number;
    readonly maxProsecutorRisk: number;
    readonly action: 'hold' | 'report';
  };
  /** A record failing inside a batch: quarantine it and keep the rest (default), or fail the batch. */
  readonly onItemFailure?: 'quarantine-item' | 'reject-batch';
  /** Batch envelopes (manifests, signatures); absent: requests are not sealed. */
  readonly sealing?: Omit<BatchSealing, 'checkedAt'>;
  /**
   * A cycle of a running loop: when it finds nothing to do (every record read was already processed,
   * nothing removed, no error) it leaves no trace in the audit trail or the run history, and its
   * summary says `idle`. Entries of a cycle that does something are as for any run.
   */
  readonly quietWhenIdle?: boolean;
  /**
   * Which removals the target refused earlier are tried again at the start: every one (a run started
   * by hand, the default) or only those due (a loop cycle; retries back off to hourly).
   */
  readonly retryRemovals?: 'all' | 'due';
  readonly logger: Logger;
  readonly progress?: ProgressSink;
  readonly signal?: AbortSignal;
  readonly now?: () => Date;
}

/**
 * Runs a flow once: for each stream, from its checkpoint, page by page — record stages, delivery,
 * then one store transaction with the ledger, the quarantine entries and the new checkpoint. A page
 * that fails is not committed, so its checkpoint does not move and the next run repeats it (upserts
 * by external id make that safe).
 */
export async function runFlow(options: RunFlowOptions): Promise<RunSummary> {
  const now = options.now ?? (() => new Date());
  const started = now();
  const runId = randomUUID();
  const { store, flow, logger } = options;
  const progress = options.progress ?? NO_PROGRESS;
  const signal = options.signal ?? new AbortController().signal;
  const log = logger.child({ flow, runId });
  const byStream: Record<string, StreamCounts> = {};
  const quarantineReasons: Record<string, number> = {};
  const withholdReasons: Record<string, number> = {};
  const checkpoints: Record<string, string> = {};
  let created = 0;
  let updated = 0;
  let batches = 0;
  let deleted = 0;
  let retracted = 0;
  let skipped = 0;
  let suppressed = 0;
  let reconsidered = 0;
  // Removals the target refused in this run's pages (kept for later runs), and those of earlier runs
  // this one completed.
  let removalsRefused = 0;
  let removalsCompleted = 0;
  // Target records (`object` NUL `externalId`) that had a refused removal waiting at some point of the
  // run: delivered again, the removal (if still kept) is dropped. Never shrunk: a later page may refuse
  // again before an earlier one's commit.
  const refusedKeys = new Set<string>();
  const reconsider = new Set<string>();
  const droppedFields: Record<string, number> = {};
  const riskFigures = {
    pages: 0,
    belowThreshold: 0,
    held: 0,
    minK: Number.POSITIVE_INFINITY,
    maxProsecutorRisk: 0,
  };
  const gate = options.consent;
  const environment = options.environment ?? '';
  const policyVersion = [
    `allowlist=${options.stages.allowlist?.version ?? 'none'}`,
    `consent=${options.consent?.settings.policyVersion ?? 'none'}`,
    `mapping=${MAPPING_VERSION}`,
  ].join(';');
  const overlapMs = (options.overlapSeconds ?? 0) * 1000;
  const skewMs = (options.clockSkewSeconds ?? DEFAULT_CLOCK_SKEW_SECONDS) * 1000;
  const keepChanges = (options.changeLogDays ?? 0) > 0;

  await store.startRun({ runId, flow, startedAt: started.toISOString() });
  const auditContext: AuditContext = {
    flow,
    runId,
    recipient: options.consent?.settings.recipient.id ?? options.target.system,
    ...(options.purpose === undefined ? {} : { purpose: options.purpose }),
  };
  const quiet = options.quietWhenIdle === true;
  (quiet ? log.debug : log.info).call(
    log,
    { streams: options.source.streams, replay: options.replay === true },
    'run started',
  );
  // The run's first audit entry; a quiet cycle writes it only before its first other entry.
  let runStartWritten: Promise<unknown> | undefined;
  const writeRunStart = (): Promise<unknown> =>
    (runStartWritten ??=
      options.audit?.append([
        {
          kind: 'run-start',
          flow,
          runId,
          outcome: 'success',
          ...(options.replay ? { reason: 'replay' } : {}),
          details: {
            definitionHash: options.definitionHash.slice(0, 16),
            mapping: MAPPING_VERSION,
            ...(quiet ? { startedAt: started.toISOString() } : {}),
            ...(options.withoutConsentBasis === undefined
              ? {}
              : { withoutConsent: options.withoutConsentBasis }),
          },
        },
      ]) ?? Promise.resolve());
  // The kill switch (`sluice halt`), read fresh before anything is sent: another process may engage it.
  const assertNotHalted = async (): Promise<void> => {
    const halt = await store.getHalt(flow);
    if (halt === undefined) return;
    throw new SluiceError(
      'FLOW_HALTED',
      `The kill switch of flow ${flow} is engaged (${halt.reason}, since ${halt.engagedAt}); nothing more is sent.`,
      { details: { reason: halt.reason, since: halt.engagedAt } },
    );
  };
  let error: SluiceError | undefined;
  try {
    if (!quiet) await writeRunStart();
    await assertNotHalted();
    if (options.reset) {
      const removed = await store.deleteCheckpoints(flow);
      log.info({ removed }, 'checkpoints reset');
    }
    if (options.from === undefined && !options.replay) {
      await assertCheckpointsMatch(store, flow, options.definitionHash, environment);
    }
    // Removals the target refused before: tried again first (the kill switch is read before each).
    const retried = await retryRefusedRemovals({
      flow,
      runId,
      store,
      target: options.target,
      signal,
      beforeRequest: assertNotHalted,
      now: started,
      which: options.retryRemovals ?? 'all',
    });
    if (retried.completed.length > 0) {
      removalsCompleted = retried.completed.length;
      batches += retried.batches;
      for (const r of retried.completed) {
        if (r.cause === 'source-deletion') deleted++;
        else if (r.cause === 'consent-revoked-suppression') suppressed++;
        else retracted++;
      }
      if (options.audit) {
        await writeRunStart();
        await options.audit.append(removalAuditEntries(auditContext, { completed: retried.completed }));
      }
    }
    if (retried.refused.length > 0)
      log.warn({ refused: retried.refused.length }, 'removals the target refused before were refused again');
    for (const key of retried.waiting) refusedKeys.add(key);
    if (gate) {
      const loaded = await gate.load(store, flow);
      log.info({ consents: loaded }, 'consent directives loaded');
    }
    const stages: RecordStageContext = {
      ...options.stages,
      asOf: started,
      ...(gate ? { consent: (subject: string, type: string) => gate.check(subject, type) } : {}),
    };
    const latestAllowedMs = started.getTime() + skewMs;

    // Where each stream reads from: its checkpoint (or `from`), less the overlap window. Streams do not
    // move each other's checkpoints, so the whole run's reads are known now and the source may prepare
    // the next one while the current one is read.
    const starts = new Map<string, { checkpoint: Checkpoint | undefined; position: string | undefined }>();
    for (const stream of options.source.streams) {
      const checkpoint = await store.getCheckpoint(flow, stream);
      starts.set(stream, {
        checkpoint,
        position: options.replay ? options.from : (options.from ?? checkpoint?.position),
      });
    }
    const readFromOf = (position: string | undefined): string | undefined =>
      position === undefined || overlapMs === 0
        ? position
        : new Date(Date.parse(position) - overlapMs).toISOString();
    options.source.plan?.(
      options.source.streams.map((stream) => ({
        stream,
        since: readFromOf(starts.get(stream)?.position),
      })),
      signal,
    );

    // The record stages' start-up (compiling validators, about a second) runs while the source first
    // keeps the run waiting — a bulk export being prepared — instead of at the first record.
    let stagesPrepared = false;
    const whileSourceWaits = () => {
      if (stagesPrepared) return;
      stagesPrepared = true;
      prepareRecordStages(
        stages,
        options.source.streams.filter((s) => s !== CONSENT_STREAM),
      );
    };

    for (const stream of options.source.streams) {
      const counts = emptyCounts();
      byStream[stream] = counts;
      const start = starts.get(stream);
      const checkpoint = start?.checkpoint;
      let position = start?.position;
      // The source's own place, kept with the checkpoint: handed back only when the read starts there.
      const startCursor = options.replay || options.from !== undefined ? undefined : checkpoint?.cursor;
      let cursor = startCursor;
      if (position !== undefined) checkpoints[stream] = position;
      const readFrom = readFromOf(position);
      progress.streamStarted(stream);
      let processed = 0;
      let pageNumber = 0;
      // Policy events: people whose consent now permits what was withheld are read again first.
      const again = stream === 'Patient' ? [...reconsider] : [];
      if (stream === 'Patient') reconsider.clear();
      const fetchFirst = again.length > 0 && options.source.fetch !== undefined;
      if (fetchFirst) log.info({ stream, records: again.length }, 'records read again after consent changes');
      const source = options.source;
      // When this stream's read started: every change committed at the source before it is in it.
      let streamReadAt = Date.now();
      const pages = (async function* () {
        if (fetchFirst) {
          reconsidered += again.length;
          yield await (source.fetch as NonNullable<Source['fetch']>)(stream, again, signal);
        }
        streamReadAt = Date.now();
        yield* source.read(
          stream,
          readFrom,
          signal,
          startCursor === undefined ? undefined : { cursor: startCursor },
        );
      })();
      // Versions of records prepared but not yet committed: the next page, prepared while this one is
      // sent, must see them as processed (duplicates skip, older versions stay out of order).
      const pendingSeen = new Map<string, string>();
      // Ledger refs sent by pages not yet committed, with the last such page's number.
      const uncommittedSends = new Map<string, number>();
      // Target records (`object` NUL `externalId`) retracted by pages not yet committed: a later page
      // sending them again must not find them unchanged in the ledger.
      const uncommittedRemovals = new Map<string, number>();
      // Record stages of one page, before anything is sent.
      const prepare = async (page: SourcePage) => {
        signal.throwIfAborted();
        pageNumber++;
        const readAt = new Date().toISOString();
        const quarantine: NewQuarantineEntry[] = [];
        const items: DeliveryItem[] = [];
        const seen: SeenVersion[] = [];
        // Records withheld now whose earlier deliveries are to be removed at the target (ledger refs).
        const retractions = new Map<string, string>();
        const consents: StoredConsent[] = [];
        const consentChanged = new Set<string>();
        // People whose consents this page carries: pinned in the gate until the page is committed.
        const pins: string[] = [];
        const changeLog: { ref: string; versionKey: string; lastUpdated?: string; payload: string }[] = [];
        const refs = page.records.map((r) => refOf(r.resource));
        const known = options.replay
          ? new Map<string, SeenVersion>()
          : await store.getSeen(
              flow,
              stream,
              refs.filter((r): r is string => r !== undefined),
            );
        for (const ref of refs) {
          const pending = ref === undefined ? undefined : pendingSeen.get(ref);
          if (pending !== undefined)
            known.set(ref as string, { ref: ref as string, versionKey: pending, outcome: 'delivered' });
        }
        // The newest stamp read, compared as a time (stamps come in any zone and precision).
        let maxUpdated = position;
        let maxUpdatedMs = position === undefined ? undefined : instantMs(position);
        const noteStamp = (stamp: string, ms: number): void => {
          if (maxUpdatedMs === undefined || ms > maxUpdatedMs) {
            maxUpdated = stamp;
            maxUpdatedMs = ms;
          }
        };
        const outcomes = new Map<number, SeenVersion['outcome']>();
        const notes = new Map<number, RecordNote>();
        // Stale versions are quarantined but leave the processed (newer) version on record.
        const stale = new Set<number>();
        const keys = new Map<number, string>();
        const stageRecord = (record: SourceRecord, index: number): void => {
          counts.read++;
          const ref = refs[index];
          const versionKey = versionKeyOf(record.resource);
          keys.set(index, versionKey);
          if (ref !== undefined && known.get(ref)?.versionKey === versionKey) {
            skipped++;
            counts.unchanged++;
            return;
          }
          // Out of order: an older version than the one already processed never overwrites it.
          const previous = ref === undefined ? undefined : known.get(ref);
          if (previous && isOlderVersion(versionKey, previous.versionKey)) {
            quarantine.push({
              flow,
              runId,
              stream,
              stage: 'parse',
              code: 'REC_OUT_OF_ORDER',
              issues: [
                {
                  severity: 'error',
                  code: 'REC_OUT_OF_ORDER',
                  path: 'meta.lastUpdated',
                  message: 'this version is older than the one already processed; it was not sent',
                },
              ],
              origin: record.origin,
              ...(ref === undefined ? {} : { sourceRef: ref }),
              payload: safeStringify(record.resource),
            });
            outcomes.set(index, 'quarantined');
            notes.set(index, { reason: 'REC_OUT_OF_ORDER' });
            stale.add(index);
            return;
          }
          if (gate && stream === CONSENT_STREAM) {
            const applied = gate.ingest(record.resource);
            if (applied.ok) {
              if (applied.value.stored) {
                consents.push(applied.value.stored);
                consentChanged.add(applied.value.subject);
              }
              pins.push(...applied.value.pins);
              outcomes.set(index, 'applied');
              notes.set(index, { subject: applied.value.subject, reason: 'consent-directive' });
              const at = applied.value.state.source.lastUpdated;
              // Applied whatever its stamp, but one further ahead than the clock skew allows never moves
              // the checkpoint: the revocations stamped before it would not be read again.
              if (at !== undefined && Number.isFinite(at) && at <= latestAllowedMs)
                noteStamp(new Date(at).toISOString(), at);
            } else {
              quarantine.push({
                flow,
                runId,
                stream,
                stage: 'policy',
                code: applied.code,
                issues: applied.issues,
                origin: record.origin,
                ...(ref === undefined ? {} : { sourceRef: ref }),
                payload: safeStringify(record.resource),
              });
              outcomes.set(index, 'quarantined');
              notes.set(index, { reason: applied.code });
            }
            return;
          }
          const verdict = processRecord(record, stages);
          const stampTime = verdict.lastUpdated;
          const stampMs = instantMs(stampTime);
          if (stampMs !== undefined && stampMs > latestAllowedMs) {
            quarantine.push({
              flow,
              runId,
              stream,
              stage: 'parse',
              code: 'REC_FUTURE_TIMESTAMP',
              issues: [
                {
                  severity: 'error',
                  code: 'REC_FUTURE_TIMESTAMP',
                  path: 'meta.lastUpdated',
                  message: `meta.lastUpdated is more than ${skewMs / 1000} s ahead of this host's clock`,
                },
              ],
              origin: record.origin,
              ...(ref === undefined ? {} : { sourceRef: ref }),
              payload: safeStringify(record.resource),
            });
            outcomes.set(index, 'quarantined');
            notes.set(index, { reason: 'REC_FUTURE_TIMESTAMP' });
            return;
          }
          if (stampTime !== undefined && stampMs !== undefined) noteStamp(stampTime, stampMs);
          if (keepChanges && ref !== undefined) {
            // As read: the state store keeps it as UTC text (it owns how the change log is ordered).
            changeLog.push({
              ref,
              versionKey,
              ...(stampTime === undefined ? {} : { lastUpdated: stampTime }),
              payload: safeStringify(record.resource),
            });
          }
          switch (verdict.kind) {
            case 'quarantine':
              quarantine.push({
                flow,
                runId,
                stream,
                stage: verdict.stage,
                code: verdict.code,
                issues: verdict.issues,
                origin: record.origin,
                ...(verdict.sourceRef === undefined ? {} : { sourceRef: verdict.sourceRef }),
                payload: safeStringify(record.resource),
              });
              outcomes.set(index, 'quarantined');
              notes.set(index, { reason: verdict.code });
              break;
            case 'withheld':
              counts.withheld++;
              withholdReasons[verdict.reason] = (withholdReasons[verdict.reason] ?? 0) + 1;
              outcomes.set(index, 'withheld');
              if (verdict.retractRef !== undefined) {
                // The later version wins: an earlier one of this page is not sent either.
                const ledgerRef = verdict.retractRef;
                const kept = items.filter((item) => item.ledgerRef !== ledgerRef);
                if (kept.length < items.length) items.splice(0, items.length, ...kept);
                retractions.set(ledgerRef, verdict.reason);
              }
              notes.set(index, {
                reason: verdict.reason,
                ...(verdict.subject === undefined ? {} : { subject: verdict.subject }),
                ...(verdict.decision
                  ? {
                      decision: {
                        value: verdict.decision.decision,
                        rule: verdict.decision.basis.rule,
                        consent: verdict.decision.basis.consentRef ?? '',
                        provision: verdict.decision.basis.provisionPath ?? '',
                        policy: verdict.decision.policyVersion,
                      },
                    }
                  : {}),
              });
              break;
            case 'ready':
              retractions.delete(verdict.ledgerRef);
              items.push({
                index,
                writes: verdict.writes,
                ledgerRef: verdict.ledgerRef,
                ...(verdict.subject === undefined ? {} : { subject: verdict.subject }),
                ...(verdict.region === undefined ? {} : { region: verdict.region }),
              });
              outcomes.set(index, 'delivered');
              notes.set(index, verdict.subject === undefined ? {} : { subject: verdict.subject });
              for (const f of verdict.dropped ?? []) droppedFields[f] = (droppedFields[f] ?? 0) + 1;
              break;
          }
        };
        // The consent lookups of the whole page (cache misses, consents replaced) share one snapshot.
        const stageAll = () => page.records.forEach(stageRecord);
        if (gate) gate.batch(stageAll);
        else stageAll();

        for (const index of outcomes.keys()) {
          const ref = refs[index];
          if (ref !== undefined && !stale.has(index)) pendingSeen.set(ref, keys.get(index) as string);
        }
        return {
          page,
          pageNumber,
          readAt,
          quarantine,
          items,
          seen,
          retractions,
          consents,
          consentChanged,
          pins,
          changeLog,
          refs,
          maxUpdated,
          outcomes,
          notes,
          stale,
          keys,
        };
      };
      // The second half of a page runs in four steps, each in page order: the send-time checks (a
      // consent refresh at the source, then each person checked again), the send, the record (deletions
      // and suppression, provenance, the audit append) and the commit (one state transaction). A page's
      // step waits for its own previous step and for the same step of the page before, so page N+1's
      // consent refresh overlaps page N's send, its send overlaps page N's record, and its record page
      // N's commit. Consents a refresh reads stay pinned in the gate until the page that persists them is
      // committed; a page with deletions or revocations also waits for the commit of the page before,
      // so they act on every earlier page's ledger rows.
      type Prepared = Awaited<ReturnType<typeof prepare>>;
      type Checked = {
        sendable: DeliveryItem[];
        checkedAt?: Date;
        sendDecisions: Map<number, ConsentDecision>;
      };
      const check = async (prepared: Prepared): Promise<Checked> => {
        const { items, consents, consentChanged, pins, outcomes, notes } = prepared;
        // Send-time consent: re-read what changed at the source, then check each person again.
        let sendable = items;
        let checkedAt: Date | undefined;
        const sendDecisions = new Map<number, ConsentDecision>();
        if (gate && items.some((i) => i.subject !== undefined)) {
          const refreshed = await gate.refresh(options.consentSource ?? options.source, signal);
          consents.push(...refreshed.stored);
          pins.push(...refreshed.pins);
          for (const subject of refreshed.subjects) consentChanged.add(subject);
          // Stamped with the instant the consents known were read as of (this refresh's start, or the
          // last read's when that is recent enough): a revocation committed at the source before it
          // stops the send; one committed after it is suppressed by a later page. Periods are
          // evaluated at the send instant, so a consent that expired meanwhile stops it too.
          const at = new Date();
          checkedAt = refreshed.readAt === undefined ? at : new Date(refreshed.readAt);
          sendable = gate.batch(() =>
            items.filter((item) => {
              if (item.subject === undefined) return true;
              const decision = gate.check(item.subject, stream, at);
              sendDecisions.set(item.index, decision);
              if (decision.decision === 'permit') return true;
              counts.withheld++;
              withholdReasons['consent-changed-before-send'] =
                (withholdReasons['consent-changed-before-send'] ?? 0) + 1;
              outcomes.set(item.index, 'withheld');
              notes.set(item.index, {
                reason: 'consent-changed-before-send',
                subject: item.subject,
                decision: {
                  value: decision.decision,
                  rule: decision.basis.rule,
                  consent: decision.basis.consentRef ?? '',
                  provision: decision.basis.provisionPath ?? '',
                  policy: decision.policyVersion,
                },
              });
              return false;
            }),
          );
        }

        // Re-identification risk of the de-identified records this page would release.
        if (options.risk && sendable.some((i) => i.subject !== undefined)) {
          const profiles = sendable.filter((i) => i.subject !== undefined);
          const release = assessPatientProfileRisk(
            profiles.flatMap((i) => i.writes),
            { minK: options.risk.minK, maxProsecutorRisk: options.risk.maxProsecutorRisk },
            { object: options.risk.object },
          );
          riskFigures.pages++;
          riskFigures.minK = Math.min(riskFigures.minK, release.report.k);
          riskFigures.maxProsecutorRisk = Math.max(
            riskFigures.maxProsecutorRisk,
            release.report.prosecutor.max,
          );
          if (release.hold) {
            riskFigures.belowThreshold++;
            if (options.risk.action === 'hold') {
              riskFigures.held += profiles.length;
              const held = new Set(profiles.map((i) => i.index));
              sendable = sendable.filter((i) => !held.has(i.index));
              for (const item of profiles) {
                counts.withheld++;
                withholdReasons['risk-below-threshold'] = (withholdReasons['risk-below-threshold'] ?? 0) + 1;
                outcomes.set(item.index, 'withheld');
                notes.set(item.index, {
                  reason: 'risk-below-threshold',
                  ...(item.subject ? { subject: item.subject } : {}),
                });
              }
              log.warn(
                {
                  stream,
                  k: release.report.k,
                  prosecutorMax: release.report.prosecutor.max,
                  held: profiles.length,
                },
                'page held: re-identification risk above the flow thresholds',
              );
            }
          }
        }
        return { sendable, ...(checkedAt ? { checkedAt } : {}), sendDecisions };
      };
      const send = async (prepared: Prepared, checked: Checked, earlierCommitted: Promise<unknown>) => {
        const { page, pageNumber, quarantine, refs, outcomes, notes, retractions } = prepared;
        const { sendable, checkedAt, sendDecisions } = checked;
        await assertNotHalted();
        // Retraction: what earlier runs delivered for records withheld now is removed at the target,
        // before this page's upserts and in page order with every send, so a newer version a later page
        // sends is never removed. Records earlier pages sent are in the ledger once those pages commit.
        let retraction: DeletionResult | undefined;
        if (retractions.size > 0) {
          const refsToRetract = [...retractions.keys()];
          if (refsToRetract.some((r) => uncommittedSends.has(r))) await earlierCommitted;
          retraction = await deleteByLedgerRefs(refsToRetract, {
            flow,
            store,
            target: options.target,
            signal,
          });
          retracted += retraction.deleted;
          for (const d of retraction.ledgerDeletes)
            uncommittedRemovals.set(`${d.object}\u0000${d.externalId}`, pageNumber);
        }
        const delivery = await deliverPage(sendable, {
          flow,
          runId,
          target: options.target,
          store,
          maxBatch: Math.min(options.maxBatch, options.target.maxBatchSize),
          mappingVersion: MAPPING_VERSION,
          signal,
          resend: options.resend === true,
          beforeRequest: assertNotHalted,
          ...(uncommittedRemovals.size > 0 ? { removed: new Set(uncommittedRemovals.keys()) } : {}),
          batchKeyOf: (item) => {
            const decision = sendDecisions.get(item.index);
            return [
              options.purpose ?? 'unspecified',
              item.subject === undefined
                ? 'provider-data'
                : (decision?.basis.consentScope ?? 'no-consent-scope'),
              decision?.basis.consentPolicyVersion ?? decision?.policyVersion ?? 'no-consent-policy',
              options.consent?.settings.recipient.role ?? options.target.system,
              item.subject === undefined ? 'any-region' : (item.region ?? 'region-unknown'),
            ].join('|');
          },
          ...(options.onItemFailure ? { onItemFailure: options.onItemFailure } : {}),
          pageKey: `${stream}#${pageNumber}`,
          ...(options.sealing
            ? { sealing: { ...options.sealing, ...(checkedAt ? { checkedAt } : {}) } }
            : {}),
        });
        for (const failure of delivery.failures) {
          const record = page.records[failure.index];
          const ref = refs[failure.index];
          outcomes.set(failure.index, 'quarantined');
          notes.set(failure.index, { ...notes.get(failure.index), reason: failure.code });
          quarantine.push({
            flow,
            runId,
            stream,
            stage: 'deliver',
            code: failure.code,
            issues: failure.issues,
            origin: record?.origin ?? stream,
            ...(ref === undefined ? {} : { sourceRef: ref }),
            payload: safeStringify(record?.resource),
          });
        }
        for (const item of sendable) uncommittedSends.set(item.ledgerRef, pageNumber);
        return { ...delivery, retraction };
      };
      type Sent = DeliveryResult & { retraction: DeletionResult | undefined };
      // What a page's audit step hands to its commit.
      type Recorded = {
        removal: Awaited<ReturnType<typeof propagateDeletions>> | undefined;
        suppression: Awaited<ReturnType<typeof deleteByLedgerRefs>> | undefined;
        provenance: ReturnType<typeof provenanceFor>;
        refusals: NewRefusedRemoval[];
        kept: { object: string; externalId: string }[];
      };
      const record = async (
        prepared: Prepared,
        checked: Checked,
        delivery: Sent,
        earlierCommitted: Promise<unknown>,
      ): Promise<Recorded> => {
        const { page, readAt, quarantine, seen, consentChanged } = prepared;
        const { refs, outcomes, notes, stale, keys } = prepared;
        const { sendable, sendDecisions } = checked;
        for (const [index, outcome] of outcomes) {
          if (stale.has(index)) continue;
          const ref = refs[index];
          const subject = notes.get(index)?.subject;
          if (ref !== undefined) {
            seen.push({
              ref,
              versionKey: keys.get(index) as string,
              outcome,
              ...(subject !== undefined && outcome !== 'applied' ? { subject } : {}),
            });
          }
        }

        // Suppression: what was delivered for a person whose consent no longer permits is deleted.
        const revoked =
          gate && consentChanged.size > 0 && options.onRevoke !== 'ignore'
            ? gate.batch(() => {
                const at = new Date();
                return [...consentChanged].filter(
                  (subject) => gate.check(subject, 'Patient', at).decision !== 'permit',
                );
              })
            : [];
        const deleting = (page.deletions?.length ?? 0) > 0 && options.deletes !== 'ignore';
        // Deletions and suppression act on what earlier pages delivered: their ledger rows must be written.
        if (deleting || revoked.length > 0) {
          await earlierCommitted;
          await assertNotHalted();
        }
        const removal =
          deleting && page.deletions
            ? await propagateDeletions(page.deletions, {
                flow,
                store,
                target: options.target,
                stages: options.stages,
                signal,
                beforeRequest: assertNotHalted,
              })
            : undefined;
        // Provenance of every record sent in this page: edge facts first, then each stage's step.
        const provenance = provenanceFor({
          options,
          runId,
          stream,
          items: sendable,
          manifests: delivery.manifests,
          origins: page.records.map((r) => r.origin),
          keys,
          readAt,
          decisions: sendDecisions,
        });

        let suppression: Awaited<ReturnType<typeof deleteByLedgerRefs>> | undefined;
        if (revoked.length > 0) {
          suppression = await deleteByLedgerRefs(revoked, {
            flow,
            store,
            target: options.target,
            signal,
            beforeRequest: assertNotHalted,
          });
          suppressed += suppression.deleted;
        }
        // Removals the target refused: kept, audited, tried again by later runs.
        const refusedAt = new Date();
        const refusals = [
          ...refusalsOf(delivery.retraction, 'withheld-retraction', {
            flow,
            runId,
            at: refusedAt,
            because: (ref) => prepared.retractions.get(ref),
          }),
          ...refusalsOf(removal, 'source-deletion', { flow, runId, at: refusedAt }),
          ...refusalsOf(suppression, 'consent-revoked-suppression', { flow, runId, at: refusedAt }),
        ];
        removalsRefused += refusals.length;
        // Known to the next page's record step before this page commits (steps run in page order).
        for (const r of refusals) refusedKeys.add(`${r.object}\u0000${r.externalId}`);
        // Records delivered (or unchanged) whose removal a run could not make: wanted again, kept.
        const kept: { object: string; externalId: string }[] = [];
        if (refusedKeys.size > 0) {
          const failedIndexes = new Set(delivery.failures.map((f) => f.index));
          for (const item of sendable) {
            if (failedIndexes.has(item.index)) continue;
            for (const w of item.writes)
              if (refusedKeys.has(`${w.object}\u0000${w.externalId}`))
                kept.push({ object: w.object, externalId: w.externalId });
          }
        }
        for (const d of page.deletions ?? []) {
          seen.push({
            ref: `${d.resourceType}/${d.id}`,
            versionKey: `deleted:${d.at ?? ''}`,
            outcome: 'deleted',
          });
        }

        for (const [i, q] of quarantine.entries()) {
          quarantineReasons[q.code] = (quarantineReasons[q.code] ?? 0) + 1;
          quarantine[i] = { ...q, policyVersion };
        }
        counts.quarantined += quarantine.length;
        counts.delivered += delivery.created + delivery.updated;
        counts.unchanged += delivery.unchanged;
        created += delivery.created;
        updated += delivery.updated;
        batches +=
          delivery.batches +
          (removal?.batches ?? 0) +
          (suppression?.batches ?? 0) +
          (delivery.retraction?.batches ?? 0);
        deleted += removal?.deleted ?? 0;

        if (options.audit) {
          const entries = pageAuditEntries({
            ctx: auditContext,
            stream,
            refs,
            outcomes,
            notes,
            manifests: delivery.manifests,
            deletedRecords: removal?.deleted ?? 0,
            suppressedSubjects: suppression?.refs ?? [],
            suppressedRecords: suppression?.deleted ?? 0,
            retracted: (delivery.retraction?.refs ?? []).map((ref) => ({
              ref,
              reason: prepared.retractions.get(ref) ?? 'withheld',
            })),
            refusedRemovals: refusals,
            pseudonymOf: (id) =>
              pseudonymize(options.stages.pseudonymKey, options.stages.system, 'Patient', id),
          });
          if (entries.length > 0) {
            await writeRunStart();
            await options.audit.append(entries);
          }
        }
        return { removal, suppression, provenance, refusals, kept };
      };
      const commit = async (prepared: Prepared, delivery: Sent, recorded: Recorded) => {
        const { page, quarantine, seen, consents, consentChanged, changeLog, pins, maxUpdated } = prepared;
        const { removal, suppression, provenance, refusals, kept } = recorded;

        // The source's own position (a bulk export's transactionTime) wins; else the later of the
        // source's (when a complete search was answered; not if it is further ahead of the local clock
        // than the skew allowed) and the newest record read.
        const next = options.source.explicitCheckpoints
          ? page.checkpoint
          : laterPosition(
              page.checkpoint !== undefined && Date.parse(page.checkpoint) <= latestAllowedMs
                ? page.checkpoint
                : undefined,
              maxUpdated,
            );
        // A page may move only the source's cursor (an event bus read up to its last sequence).
        const nextCursor = page.cursor ?? cursor;
        const cursorMoved = nextCursor !== cursor;
        const advance =
          !options.replay &&
          next !== undefined &&
          (next !== checkpoint?.position || cursorMoved) &&
          (position === undefined || !isEarlier(next, position));
        await store.commitPage({
          flow,
          stream,
          ledger: delivery.ledger,
          ledgerDeletes: [
            ...(removal?.ledgerDeletes ?? []),
            ...(suppression?.ledgerDeletes ?? []),
            ...(delivery.retraction?.ledgerDeletes ?? []),
          ],
          ...(refusals.length > 0 ? { refusedRemovals: refusals } : {}),
          ...(kept.length > 0 ? { keptTargets: kept } : {}),
          consents,
          batches: delivery.manifests,
          provenance,
          quarantine,
          seen,
          // A replay re-sends versions already processed: it supersedes nothing (a release among them).
          ...(options.replay ? {} : { supersedes: seen.map((v) => v.ref) }),
          changeLog,
          ...(advance
            ? {
                checkpoint: {
                  flow,
                  stream,
                  position: next as string,
                  ...(nextCursor === undefined ? {} : { cursor: nextCursor }),
                  definitionHash: options.definitionHash,
                  environment,
                  runId,
                  updatedAt: now().toISOString(),
                },
              }
            : {}),
        });
        gate?.committed(pins);
        for (const [ref, sentBy] of uncommittedSends)
          if (sentBy === prepared.pageNumber) uncommittedSends.delete(ref);
        for (const [key, by] of uncommittedRemovals)
          if (by === prepared.pageNumber) uncommittedRemovals.delete(key);
        if (advance) {
          position = next;
          cursor = nextCursor;
          checkpoints[stream] = next as string;
        }
        if (gate && stream === CONSENT_STREAM) {
          gate.noteStreamPosition(position, streamReadAt);
          // A consent that now permits makes the person's withheld records eligible: read them again.
          const now3 = new Date();
          const permitted = [...consentChanged].filter(
            (s) => gate.check(s, 'Patient', now3).decision === 'permit',
          );
          if (permitted.length > 0 && !options.replay) {
            const refsAgain = await store.withheldRefsOf(flow, 'Patient', permitted);
            await store.forgetSeen(flow, 'Patient', refsAgain);
            for (const r of refsAgain) reconsider.add(r.slice('Patient/'.length));
          }
        }
        processed += page.records.length;
        progress.pageCommitted(stream, processed, page.total);
        log.debug(
          { stream, records: page.records.length, quarantined: quarantine.length, batches: delivery.batches },
          'page committed',
        );
        for (const v of seen) if (pendingSeen.get(v.ref) === v.versionKey) pendingSeen.delete(v.ref);
      };

      // Up to PAGES_AHEAD pages go through the record stages while earlier ones are checked, sent,
      // audited and committed. Each step of a page starts once every step it waits for has settled, and
      // not at all if one of them failed: nothing is sent or committed after a failure, and when the last
      // page's commit has settled, so has everything before it. A page's audit entries are appended
      // before its state is committed (a crash between the two re-sends the page, idempotently, and the
      // audit shows both attempts), while page N's commit overlaps page N+1's audit.
      let checked: Promise<Checked> = Promise.resolve({ sendable: [], sendDecisions: new Map() });
      let sent: Promise<unknown> = Promise.resolve();
      let recorded: Promise<unknown> = Promise.resolve();
      let committed: Promise<unknown> = Promise.resolve();
      const inFlight: Promise<unknown>[] = [];
      try {
        for await (const page of whileWaiting(
          prefetch(pages, 1),
          WAIT_BEFORE_PREPARING_MS,
          whileSourceWaits,
        )) {
          const prepared = await prepare(page);
          const earlier = committed;
          const c = afterSettled([checked], () => check(prepared));
          const s = afterSettled([c, sent], async () => send(prepared, await c, earlier));
          const r = afterSettled([s, recorded], async () => record(prepared, await c, await s, earlier));
          const m = afterSettled([r, committed], async () => commit(prepared, await s, await r));
          for (const step of [c, s, r, m]) step.catch(() => undefined);
          checked = c;
          sent = s;
          recorded = r;
          committed = m;
          inFlight.push(m);
          while (inFlight.length > PAGES_AHEAD - 1) await inFlight.shift();
        }
        await committed;
      } catch (err) {
        await committed.catch(() => undefined);
        throw err;
      }
      progress.streamFinished(stream, processed);
    }
    if (keepChanges) {
      const cutoff = new Date(started.getTime() - (options.changeLogDays ?? 0) * 86_400_000).toISOString();
      const pruned = await store.pruneChangeLog(flow, cutoff);
      if (pruned > 0) log.info({ pruned }, 'change log pruned');
    }
  } catch (err) {
    error = toSluiceError(err);
    log.error({ code: error.code, err: { message: error.message } }, 'run failed');
  }
  try {
    await options.source.close?.();
  } catch (err) {
    log.warn({ code: toSluiceError(err).code }, 'the source could not release what it prepared');
  }

  const finished = now();
  const total = Object.values(byStream).reduce(
    (sum, c) => ({
      read: sum.read + c.read,
      delivered: sum.delivered + c.delivered,
      unchanged: sum.unchanged + c.unchanged,
      quarantined: sum.quarantined + c.quarantined,
      withheld: sum.withheld + c.withheld,
    }),
    emptyCounts(),
  );
  // A quiet cycle that found nothing to do: every record read was a version already processed.
  const idle =
    quiet &&
    error === undefined &&
    runStartWritten === undefined &&
    total.read === skipped &&
    deleted + suppressed + retracted + reconsidered + removalsRefused === 0;
  // What still waits for the target to allow a removal (read even after a failure: it is state).
  let removalsPending = 0;
  try {
    removalsPending = (await store.countRefusedRemovals(flow)).count;
  } catch (err) {
    log.warn({ code: toSluiceError(err).code }, 'refused removals could not be counted');
  }
  const summary: RunSummary = {
    flow,
    runId,
    status: error ? 'failed' : 'succeeded',
    ...(idle ? { idle: true } : {}),
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    durationMs: finished.getTime() - started.getTime(),
    ...total,
    created,
    updated,
    skipped,
    deleted,
    suppressed,
    retracted,
    ...(reconsidered > 0 ? { reconsidered } : {}),
    ...(removalsRefused + removalsCompleted + removalsPending > 0
      ? { removals: { refused: removalsRefused, completed: removalsCompleted, pending: removalsPending } }
      : {}),
    batches,
    byStream,
    quarantineReasons,
    withholdReasons,
    checkpoints,
    ...(options.flowControlStats ? { flowControl: options.flowControlStats() } : {}),
    ...(Object.keys(droppedFields).length > 0 ? { droppedFields } : {}),
    ...(options.risk && riskFigures.pages > 0
      ? {
          risk: {
            pages: riskFigures.pages,
            belowThreshold: riskFigures.belowThreshold,
            held: riskFigures.held,
            minK: riskFigures.minK,
            maxProsecutorRisk: Number(riskFigures.maxProsecutorRisk.toFixed(4)),
            action: options.risk.action,
          },
        }
      : {}),
    ...(error ? { error: { code: error.code, message: error.message, action: error.action } } : {}),
  };
  try {
    if (!idle) {
      await writeRunStart();
      await options.audit?.append([
        {
          kind: 'run-end',
          flow,
          runId,
          outcome: error ? 'serious-failure' : 'success',
          ...(error ? { reason: error.code } : {}),
          details: {
            read: summary.read,
            delivered: summary.delivered,
            withheld: summary.withheld,
            quarantined: summary.quarantined,
            batches: summary.batches,
          },
        },
      ]);
    }
    if (options.auditRetentionDays && options.audit?.prune) {
      await options.audit.prune({
        before: new Date(finished.getTime() - options.auditRetentionDays * 86_400_000),
        flow,
      });
    }
  } catch (err) {
    log.error({ code: toSluiceError(err).code }, 'audit run-end entry or retention failed');
  }
  // An idle cycle leaves no run in the history (its row only marked it as running).
  if (idle) await store.forgetRun(runId);
  else
    await store.finishRun({
      runId,
      finishedAt: summary.finishedAt,
      status: summary.status,
      summary: JSON.stringify(summary),
    });
  (idle ? log.debug : log.info).call(
    log,
    {
      status: summary.status,
      read: summary.read,
      delivered: summary.delivered,
      quarantined: summary.quarantined,
    },
    'run finished',
  );
  return summary;
}

/**
 * Whether instant `a` is before `b`, compared as times (stamps may differ in zone or precision); as
 * text when either is not a time.
 */
function isEarlier(a: string, b: string): boolean {
  const ta = Date.parse(a);
  const tb = Date.parse(b);
  return Number.isFinite(ta) && Number.isFinite(tb) ? ta < tb : a < b;
}

/** The later of two instants (either may be absent). */
function laterPosition(a: string | undefined, b: string | undefined): string | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return isEarlier(b, a) ? a : b;
}

function provenanceFor(input: {
  options: RunFlowOptions;
  runId: string;
  stream: string;
  items: readonly DeliveryItem[];
  manifests: readonly BatchManifest[];
  origins: readonly string[];
  keys: ReadonlyMap<number, string>;
  readAt: string;
  decisions: ReadonlyMap<number, ConsentDecision>;
}): ProvenanceFacts[] {
  const batchOf = new Map<string, string>();
  for (const m of input.manifests) {
    const envelope = JSON.parse(m.envelope) as { items?: { sourceId?: string }[] };
    for (const item of envelope.items ?? []) if (item.sourceId) batchOf.set(item.sourceId, m.batchId);
  }
  const { options } = input;
  const recorded = new Date().toISOString();
  const out: ProvenanceFacts[] = [];
  for (const item of input.items) {
    const batchId = batchOf.get(item.ledgerRef);
    if (batchId === undefined) continue; // nothing was sent for it (unchanged at the target)
    const decision = input.decisions.get(item.index);
    out.push({
      id: randomUUID(),
      recorded,
      flow: options.flow,
      runId: input.runId,
      sourceSystem: options.source.system,
      targetSystem: options.target.system,
      entity: item.ledgerRef,
      versionKey: input.keys.get(item.index) ?? '',
      origin: input.origins[item.index] ?? input.stream,
      readAt: input.readAt,
      readBy: options.readBy ?? options.source.system,
      mappingVersion: MAPPING_VERSION,
      validation: 'valid',
      ...(decision
        ? {
            consent: {
              decision: decision.decision,
              policy: decision.policyVersion,
              basis: decision.basis.consentRef ?? decision.basis.rule,
            },
          }
        : {}),
      anonymization:
        item.subject === undefined ? 'none (provider data)' : 'pseudonymised; birth year, ZIP3, gender only',
      batchId,
      purpose: options.purpose ?? 'unspecified',
      targets: item.writes.map((w) => ({ object: w.object, externalId: w.externalId })),
    });
  }
  return out;
}

async function assertCheckpointsMatch(
  store: StateStore,
  flow: string,
  hash: string,
  environment: string,
): Promise<void> {
  const checkpoints = await store.listCheckpoints(flow);
  const stale = checkpoints.filter((c) => c.definitionHash !== hash);
  if (stale.length > 0) {
    throw new SluiceError(
      'STATE_DEFINITION_CHANGED',
      `Flow ${flow} changed since the checkpoints of stream(s) ${stale.map((c) => c.stream).join(', ')} were written.`,
      { details: { flow, streams: stale.map((c) => c.stream) } },
    );
  }
  const moved = checkpoints.filter((c) => c.environment !== '' && c.environment !== environment);
  if (moved.length > 0) {
    throw new SluiceError(
      'STATE_ENVIRONMENT_CHANGED',
      `Flow ${flow} now points at another source or target than its checkpoints of stream(s) ${moved.map((c) => c.stream).join(', ')}.`,
      { details: { flow, streams: moved.map((c) => c.stream) } },
    );
  }
}

function safeStringify(value: unknown): string {
  try {
    return JSON.stringify(value) ?? 'null';
  } catch {
    return '"(unserialisable record)"';
  }
}

/**
 * Runs `step` once every promise in `after` has settled, failing with the first failure among them
 * instead if one failed: a step never starts after a failure, and never before what it waits for is
 * finished, whichever way that went.
 */
async function afterSettled<T>(after: readonly Promise<unknown>[], step: () => Promise<T>): Promise<T> {
  const settled = await Promise.allSettled(after);
  for (const s of settled) if (s.status === 'rejected') throw s.reason;
  return step();
}
