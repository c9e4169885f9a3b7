import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { SluiceError, toSluiceError } from '../../core/errors/index.ts';
import { CANONICAL_TO_VEEVA_VERSION } from '../../core/mapping/canonical-to-veeva.ts';
import { FHIR_TO_CANONICAL_VERSION } from '../../core/mapping/fhir-to-canonical.ts';
import type { Source } from '../../core/ports/source.ts';
import type { Target } from '../../core/ports/target.ts';
import type { NewQuarantineEntry, StateStore } from '../store/state-store.ts';
import { type DeliveryItem, deliverPage } from './deliver.ts';
import { prefetch } from './prefetch.ts';
import { NO_PROGRESS, type ProgressSink } from './progress.ts';
import { processRecord, type RecordStageContext } from './record-stages.ts';
import { emptyCounts, type RunSummary, type StreamCounts } from './summary.ts';

export const MAPPING_VERSION = `${FHIR_TO_CANONICAL_VERSION}+${CANONICAL_TO_VEEVA_VERSION}`;

export interface RunFlowOptions {
  readonly flow: string;
  /** Hash of the flow definition; checkpoints written under another hash need an explicit reset. */
  readonly definitionHash: string;
  readonly source: Source;
  readonly target: Target;
  readonly store: StateStore;
  readonly stages: Omit<RecordStageContext, 'asOf'>;
  readonly maxBatch: number;
  /** Forget the checkpoints first and read everything again (the ledger keeps writes idempotent). */
  readonly reset?: boolean;
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

  await store.startRun({ runId, flow, startedAt: started.toISOString() });
  log.info({ streams: options.source.streams }, 'run started');
  let error: SluiceError | undefined;
  try {
    if (options.reset) {
      const removed = await store.deleteCheckpoints(flow);
      log.info({ removed }, 'checkpoints reset');
    }
    await assertDefinitionUnchanged(store, flow, options.definitionHash);
    const stages: RecordStageContext = { ...options.stages, asOf: started };

    for (const stream of options.source.streams) {
      const counts = emptyCounts();
      byStream[stream] = counts;
      const checkpoint = await store.getCheckpoint(flow, stream);
      let position = checkpoint?.position;
      if (position !== undefined) checkpoints[stream] = position;
      progress.streamStarted(stream);
      let processed = 0;
      for await (const page of prefetch(options.source.read(stream, position, signal), 1)) {
        signal.throwIfAborted();
        const quarantine: NewQuarantineEntry[] = [];
        const items: DeliveryItem[] = [];
        let maxUpdated = position;
        page.records.forEach((record, index) => {
          counts.read++;
          const verdict = processRecord(record, stages);
          if (
            verdict.lastUpdated !== undefined &&
            (maxUpdated === undefined || verdict.lastUpdated > maxUpdated)
          ) {
            maxUpdated = verdict.lastUpdated;
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
              break;
            case 'withheld':
              counts.withheld++;
              withholdReasons[verdict.reason] = (withholdReasons[verdict.reason] ?? 0) + 1;
              break;
            case 'ready':
              items.push({ index, writes: verdict.writes, ledgerRef: verdict.ledgerRef });
              break;
          }
        });

        const delivery = await deliverPage(items, {
          flow,
          runId,
          target: options.target,
          store,
          maxBatch: Math.min(options.maxBatch, options.target.maxBatchSize),
          mappingVersion: MAPPING_VERSION,
          signal,
        });
        for (const failure of delivery.failures) {
          const record = page.records[failure.index];
          const resource = record?.resource as { resourceType?: unknown; id?: unknown } | undefined;
          quarantine.push({
            flow,
            runId,
            stream,
            stage: 'deliver',
            code: failure.code,
            issues: failure.issues,
            origin: record?.origin ?? stream,
            ...(typeof resource?.id === 'string'
              ? { sourceRef: `${String(resource.resourceType)}/${resource.id}` }
              : {}),
            payload: safeStringify(record?.resource),
          });
        }
        for (const q of quarantine) quarantineReasons[q.code] = (quarantineReasons[q.code] ?? 0) + 1;
        counts.quarantined += quarantine.length;
        counts.delivered += delivery.created + delivery.updated;
        counts.unchanged += delivery.unchanged;
        created += delivery.created;
        updated += delivery.updated;
        batches += delivery.batches;

        const advance = maxUpdated !== undefined && maxUpdated !== position;
        await store.commitPage({
          ledger: delivery.ledger,
          quarantine,
          ...(advance
            ? {
                checkpoint: {
                  flow,
                  stream,
                  position: maxUpdated as string,
                  definitionHash: options.definitionHash,
                  runId,
                  updatedAt: now().toISOString(),
                },
              }
            : {}),
        });
        if (advance) {
          position = maxUpdated;
          checkpoints[stream] = maxUpdated as string;
        }
        processed += page.records.length;
        progress.pageCommitted(stream, processed, page.total);
        log.debug(
          { stream, records: page.records.length, quarantined: quarantine.length, batches: delivery.batches },
          'page committed',
        );
      }
      progress.streamFinished(stream, processed);
    }
  } catch (err) {
    error = toSluiceError(err);
    log.error({ code: error.code, err: { message: error.message } }, 'run failed');
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
  const summary: RunSummary = {
    flow,
    runId,
    status: error ? 'failed' : 'succeeded',
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    durationMs: finished.getTime() - started.getTime(),
    ...total,
    created,
    updated,
    batches,
    byStream,
    quarantineReasons,
    withholdReasons,
    checkpoints,
    ...(error ? { error: { code: error.code, message: error.message, action: error.action } } : {}),
  };
  await store.finishRun({
    runId,
    finishedAt: summary.finishedAt,
    status: summary.status,
    summary: JSON.stringify(summary),
  });
  log.info(
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

async function assertDefinitionUnchanged(store: StateStore, flow: string, hash: string): Promise<void> {
  const stale = (await store.listCheckpoints(flow)).filter((c) => c.definitionHash !== hash);
  if (stale.length > 0) {
    throw new SluiceError(
      'STATE_DEFINITION_CHANGED',
      `Flow ${flow} changed since the checkpoints of stream(s) ${stale.map((c) => c.stream).join(', ')} were written.`,
      { details: { flow, streams: stale.map((c) => c.stream) } },
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
