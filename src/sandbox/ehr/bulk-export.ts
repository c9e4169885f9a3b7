import { randomUUID } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { Resource } from '@medplum/fhirtypes';
import type { ExportLevel } from './bulk-params.ts';
import type { PatientCompartment } from './compartment.ts';
import type { SandboxRepository } from './repository.ts';

/**
 * Bulk Data export jobs. A job scans the repository type by type as of its kick-off instant
 * (`transactionTime`), writes NDJSON files into a temporary folder (streamed, split every
 * `maxResourcesPerFile` resources), yields to the event loop between chunks, and ends with a manifest.
 */

export interface ExportJobRequest {
  readonly level: ExportLevel;
  /** Types to export (already checked against the token's scopes). */
  readonly types: readonly string[];
  readonly since?: { readonly iso: string; readonly ms: number };
  readonly transactionTime: Date;
  /** The kick-off URL, echoed in the manifest. */
  readonly requestUrl: string;
  readonly clientId: string;
  /** Group-level: the Group's member patients. */
  readonly groupPatientIds?: ReadonlySet<string>;
}

export interface ManifestFile {
  readonly type: string;
  readonly url: string;
  readonly count: number;
}

export interface ExportManifest {
  readonly transactionTime: string;
  readonly request: string;
  readonly requiresAccessToken: true;
  readonly output: readonly ManifestFile[];
  readonly deleted: readonly ManifestFile[];
  readonly error: readonly ManifestFile[];
}

export type ExportJobState =
  | { readonly kind: 'running'; readonly scanned: number; readonly total: number }
  | { readonly kind: 'completed'; readonly manifest: ExportManifest }
  | { readonly kind: 'failed'; readonly message: string };

export interface ExportJob {
  readonly id: string;
  readonly clientId: string;
  readonly state: ExportJobState;
}

export interface BulkExportOptions {
  /** Resources per NDJSON file before a type's output is split into another file (default 10,000). */
  readonly maxResourcesPerFile?: number;
  /** Resources scanned between yields to the event loop (default 500). */
  readonly chunkSize?: number;
  /** Awaited before each chunk; tests use it to hold a job in the running state. */
  readonly beforeChunk?: (job: { readonly id: string; readonly scanned: number }) => Promise<void> | void;
}

interface JobRecord {
  readonly id: string;
  readonly clientId: string;
  readonly request: ExportJobRequest;
  state: ExportJobState;
  /** File name → path, once completed. */
  readonly files: Map<string, string>;
  dir?: string;
  cancelled: boolean;
}

/** Entries per Bundle line in the `deleted` file. */
const DELETED_PER_BUNDLE = 1000;

export class BulkExportManager {
  readonly #repo: SandboxRepository;
  readonly #compartment: PatientCompartment;
  readonly #fileUrl: (jobId: string, name: string) => string;
  readonly #maxPerFile: number;
  readonly #chunkSize: number;
  readonly #beforeChunk: BulkExportOptions['beforeChunk'];
  readonly #jobs = new Map<string, JobRecord>();
  readonly #running = new Set<Promise<void>>();
  #root: Promise<string> | undefined;
  #closed = false;

  constructor(
    repo: SandboxRepository,
    compartment: PatientCompartment,
    fileUrl: (jobId: string, name: string) => string,
    options: BulkExportOptions = {},
  ) {
    this.#repo = repo;
    this.#compartment = compartment;
    this.#fileUrl = fileUrl;
    this.#maxPerFile = Math.max(1, Math.floor(options.maxResourcesPerFile ?? 10_000));
    this.#chunkSize = Math.max(1, Math.floor(options.chunkSize ?? 500));
    this.#beforeChunk = options.beforeChunk;
  }

  /** Starts a job; it runs in the background. */
  start(request: ExportJobRequest): ExportJob {
    const job: JobRecord = {
      id: randomUUID(),
      clientId: request.clientId,
      request,
      state: { kind: 'running', scanned: 0, total: 0 },
      files: new Map(),
      cancelled: false,
    };
    this.#jobs.set(job.id, job);
    const run = this.#run(job).finally(() => this.#running.delete(run));
    this.#running.add(run);
    return job;
  }

  get(id: string): ExportJob | undefined {
    return this.#jobs.get(id);
  }

  /** The path of a completed job's output file, if it has one by that name. */
  filePath(jobId: string, name: string): string | undefined {
    const job = this.#jobs.get(jobId);
    return job?.state.kind === 'completed' ? job.files.get(name) : undefined;
  }

  /** Cancels a running job or deletes a finished one (and its files). */
  async cancel(id: string): Promise<boolean> {
    const job = this.#jobs.get(id);
    if (!job) return false;
    this.#jobs.delete(id);
    job.cancelled = true;
    if (job.state.kind !== 'running') await this.#removeFiles(job);
    return true;
  }

