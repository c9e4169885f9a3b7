/**
 * `sluice ingest`: reads the EHR from the ingest checkpoints and publishes every record (and every
 * deletion the source reports) as a sealed change event on the flow's bus. A page's checkpoint moves
 * only once the bus has stored all of its events, so nothing read is lost: a crash repeats the page,
 * and the bus stores a repeated event once (its id is the record and version). Nothing is judged
 * here — validation, consent and policy run where the events are read, in `sluice run`.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { EventBus } from '../../adapters/nats-bus/event-bus.ts';
import { isSluiceError, SluiceError, toSluiceError } from '../../core/errors/index.ts';
import { DEFAULT_CLOCK_SKEW_SECONDS, instantMs, isEarlierStamp } from '../../core/fhir/instant.ts';
import { isJsonObject, str } from '../../core/fhir/resource.ts';
import type { Source, SourcePage } from '../../core/ports/source.ts';
import type { AuditPurpose } from '../audit/entry.ts';
import type { AuditLog } from '../audit/index.ts';
import { NO_PROGRESS, type ProgressSink } from '../pipeline/progress.ts';
import type { PayloadKey } from '../store/payload-cipher.ts';
import type { StateStore } from '../store/state-store.ts';
import { deletionEvent, recordEvent } from './events.ts';

/** The state key of a flow's ingest checkpoints, apart from the pipeline's own. */
export const ingestStateKey = (flow: string): string => `${flow}@ingest`;

export interface IngestOptions {
  readonly flow: string;
  readonly definitionHash: string;
  /** The EHR's base URL: checkpoints taken against another EHR are not reused. */
  readonly sourceUrl: string;
  readonly source: Source;
  readonly bus: EventBus;
  readonly key: PayloadKey;
  readonly store: StateStore;
  readonly overlapSeconds?: number;
  readonly clockSkewSeconds?: number;
  /** Forget the ingest checkpoints first and read everything again (the bus stores repeats once). */
  readonly reset?: boolean;
  readonly logger: Logger;
  readonly signal?: AbortSignal;
  readonly now?: () => Date;
  /** Progress per stream: records read onto the bus so far (the CLI draws a bar on a terminal). */
  readonly progress?: ProgressSink;
  /**
   * The flow's audit trail: a run that put events on the bus (or failed) is recorded as one `receive`
   * entry — what was read from the EHR onto the bus, in counts, and the run's id.
   */
  readonly audit?: Pick<AuditLog, 'append'>;
  readonly purpose?: AuditPurpose;
}

export interface IngestStreamCounts {
  read: number;
  deletions: number;
  published: number;
  /** Events the bus already held (read again in the overlap window, or a page repeated). */
  duplicates: number;
}

export interface IngestSummary {
  readonly flow: string;
  readonly runId: string;
  readonly status: 'succeeded' | 'failed';
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly read: number;
  readonly published: number;
  readonly duplicates: number;
  readonly deletions: number;
  readonly bus: string;
  readonly byStream: Record<string, IngestStreamCounts>;
  readonly checkpoints: Record<string, string>;
  /** Nothing new: every event read was on the bus already. */
  readonly idle?: true;
  readonly error?: { readonly code: string; readonly message: string };
}

