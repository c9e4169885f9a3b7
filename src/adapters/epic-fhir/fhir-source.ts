import type { SystemName } from '../../core/model/ids.ts';
import type { Source, SourcePage, SourceRecord } from '../../core/ports/source.ts';
import type { FhirClient } from './fhir-client.ts';

export interface FhirSourceConfig {
  readonly system: SystemName;
  readonly client: FhirClient;
  /** Resource types to read, in order (parents first: Organization before Practitioner). */
  readonly resourceTypes: readonly string[];
  readonly pageSize: number;
  /**
   * A complete search moves the checkpoint to the time the server answered its first page (its own
   * clock), not only to the newest record read: a quiet stream then stops re-reading its last burst
   * of changes every cycle. Default true; false where a proxy in front of the EHR stamps the answers
   * with a clock of its own.
   */
  readonly serverTimeCheckpoints?: boolean;
}

/**
 * Change capture over FHIR search: `Type?_lastUpdated=ge{since}&_sort=_lastUpdated&_count=N`, following
 * `next` links. Records at exactly `since` come again; the delivery ledger recognises them as unchanged.
 * The last page of a complete search carries, as its checkpoint, when the server answered the first:
 * every change committed before that instant was in the answer (late commits are what the flow's
 * overlap window re-reads).
 */
export class FhirSearchSource implements Source {
  readonly system: SystemName;
  readonly streams: readonly string[];
  readonly #config: FhirSourceConfig;

  constructor(config: FhirSourceConfig) {
    this.#config = config;
    this.system = config.system;
    this.streams = config.resourceTypes;
  }

  async fetch(stream: string, ids: readonly string[], signal: AbortSignal): Promise<SourcePage> {
    const records: SourceRecord[] = [];
    for (const id of ids) {
      try {
        const resource = await this.#config.client.read(stream, id, signal);
        records.push({ stream, resource, origin: `${stream} read (policy event)` });
      } catch (err) {
        // Gone (404/410) means nothing to reconsider; anything else fails the run like any read.
        const status = (err as { details?: { status?: number } }).details?.status;
        if (status !== 404 && status !== 410) throw err;
      }
    }
    return { records };
  }

  async *read(stream: string, since: string | undefined, signal: AbortSignal): AsyncGenerator<SourcePage> {
    const params: Record<string, string> = { _sort: '_lastUpdated', _count: String(this.#config.pageSize) };
    if (since !== undefined) params._lastUpdated = `ge${since}`;
    let pageNumber = 0;
    let firstAnsweredAt: string | undefined;
    for await (const page of this.#config.client.search(stream, params, signal)) {
      pageNumber++;
      if (pageNumber === 1) firstAnsweredAt = page.answeredAt;
      const records: SourceRecord[] = page.resources.map((resource, index) => ({
        stream,
        resource,
        origin: `${stream} search page ${pageNumber} entry ${index}`,
      }));
      const out: { -readonly [K in keyof SourcePage]: SourcePage[K] } = { records };
      if (page.total !== undefined) out.total = page.total;
      if (page.outcomes.length > 0)
        out.notes = page.outcomes.map((code) => `searchset OperationOutcome: ${code}`);
      if (page.last && firstAnsweredAt !== undefined && this.#config.serverTimeCheckpoints !== false) {
        out.checkpoint = firstAnsweredAt;
      }
      yield out;
    }
  }
}
