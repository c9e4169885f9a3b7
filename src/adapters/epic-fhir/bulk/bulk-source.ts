import { SluiceError } from '../../../core/errors/index.ts';
import type { SystemName } from '../../../core/model/ids.ts';
import type {
  PlannedRead,
  Source,
  SourceDeletion,
  SourcePage,
  SourceRecord,
} from '../../../core/ports/source.ts';
import { type BulkExportClient, type ExportLevel, type ExportProgress, fileLabel } from './bulk-client.ts';
import { type BulkFile, type BulkManifest, deletedEntries, outcomeIssueCodes } from './manifest.ts';

export interface BulkSourceConfig {
  readonly system: SystemName;
  readonly client: BulkExportClient;
  /** Resource types to read, in order (parents first: Organization before Practitioner). */
  readonly resourceTypes: readonly string[];
  /** Records (plus deletions) per page. */
  readonly pageSize: number;
  /** Default system level. Patient and Group level export only Patient-compartment types. */
  readonly level?: ExportLevel;
  /**
   * What to do when the manifest lists `error` files: `note` (default) reports their issue codes as
   * page notes; `fail` stops the run with SRC_EXPORT_INCOMPLETE when any issue is an error or fatal,
   * so the checkpoint never moves past resources the server could not export.
   */
  readonly exportErrors?: 'note' | 'fail';
  /**
   * How many of the run's next planned reads have their export kicked off while one is read (default
   * 1; 0 runs one export at a time). With more, ahead of a short stream the ones after it are
   * prepared too.
   */
  readonly exportsAhead?: number;
  /** Called on each status poll while the server prepares the export. */
  readonly onProgress?: (stream: string, progress: ExportProgress) => void;
}

type MutablePage = { -readonly [K in keyof SourcePage]: SourcePage[K] };

/**
 * Change capture over Bulk Data `$export` (one export per stream: `_type=stream&_since=checkpoint`).
 * Records stream from the NDJSON files a page at a time; the `deleted` files become deletions; the
 * manifest's `transactionTime` is the checkpoint, given on the last page only, so a run that stops
 * mid-export repeats the export from the old checkpoint (the delivery ledger keeps that idempotent).
 */
export class BulkExportSource implements Source {
  readonly system: SystemName;
  readonly streams: readonly string[];
  /** Export files are not in change order: only the manifest's transactionTime may move a checkpoint. */
  readonly explicitCheckpoints = true;
  readonly #config: BulkSourceConfig;
  /** The run's planned reads, in order (see `plan`). */
  #plan: readonly PlannedRead[] = [];
  #planSignal: AbortSignal | undefined;
  /** Exports kicked off ahead of their read: key → status URL (undefined when the kick-off failed). */
  readonly #ahead = new Map<string, Promise<string | undefined>>();

  constructor(config: BulkSourceConfig) {
    if (!Number.isInteger(config.pageSize) || config.pageSize < 1) {
      throw new SluiceError('CFG_FLOW_INVALID', `The bulk source page size must be a positive integer.`);
    }
    this.#config = config;
    this.system = config.system;
    this.streams = config.resourceTypes;
  }

  /**
   * Remembers the run's reads: while one export is read, the next streams' exports are kicked off
   * (`exportsAhead`), so the server prepares them meanwhile instead of after.
   */
  plan(reads: readonly PlannedRead[], signal: AbortSignal): void {
    this.#plan = reads;
    this.#planSignal = signal;
  }

