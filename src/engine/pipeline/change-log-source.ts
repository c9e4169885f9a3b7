import type { SystemName } from '../../core/model/ids.ts';
import type { Source, SourcePage } from '../../core/ports/source.ts';
import type { StateStore } from '../store/state-store.ts';

/**
 * A source that reads the flow's own change log: the records it read before, as they were, from a
 * given instant. `sluice replay` runs the pipeline over it, so a window can be re-sent exactly as it
 * was read (idempotently: the delivery ledger skips what the target already has).
 */
export class ChangeLogSource implements Source {
  readonly system: SystemName;
  readonly streams: readonly string[];
  readonly #store: StateStore;
  readonly #flow: string;
  readonly #pageSize: number;

  constructor(options: {
    system: SystemName;
    streams: readonly string[];
    store: StateStore;
    flow: string;
    pageSize: number;
  }) {
    this.system = options.system;
    this.streams = options.streams;
    this.#store = options.store;
    this.#flow = options.flow;
    this.#pageSize = options.pageSize;
  }

  async *read(stream: string, since: string | undefined, signal: AbortSignal): AsyncGenerator<SourcePage> {
    let after = 0;
    while (true) {
      signal.throwIfAborted();
      const entries = await this.#store.readChangeLog(this.#flow, stream, since, after, this.#pageSize);
      if (entries.length === 0) return;
      after = entries.at(-1)?.seq ?? after;
      yield {
        records: entries.map((e) => ({
          stream,
          resource: parse(e.payload),
          origin: `change log #${e.seq} (${e.ref})`,
        })),
      };
    }
  }
}

function parse(payload: string): unknown {
  try {
    return JSON.parse(payload);
  } catch {
    return payload;
  }
}
