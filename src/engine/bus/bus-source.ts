/**
 * The pipeline's source when the flow has an event bus: the change events `sluice ingest` published,
 * read in order per resource type from the run's checkpoints. A checkpoint keeps the stream sequence
 * every event of the type was read up to (its `cursor`; the next read starts after it) and the time the
 * bus stored the last event of a committed page (`explicitCheckpoints`). Before reading, the source
 * makes sure the stream still holds every event past the cursor: a run that fell further behind than
 * the stream's age limit stops with BUS_EVENTS_EXPIRED instead of passing over events it never saw.
 * The cursor also names the stream it was read on (its creation instant): a stream deleted and created
 * again under the name, or another stream the flow file now names, starts its sequences over, and a
 * run reading on from its old sequence would pass over everything published into it. Such a run reads
 * the new stream from its beginning when a snapshot there covers every record of the type, and stops
 * with BUS_STREAM_REPLACED otherwise.
 * Records are read by id (consent changes, repair) from the EHR itself, through `fetcher`.
 */
import type { EventBus, StoredEvent, StreamExtent } from '../../adapters/nats-bus/event-bus.ts';
import { SluiceError } from '../../core/errors/index.ts';
import type { SystemName } from '../../core/model/ids.ts';
import type {
  Source,
  SourceDeletion,
  SourcePage,
  SourceRecord,
  SourceResume,
} from '../../core/ports/source.ts';
import type { PayloadKey } from '../store/payload-cipher.ts';
import { openEvent } from './events.ts';

export class BusSource implements Source {
  readonly system: SystemName;
  readonly streams: readonly string[];
  readonly explicitCheckpoints = true;
  readonly #bus: EventBus;
  readonly #key: PayloadKey;
  readonly #pageSize: number;

  constructor(options: {
    readonly system: SystemName;
    readonly streams: readonly string[];
    readonly bus: EventBus;
    readonly key: PayloadKey;
    readonly pageSize: number;
    /** Reads named records at the source (the EHR), which the bus does not answer. */
    readonly fetcher: Pick<Source, 'fetch'>;
  }) {
    this.system = options.system;
    this.streams = options.streams;
    this.#bus = options.bus;
    this.#key = options.key;
    this.#pageSize = options.pageSize;
    if (options.fetcher.fetch) this.fetch = options.fetcher.fetch.bind(options.fetcher);
  }

  /** Named records, read at the EHR (absent when it cannot read by id). */
  readonly fetch?: Source['fetch'];

  async *read(
    stream: string,
    since: string | undefined,
    signal: AbortSignal,
    resume?: SourceResume,
  ): AsyncGenerator<SourcePage> {
    // What the stream holds before this type's last event is looked up: every event of the type up to
    // the stream's last sequence now is then read by the end of this read.
    const extent = await this.#bus.extent();
    const start = await readStart(this.#bus, stream, { cursor: resume?.cursor, since }, extent);
    if (start === 'replaced') throw this.#replaced(stream, extent);
    const { cursor, since: from } = start;
    await this.#assertHeld(stream, start, extent);
    const cursorAt = (seq: number): string => formatBusCursor(seq, extent.created);
    let readUpTo = cursor ?? 0;
    let at = from;
    for await (const events of this.#bus.read(
      stream,
      cursor === undefined ? { ...(from === undefined ? {} : { since: from }) } : { afterSeq: cursor },
      this.#pageSize,
      signal,
    )) {
      const records: SourceRecord[] = [];
      const deletions: SourceDeletion[] = [];
      for (const event of events) {
        const opened = openEvent(this.#key, this.#bus.flow, stream, this.#bus.stream, event);
        if (opened.kind === 'record') records.push(opened.record);
        else deletions.push(opened.deletion);
      }
      // Events discarded while the read went on (a run just within the age limit) would be skipped by
      // the consumer: whether the stream still held everything past the previous page is checked after
      // the fetch, and a page that may have a hole is not passed on.
      if (cursor !== undefined || from === undefined)
        await this.#assertHeld(stream, { cursor: readUpTo, since: undefined }, await this.#bus.extent());
      const last = events.at(-1) as StoredEvent;
      readUpTo = last.seq;
      at = last.storedAt;
      yield {
        records,
        ...(deletions.length > 0 ? { deletions } : {}),
        checkpoint: at,
        cursor: cursorAt(readUpTo),
      };
    }
    // Every event of this type up to the stream's last sequence at the start is read: the cursor moves
    // there, so events of other types discarded later are not taken for events of this one.
    if (extent.lastSeq > readUpTo) {
      const checkpoint = laterOf(at, extent.lastTs);
      if (checkpoint !== undefined) yield { records: [], checkpoint, cursor: cursorAt(extent.lastSeq) };
    }
  }

  #replaced(stream: string, extent: StreamExtent): SluiceError {
    return new SluiceError(
      'BUS_STREAM_REPLACED',
      `The bus ${this.#bus.stream} is not the stream this flow read ${stream} events from (it was deleted and created again, or the flow file names another stream): it holds none of the events this flow had not read.`,
      {
        details: {
          stream: this.#bus.stream,
          type: stream,
          lastSeq: extent.lastSeq,
          ...(extent.created === undefined ? {} : { created: extent.created }),
        },
      },
    );
  }