  /** Releases exports kicked off ahead and never read (a run that stopped early). */
  async close(): Promise<void> {
    const pending = [...this.#ahead.values()];
    this.#ahead.clear();
    this.#plan = [];
    for (const statusUrl of await Promise.all(pending)) {
      if (statusUrl !== undefined) await this.#config.client.release(statusUrl);
    }
  }

  async *read(stream: string, since: string | undefined, signal: AbortSignal): AsyncGenerator<SourcePage> {
    const { client } = this.#config;
    const key = planKey(stream, since);
    const ahead = this.#ahead.get(key);
    this.#ahead.delete(key);
    const statusUrl = (await ahead) ?? (await client.kickOff(this.#request(stream, since), signal));
    this.#kickOffNext(key);
    try {
      let last: ExportProgress | undefined;
      const manifest = await client.waitForManifest(statusUrl, signal, (progress) => {
        last = progress;
        this.#config.onProgress?.(stream, progress);
      });
      const notes: string[] = [];
      if (last) {
        const text = last.text === undefined ? '' : ` (last progress: ${last.text})`;
        notes.push(`bulk export was ready after ${last.polls + 1} status polls${text}`);
      }
      yield* this.#pages(stream, manifest, notes, signal);
    } finally {
      await client.release(statusUrl);
    }
  }

  #request(stream: string, since: string | undefined): Parameters<BulkExportClient['kickOff']>[0] {
    return {
      types: [stream],
      ...(this.#config.level ? { level: this.#config.level } : {}),
      ...(since === undefined ? {} : { since }),
    };
  }

  /** Kicks off the exports of the reads planned after `key` (up to `exportsAhead`) not under way yet. */
  #kickOffNext(key: string): void {
    const at = this.#plan.findIndex((r) => planKey(r.stream, r.since) === key);
    const signal = this.#planSignal;
    if (at < 0 || signal === undefined || signal.aborted) return;
    const ahead = this.#config.exportsAhead ?? 1;
    for (const next of this.#plan.slice(at + 1, at + 1 + ahead)) {
      const nextKey = planKey(next.stream, next.since);
      if (this.#ahead.has(nextKey)) continue;
      // A failed kick-off ahead is not an error yet: the read kicks off again and reports its own failure.
      this.#ahead.set(
        nextKey,
        this.#config.client.kickOff(this.#request(next.stream, next.since), signal).catch(() => undefined),
      );
    }
  }

  async *#pages(
    stream: string,
    manifest: BulkManifest,
    notes: string[],
    signal: AbortSignal,
  ): AsyncGenerator<SourcePage> {
    const { client, pageSize } = this.#config;
    notes.push(...(await this.#errorNotes(manifest, signal)));
    const files = manifest.output.filter((f) => f.type === stream);
    const others = manifest.output.length - files.length;
    if (others > 0) notes.push(`bulk export listed ${others} output file(s) of other types; ignored`);
    const total = files.every((f) => f.count !== undefined)
      ? files.reduce((sum, f) => sum + (f.count ?? 0), 0)
      : undefined;

    let records: SourceRecord[] = [];
    let deletions: SourceDeletion[] = [];
    // A full page is yielded only once the next item exists, so the last page is known when it is built.
    const take = (): SourcePage => {
      const page: MutablePage = { records };
      if (deletions.length > 0) page.deletions = deletions;
      if (total !== undefined) page.total = total;
      if (notes.length > 0) page.notes = notes.splice(0);
      records = [];
      deletions = [];
      return page;
    };

    for (const file of files) {
      const name = fileLabel(file.url);
      for await (const line of client.lines(file, manifest.requiresAccessToken, signal)) {
        if (records.length + deletions.length >= pageSize) yield take();
        records.push({
          stream,
          // A line that is not JSON goes on as its raw text: the pipeline quarantines it (REC_UNPARSEABLE).
          resource: line.kind === 'value' ? line.value : line.text,
          origin: `${name} line ${line.number}`,
        });
      }
    }

    let skipped = 0;
    let otherTypes = 0;
    for (const file of manifest.deleted) {
      const name = fileLabel(file.url);
      for await (const line of client.lines(file, manifest.requiresAccessToken, signal)) {
        if (line.kind !== 'value') {
          skipped++;
          continue;
        }
        const found = deletedEntries(line.value);
        skipped += found.skipped;
        for (const entry of found.entries) {
          if (entry.resourceType !== stream) {
            otherTypes++;
            continue;
          }
          if (records.length + deletions.length >= pageSize) yield take();
          deletions.push({ ...entry, origin: `${name} line ${line.number}` });
        }
      }
    }
    if (skipped > 0)
      notes.push(`bulk export deleted files: ${skipped} entr(ies) that are not a DELETE of Type/id skipped`);
    if (otherTypes > 0)
      notes.push(`bulk export deleted files: ${otherTypes} entr(ies) of other types ignored`);

    const last = take();
    yield { ...last, checkpoint: utcInstant(manifest.transactionTime) };
  }

  /** Reads the error files (OperationOutcomes) into one note of issue codes and counts; no text. */
  async #errorNotes(manifest: BulkManifest, signal: AbortSignal): Promise<string[]> {
    if (manifest.error.length === 0) return [];
    const counts = new Map<string, number>();
    for (const file of manifest.error) {
      for await (const line of this.#config.client.lines(file, manifest.requiresAccessToken, signal)) {
        const codes = line.kind === 'value' ? outcomeIssueCodes(line.value) : ['unreadable'];
        for (const code of codes) counts.set(code, (counts.get(code) ?? 0) + 1);
      }
    }
    const summary = [...counts]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([code, n]) => `${code} x${n}`)
      .join(', ');
    const serious = [...counts.keys()].filter((c) => c.startsWith('error:') || c.startsWith('fatal:'));
    if (this.#config.exportErrors === 'fail' && serious.length > 0) {
      throw new SluiceError(
        'SRC_EXPORT_INCOMPLETE',
        `The EHR reported errors for this bulk export (${summary}); the checkpoint was not advanced.`,
        { details: { files: manifest.error.length, issues: serious } },
      );
    }
    return [`bulk export error files (${errorFileNames(manifest.error)}): ${summary || 'empty'}`];
  }
}

function planKey(stream: string, since: string | undefined): string {
  return `${stream}\u0000${since ?? ''}`;
}

function errorFileNames(files: readonly BulkFile[]): string {
  const names = files.map((f) => fileLabel(f.url));
  return names.length > 3 ? `${names.slice(0, 3).join(', ')} and ${names.length - 3} more` : names.join(', ');
}

/**
 * The instant in UTC with milliseconds (`…T10:00:00.123Z`): the pipeline compares checkpoints as
 * strings, which only works in one format. Sub-millisecond digits are dropped, which moves the
 * checkpoint earlier, never later (a few resources may be exported again; the ledger skips them).
 */
function utcInstant(value: string): string {
  return new Date(Date.parse(value)).toISOString();
}