  /** Cancels every job, waits for them to stop and removes all files. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const job of this.#jobs.values()) job.cancelled = true;
    this.#jobs.clear();
    await Promise.allSettled([...this.#running]);
    const root = this.#root;
    if (root !== undefined) await rm(await root, { recursive: true, force: true }).catch(() => undefined);
  }

  async #run(job: JobRecord): Promise<void> {
    try {
      await yieldToEventLoop();
      this.#root ??= mkdtemp(join(tmpdir(), 'sluice-ehr-export-'));
      const root = await this.#root;
      job.dir = join(root, job.id);
      await mkdir(job.dir);
      const manifest = await this.#export(job, job.dir);
      if (manifest) job.state = { kind: 'completed', manifest };
    } catch (err) {
      job.state = { kind: 'failed', message: `The export failed: ${(err as Error).message}` };
    }
    if (job.cancelled || this.#closed) await this.#removeFiles(job);
  }

  async #export(job: JobRecord, dir: string): Promise<ExportManifest | undefined> {
    const { request } = job;
    const atMs = request.transactionTime.getTime();
    const sinceMs = request.since?.ms;
    const patients = await this.#patientsFor(request, atMs);
    const types = request.types.filter((type) => patients === undefined || this.#compartment.has(type));
    const total = types.reduce((sum, type) => sum + this.#repo.recordCount(type), 0);
    let scanned = 0;
    job.state = { kind: 'running', scanned, total };

    const inScope = (resource: Resource): boolean =>
      patients === undefined || this.#compartment.isInAny(resource, patients);

    const output: ManifestFile[] = [];
    const deleted: { type: string; id: string }[] = [];
    for (const type of types) {
      const writer = new NdjsonWriter(dir, type, this.#maxPerFile);
      try {
        const ids = this.#repo.recordedIds(type);
        for (const [index, id] of ids.entries()) {
          if (index % this.#chunkSize === 0) {
            await yieldToEventLoop();
            await this.#beforeChunk?.({ id: job.id, scanned });
            if (job.cancelled || this.#closed) return undefined;
          }
          scanned++;
          const state = await this.#repo.versionAt(type, id, atMs);
          if (state?.kind === 'present') {
            if (sinceMs !== undefined && state.lastUpdatedMs <= sinceMs) continue;
            if (!inScope(state.resource)) continue;
            await writer.write(JSON.stringify(state.resource));
          } else if (state?.kind === 'deleted') {
            if (sinceMs === undefined || state.deletedAtMs <= sinceMs) continue;
            if (patients !== undefined && !(state.last && inScope(state.last))) continue;
            deleted.push({ type, id });
          }
          if (scanned % 100 === 0) job.state = { kind: 'running', scanned, total };
        }
      } finally {
        await writer.close();
      }
      for (const file of writer.files) {
        job.files.set(file.name, file.path);
        output.push({ type, url: this.#fileUrl(job.id, file.name), count: file.count });
      }
    }

    const deletedFiles: ManifestFile[] = [];
    if (deleted.length > 0) {
      const writer = new NdjsonWriter(dir, 'deleted', Number.MAX_SAFE_INTEGER);
      try {
        for (let start = 0; start < deleted.length; start += DELETED_PER_BUNDLE) {
          const entry = deleted.slice(start, start + DELETED_PER_BUNDLE).map(({ type, id }) => ({
            request: { method: 'DELETE', url: `${type}/${id}` },
          }));
          await writer.write(JSON.stringify({ resourceType: 'Bundle', type: 'transaction', entry }));
        }
      } finally {
        await writer.close();
      }
      for (const file of writer.files) {
        job.files.set(file.name, file.path);
        deletedFiles.push({ type: 'Bundle', url: this.#fileUrl(job.id, file.name), count: file.count });
      }
    }

    if (job.cancelled || this.#closed) return undefined;
    return {
      transactionTime: request.transactionTime.toISOString(),
      request: request.requestUrl,
      requiresAccessToken: true,
      output,
      deleted: deletedFiles,
      error: [],
    };
  }

  /** Patient-level: every patient present at the kick-off instant; group-level: the group's members; system: undefined. */
  async #patientsFor(request: ExportJobRequest, atMs: number): Promise<ReadonlySet<string> | undefined> {
    switch (request.level.kind) {
      case 'system':
        return undefined;
      case 'group':
        return request.groupPatientIds ?? new Set();
      case 'patient': {
        const ids = new Set<string>();
        for (const id of this.#repo.recordedIds('Patient')) {
          if ((await this.#repo.versionAt('Patient', id, atMs))?.kind === 'present') ids.add(id);
        }
        return ids;
      }
    }
  }

  async #removeFiles(job: JobRecord): Promise<void> {
    job.files.clear();
    if (job.dir) await rm(job.dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** Writes NDJSON lines for one type, opening `Type-1.ndjson`, `Type-2.ndjson`, … as files fill up. */
class NdjsonWriter {
  readonly files: { name: string; path: string; count: number }[] = [];
  readonly #dir: string;
  readonly #prefix: string;
  readonly #max: number;
  #stream: WriteStream | undefined;
  #error: Error | undefined;

  constructor(dir: string, prefix: string, max: number) {
    this.#dir = dir;
    this.#prefix = prefix;
    this.#max = max;
  }

  async write(line: string): Promise<void> {
    let current = this.files.at(-1);
    if (!this.#stream || !current || current.count >= this.#max) {
      await this.#closeStream();
      const name = `${this.#prefix}-${this.files.length + 1}.ndjson`;
      current = { name, path: join(this.#dir, name), count: 0 };
      this.files.push(current);
      this.#stream = createWriteStream(current.path);
      this.#stream.on('error', (err) => {
        this.#error = err;
      });
    }
    if (this.#error) throw this.#error;
    current.count++;
    if (!this.#stream.write(`${line}\n`)) {
      const stream = this.#stream;
      await new Promise<void>((resolve) => {
        const done = (): void => {
          stream.off('drain', done);
          stream.off('error', done);
          resolve();
        };
        stream.once('drain', done);
        stream.once('error', done);
      });
      if (this.#error) throw this.#error;
    }
  }

  async close(): Promise<void> {
    await this.#closeStream();
  }

  async #closeStream(): Promise<void> {
    const stream = this.#stream;
    this.#stream = undefined;
    if (!stream) return;
    stream.end();
    await finished(stream);
  }
}