  /** Throws BUS_EVENTS_EXPIRED when the stream may have discarded events past where the reader stands. */
  async #assertHeld(
    stream: string,
    reader: { readonly cursor: number | undefined; readonly since: string | undefined },
    extent: StreamExtent,
  ): Promise<void> {
    if (!(await eventsExpired(this.#bus, stream, reader, extent))) return;
    const { cursor } = reader;
    throw new SluiceError(
      'BUS_EVENTS_EXPIRED',
      `The bus ${this.#bus.stream} no longer holds events of ${stream} this flow had not read: the stream discarded everything before event #${extent.firstSeq}${cursor === undefined ? '' : `, and the flow had read up to #${cursor}`}.`,
      {
        details: {
          stream: this.#bus.stream,
          type: stream,
          firstHeld: extent.firstSeq,
          ...(extent.firstTs === undefined ? {} : { firstHeldAt: extent.firstTs }),
          ...(cursor === undefined ? {} : { readUpTo: cursor }),
        },
      },
    );
  }
}

/**
 * Whether events a reader had not read may be gone: the stream discarded events (its age limit) past
 * where the reader stands: the sequence it read up to, or the beginning when it never read. A snapshot
 * marker still held clears it:
 * every record of the type was published after the marker, so what was discarded before is superseded.
 */
export function eventsLost(
  reader: { readonly cursor: number | undefined; readonly since: string | undefined },
  extent: StreamExtent,
  snapshotSeq: number | undefined,
): boolean {
  if (extent.firstSeq <= 1 || snapshotSeq !== undefined) return false;
  if (reader.cursor !== undefined) return extent.firstSeq > reader.cursor + 1;
  // A time alone (a checkpoint written before cursors were kept, a send-time re-read of consents) says
  // nothing about sequences: the first event held being newer is also what an idle stream looks like.
  // The run's next commit stores a cursor.
  return reader.since === undefined;
}

/**
 * Where a read of a type starts, from a checkpoint's cursor and position: after the cursor's sequence,
 * or from the position's time; from the beginning when the cursor was read on another stream and a
 * snapshot in this one covers every record of the type (all of them were published after its marker);
 * `replaced` when no snapshot does (the read must stop: BUS_STREAM_REPLACED).
 */
export async function readStart(
  bus: Pick<EventBus, 'snapshotSeq'>,
  type: string,
  checkpoint: { readonly cursor: string | undefined; readonly since: string | undefined },
  extent: StreamExtent,
): Promise<{ readonly cursor: number | undefined; readonly since: string | undefined } | 'replaced'> {
  const resumed = parseBusCursor(checkpoint.cursor);
  if (!streamReplaced(resumed, extent)) return { cursor: resumed?.seq, since: checkpoint.since };
  return (await bus.snapshotSeq(type)) === undefined ? 'replaced' : { cursor: undefined, since: undefined };
}

/**
 * Whether the bus may have discarded events of a type past where the reader stands (`eventsLost`),
 * its snapshot marker looked up only when the extent alone says events may be gone.
 */
export async function eventsExpired(
  bus: Pick<EventBus, 'snapshotSeq'>,
  type: string,
  reader: { readonly cursor: number | undefined; readonly since: string | undefined },
  extent: StreamExtent,
): Promise<boolean> {
  return eventsLost(reader, extent, undefined) && eventsLost(reader, extent, await bus.snapshotSeq(type));
}

/** Where a reader stands on the bus: the stream sequence it read up to, on which stream. */
export interface BusCursor {
  readonly seq: number;
  /** The creation instant of the stream the sequence was read on (absent in cursors kept before). */
  readonly stream?: string;
}

/** A checkpoint's cursor (`SEQ@CREATED`, or `SEQ` as kept before streams were named); undefined if none. */
export function parseBusCursor(cursor: string | undefined): BusCursor | undefined {
  const match = cursor === undefined ? null : /^(\d+)(?:@(.+))?$/.exec(cursor);
  if (match === null) return undefined;
  const seq = Number(match[1]);
  if (!Number.isSafeInteger(seq)) return undefined;
  return match[2] === undefined ? { seq } : { seq, stream: match[2] };
}

export function formatBusCursor(seq: number, created: string | undefined): string {
  return created === undefined ? String(seq) : `${seq}@${created}`;
}

/**
 * Whether a cursor was read on another stream than the one under the name now (deleted and created
 * again, or another one named): its creation instant differs, or it stands past the last sequence the
 * stream ever stored (which only grows).
 */
export function streamReplaced(cursor: BusCursor | undefined, extent: StreamExtent): boolean {
  if (cursor === undefined) return false;
  if (cursor.stream !== undefined && extent.created !== undefined && cursor.stream !== extent.created)
    return true;
  return cursor.seq > extent.lastSeq;
}

function laterOf(a: string | undefined, b: string | undefined): string | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Date.parse(b) > Date.parse(a) ? b : a;
}
