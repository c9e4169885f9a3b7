/**
 * The pipeline's source when the flow has an event bus: the change events `sluice ingest` published,
 * read in order per resource type from the run's checkpoints. A checkpoint is the time the bus stored
 * the last event of a committed page (`explicitCheckpoints`): reading again from it repeats at most the
 * events of that instant, which the pipeline skips as versions already processed. Records are read by
 * id (consent changes, repair) from the EHR itself, through `fetcher`.
 */
import type { EventBus } from '../../adapters/nats-bus/event-bus.ts';
import type { SystemName } from '../../core/model/ids.ts';
import type { Source, SourceDeletion, SourcePage, SourceRecord } from '../../core/ports/source.ts';
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

  async *read(stream: string, since: string | undefined, signal: AbortSignal): AsyncGenerator<SourcePage> {
    for await (const events of this.#bus.read(stream, since, this.#pageSize, signal)) {
      const records: SourceRecord[] = [];
      const deletions: SourceDeletion[] = [];
      for (const event of events) {
        const opened = openEvent(this.#key, this.#bus.flow, stream, this.#bus.stream, event);
        if (opened.kind === 'record') records.push(opened.record);
        else deletions.push(opened.deletion);
      }
      yield {
        records,
        ...(deletions.length > 0 ? { deletions } : {}),
        checkpoint: events.at(-1)?.storedAt as string,
      };
    }
  }
}