export async function ingestFlow(options: IngestOptions): Promise<IngestSummary> {
  const now = options.now ?? (() => new Date());
  const started = now();
  const runId = randomUUID();
  const signal = options.signal ?? new AbortController().signal;
  const stateKey = ingestStateKey(options.flow);
  const environment = createHash('sha256').update(options.sourceUrl).digest('hex').slice(0, 16);
  const overlapMs = (options.overlapSeconds ?? 0) * 1000;
  const latestAllowedMs = started.getTime() + (options.clockSkewSeconds ?? DEFAULT_CLOCK_SKEW_SECONDS) * 1000;
  const log = options.logger.child({ flow: options.flow, runId, role: 'ingest' });
  const progress = options.progress ?? NO_PROGRESS;
  const byStream: Record<string, IngestStreamCounts> = {};
  const checkpoints: Record<string, string> = {};
  let error: SluiceError | undefined;
  try {
    if (options.reset) {
      const removed = await options.store.deleteCheckpoints(stateKey);
      log.info({ removed }, 'ingest checkpoints reset');
    }
    // Ingest checkpoints keep, as their cursor, the creation instant of the stream they published into:
    // into a stream deleted and created again (or another one the flow file names) this ingest would
    // publish only what changed, and a run would never see what the lost stream held that it had not read.
    const { created } = await options.bus.extent();
    const starts = new Map<string, string | undefined>();
    for (const stream of options.source.streams) {
      const checkpoint = await options.store.getCheckpoint(stateKey, stream);
      if (checkpoint?.cursor !== undefined && created !== undefined && checkpoint.cursor !== created) {
        throw new SluiceError(
          'BUS_STREAM_REPLACED',
          `The bus ${options.bus.stream} is not the stream this flow's ingest published ${stream} events into (it was deleted and created again, or the flow file names another stream): the events it held are not in this one.`,
          { details: { stream: options.bus.stream, type: stream, created } },
        );
      }
      if (checkpoint && checkpoint.environment !== environment) {
        throw new SluiceError(
          'STATE_ENVIRONMENT_CHANGED',
          `Flow ${options.flow} now reads another EHR than its ingest checkpoint of ${stream} was taken against; \`sluice ingest --reset\` reads the new one from the start.`,
          { details: { flow: options.flow, stream } },
        );
      }
      starts.set(stream, checkpoint?.position);
      if (checkpoint) checkpoints[stream] = checkpoint.position;
    }
    const readFrom = (position: string | undefined): string | undefined =>
      position === undefined || overlapMs === 0
        ? position
        : new Date(Date.parse(position) - overlapMs).toISOString();
    options.source.plan?.(
      options.source.streams.map((stream) => ({ stream, since: readFrom(starts.get(stream)) })),
      signal,
    );
    for (const stream of options.source.streams) {
      const counts: IngestStreamCounts = { read: 0, deletions: 0, published: 0, duplicates: 0 };
      byStream[stream] = counts;
      let position = starts.get(stream);
      progress.streamStarted(stream);
      // A read from no checkpoint publishes every record of the type after a mark on the bus: a run
      // that fell behind the stream's age limit may read on past what was discarded before the mark.
      // After `--reset` (the recovery from such a gap) each event is also named by this ingest, so the
      // bus stores it even if it stored the same version minutes ago and has since discarded it (a
      // purge); the next ingest publishes the records at its checkpoint once more under their own names.
      const snapshot = position === undefined ? runId : undefined;
      const salt = options.reset === true ? snapshot : undefined;
      let marked = false;
      for await (const page of options.source.read(stream, readFrom(position), signal)) {
        const events = [
          ...page.records.map((r) => recordEvent(options.key, options.flow, r, salt)),
          ...(page.deletions ?? []).map((d) => deletionEvent(options.key, options.flow, stream, d, salt)),
        ];
        if (snapshot !== undefined && !marked && events.length > 0) {
          await options.bus.markSnapshot(stream, snapshot, now().toISOString());
          marked = true;
        }
        counts.read += page.records.length;
        counts.deletions += page.deletions?.length ?? 0;
        const stored = await options.bus.publish(stream, events, signal);
        counts.published += stored.stored;
        counts.duplicates += stored.duplicates;
        const next = nextPosition(page, options.source.explicitCheckpoints === true, latestAllowedMs);
        if (next !== undefined && (position === undefined || isEarlierStamp(position, next))) {
          position = next;
          await options.store.commitPage({
            ledger: [],
            quarantine: [],
            checkpoint: {
              flow: stateKey,
              stream,
              position,
              definitionHash: options.definitionHash,
              environment,
              runId,
              updatedAt: now().toISOString(),
              ...(created === undefined ? {} : { cursor: created }),
            },
          });
          checkpoints[stream] = position;
        }
        progress.pageCommitted(stream, counts.read, page.total);
      }
      progress.streamFinished(stream, counts.read);
    }
  } catch (err) {
    error = isSluiceError(err) ? err : toSluiceError(err, 'BUS_UNAVAILABLE');
    log.error({ code: error.code }, 'ingest failed');
  } finally {
    await options.source.close?.().catch(() => undefined);
  }
  const total = (key: keyof IngestStreamCounts): number =>
    Object.values(byStream).reduce((n, c) => n + c[key], 0);
  const published = total('published');
  const read = total('read');
  if (options.audit && (published > 0 || error)) {
    await options.audit.append([
      {
        kind: 'receive',
        flow: options.flow,
        runId,
        ...(options.purpose ? { purpose: options.purpose } : {}),
        outcome: error ? 'serious-failure' : 'success',
        reason: error ? error.code : 'bus-ingest',
        details: {
          bus: options.bus.stream,
          read,
          published,
          duplicates: total('duplicates'),
          deletions: total('deletions'),
        },
      },
    ]);
  }
  return {
    flow: options.flow,
    runId,
    status: error ? 'failed' : 'succeeded',
    startedAt: started.toISOString(),
    finishedAt: now().toISOString(),
    read,
    published,
    duplicates: total('duplicates'),
    deletions: total('deletions'),
    bus: options.bus.stream,
    byStream,
    checkpoints,
    ...(error === undefined && published === 0 ? { idle: true as const } : {}),
    ...(error ? { error: { code: error.code, message: error.message } } : {}),
  };
}

/**
 * Where a page lets the ingest checkpoint move: the source's own position for a source whose records
 * are not in change order (a bulk export), else the later of the position the source gives (when not
 * beyond the clock-skew allowance) and the newest record stamp within it. A stamp further ahead is
 * clock skew: the record is published (the pipeline quarantines it) but never moves the checkpoint.
 */
export function nextPosition(
  page: SourcePage,
  explicit: boolean,
  latestAllowedMs: number,
): string | undefined {
  if (explicit) return page.checkpoint;
  let best: string | undefined;
  let bestMs = Number.NEGATIVE_INFINITY;
  const consider = (stamp: string | undefined): void => {
    const ms = instantMs(stamp);
    if (stamp === undefined || ms === undefined || ms > latestAllowedMs || ms <= bestMs) return;
    best = stamp;
    bestMs = ms;
  };
  consider(page.checkpoint);
  for (const record of page.records) {
    const meta = isJsonObject(record.resource) ? record.resource.meta : undefined;
    consider(isJsonObject(meta) ? str(meta.lastUpdated) : undefined);
  }
  return best === undefined ? undefined : new Date(bestMs).toISOString();
}
