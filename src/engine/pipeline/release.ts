import type { SystemName } from '../../core/model/ids.ts';
import type { Source, SourcePage } from '../../core/ports/source.ts';
import type { QuarantineEntry } from '../store/state-store.ts';

/**
 * A source of exactly one quarantined record, in its stream: `sluice quarantine release` runs it
 * through every stage again (validation, policy, consent, mapping, delivery), as a replay.
 */
export class QuarantinedRecordSource implements Source {
  readonly system: SystemName;
  readonly streams: readonly string[];
  readonly #entry: QuarantineEntry;
  readonly #payload: string;

  /** `payload`: the quarantined record (`StateStore.readQuarantinePayload`). */
  constructor(system: SystemName, entry: QuarantineEntry, payload: string) {
    this.system = system;
    this.streams = [entry.stream];
    this.#entry = entry;
    this.#payload = payload;
  }

  async *read(stream: string): AsyncGenerator<SourcePage> {
    if (stream !== this.#entry.stream) return;
    let resource: unknown;
    try {
      resource = JSON.parse(this.#payload);
    } catch {
      resource = this.#payload;
    }
    yield { records: [{ stream, resource, origin: `quarantine ${this.#entry.id} (${this.#entry.origin})` }] };
  }
}
