import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeAll } from 'vitest';
import { readResourceFile } from '../../src/adapters/files/resource-files.ts';
import { SluiceError } from '../../src/core/errors/index.ts';
import { loadR4Definitions } from '../../src/core/fhir/definitions.ts';
import type { JsonObject } from '../../src/core/fhir/resource.ts';
import type { TargetWrite } from '../../src/core/mapping/canonical-to-veeva.ts';
import { asCrmRecordId, type SystemName } from '../../src/core/model/ids.ts';
import { compileWithholdPolicy } from '../../src/core/policy/withhold.ts';
import type { Source, SourcePage } from '../../src/core/ports/source.ts';
import type { DeleteResult, Target, UpsertOptions, WriteResult } from '../../src/core/ports/target.ts';
import type { RecordStageContext } from '../../src/engine/pipeline/record-stages.ts';
import { SAMPLE_DATA_DIR } from '../../src/testkit/data.ts';

/** Real resources from the bundled sample, by type. */
export async function sampleResources(
  type: 'Patient' | 'Practitioner' | 'Organization',
  limit: number,
): Promise<JsonObject[]> {
  const file =
    type === 'Patient'
      ? join(SAMPLE_DATA_DIR, 'synthea', 'Abdul_Koepp_e925b0f3-8006-43f6-aa31-94bd215e55e7.json.gz')
      : join(SAMPLE_DATA_DIR, 'directory', `${type}.ndjson.gz`);
  const out: JsonObject[] = [];
  for await (const item of readResourceFile(file)) {
    if (item.kind === 'resource' && (item.resource as JsonObject).resourceType === type)
      out.push(item.resource as JsonObject);
    if (out.length >= limit) break;
  }
  return out;
}

/** Stamps resources with increasing `meta.lastUpdated`, as a server would. */
export function stamp(
  resources: readonly JsonObject[],
  startMs = Date.parse('2026-11-01T00:00:00Z'),
): JsonObject[] {
  return resources.map((r, i) => ({
    ...r,
    meta: { versionId: '1', lastUpdated: new Date(startMs + i * 1000).toISOString() },
  }));
}

/**
 * Sample patients (stamped from 2026-11-03) and practitioners (from 2026-11-02), loaded with the R4
 * definitions before the file's tests run.
 */
export function stampedSamples(counts: { readonly patients: number; readonly practitioners: number }): {
  patients: JsonObject[];
  practitioners: JsonObject[];
} {
  const samples = { patients: [] as JsonObject[], practitioners: [] as JsonObject[] };
  beforeAll(async () => {
    loadR4Definitions();
    samples.patients = stamp(
      await sampleResources('Patient', counts.patients),
      Date.parse('2026-11-03T00:00:00Z'),
    );
    samples.practitioners = stamp(
      await sampleResources('Practitioner', counts.practitioners),
      Date.parse('2026-11-02T00:00:00Z'),
    );
  });
  return samples;
}

/** Makes a fresh temporary directory per call; every one is removed after each test. */
export function tempDirs(prefix: string): () => string {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  return () => {
    const dir = mkdtempSync(join(tmpdir(), prefix));
    dirs.push(dir);
    return dir;
  };
}

/** A patient who is alive (no deceased element), under another id. */
export function living(p: JsonObject, id: string): JsonObject {
  const { deceasedDateTime: _d, deceasedBoolean: _b, ...rest } = p;
  return { ...rest, id };
}

/** A later version of a resource: `meta` moved on by `minutes`, with the changes given. */
export function version(
  resource: JsonObject,
  n: number,
  minutes: number,
  changes: JsonObject = {},
): JsonObject {
  const at = Date.parse(String((resource.meta as { lastUpdated: string }).lastUpdated));
  return {
    ...resource,
    ...changes,
    meta: { versionId: String(n), lastUpdated: new Date(at + minutes * 60_000).toISOString() },
  };
}

/**
 * An in-memory change source: records of each stream sorted by lastUpdated, served in pages of
 * `pageSize` from `since` (inclusive, like `_lastUpdated=ge`). `failAfterPages` simulates a crash.
 */
export class MemorySource implements Source {
  readonly system = 'epic' as SystemName;
  readonly streams: readonly string[];
  readonly #records: Map<string, unknown[]>;
  readonly #pageSize: number;
  failAfterPages: number | undefined;
  readonly reads: { stream: string; since: string | undefined }[] = [];

  constructor(records: Record<string, unknown[]>, pageSize = 3) {
    this.#records = new Map(Object.entries(records));
    this.streams = Object.keys(records);
    this.#pageSize = pageSize;
  }

  readonly fetched: string[] = [];

  async fetch(stream: string, ids: readonly string[]): Promise<SourcePage> {
    this.fetched.push(...ids.map((id) => `${stream}/${id}`));
    const all = this.#records.get(stream) ?? [];
    const records = all
      .filter((r) => ids.includes(String((r as { id?: unknown })?.id)))
      .map((resource) => ({ stream, resource, origin: `${stream} fetch` }));
    return { records };
  }

  async *read(stream: string, since: string | undefined, _signal?: AbortSignal): AsyncGenerator<SourcePage> {
    this.reads.push({ stream, since });
    const all = (this.#records.get(stream) ?? []).filter((r) => {
      const at = (r as { meta?: { lastUpdated?: string } })?.meta?.lastUpdated;
      // As a FHIR server does: as times, whatever zone either is written in.
      return since === undefined || at === undefined || Date.parse(at) >= Date.parse(since);
    });
    let served = 0;
    for (let i = 0; i < all.length; i += this.#pageSize) {
      if (this.failAfterPages !== undefined && served >= this.failAfterPages) {
        throw new SluiceError('SRC_UNREACHABLE', 'The test source went away.');
      }
      served++;
      yield {
        records: all
          .slice(i, i + this.#pageSize)
          .map((resource, j) => ({ stream, resource, origin: `${stream} page ${served} entry ${j}` })),
        total: all.length,
      };
    }
  }
}

type Behaviour = (write: TargetWrite) => WriteResult | undefined;

/** An in-memory CRM: upserts by external id; `behaviour` can answer some writes otherwise. */
export class MemoryTarget implements Target {
  readonly system = 'veeva';
  readonly maxBatchSize = 200;
  readonly records = new Map<string, { id: string; fields: TargetWrite['fields'] }>();
  readonly requests: { object: string; count: number }[] = [];
  behaviour: Behaviour = () => undefined;
  failRequests = 0;
  #next = 1;

  readonly batchesSeen: (readonly TargetWrite[])[] = [];

  async upsert(
    object: string,
    _field: string,
    writes: readonly TargetWrite[],
    _signal?: AbortSignal,
    options: UpsertOptions = {},
  ): Promise<WriteResult[]> {
    if (this.failRequests > 0) {
      this.failRequests--;
      throw new SluiceError('TGT_UNREACHABLE', 'The test target went away.');
    }
    this.requests.push({ object, count: writes.length });
    this.batchesSeen.push(writes);
    if (options.allOrNone) {
      const answers = writes.map((w) => this.behaviour(w));
      if (answers.some((a) => a?.status === 'rejected')) {
        // Rolled back: nothing written; the failing record says why, the others say rolled back.
        return answers.map((a) =>
          a?.status === 'rejected'
            ? a
            : {
                status: 'rejected',
                codes: ['ALL_OR_NONE_OPERATION_ROLLED_BACK'],
                fields: [],
                message: 'rolled back',
              },
        );
      }
    }
    return writes.map((w) => {
      const special = this.behaviour(w);
      if (special) return special;
      const key = `${object}|${w.externalId}`;
      const existing = this.records.get(key);
      if (existing) {
        existing.fields = w.fields;
        this.lastModified.set(existing.id, new Date().toISOString());
        return { status: 'updated', id: asCrmRecordId(existing.id) };
      }
      const id = `a0${String(this.#next++).padStart(16, '0')}`;
      this.records.set(key, { id, fields: w.fields });
      this.lastModified.set(id, new Date().toISOString());
      return { status: 'created', id: asCrmRecordId(id) };
    });
  }

  /** When each record was last written (by an upsert, or as a test sets it: an edit in the CRM). */
  readonly lastModified = new Map<string, string>();

  async inspect(object: string, ids: readonly string[]): Promise<Map<string, { lastModified: string }>> {
    this.requests.push({ object: `inspect ${object}`, count: ids.length });
    const live = new Map<string, { lastModified: string }>();
    for (const [key, record] of this.records) {
      if (key.startsWith(`${object}|`) && ids.includes(record.id))
        live.set(record.id, { lastModified: this.lastModified.get(record.id) ?? '' });
    }
    return live;
  }

  /** Target ids whose deletion is refused (a locked record), as a CRM answers it. */
  readonly locked = new Set<string>();

  /** The target id of the record of `object` with this external id. */
  idOf(object: string, externalId: string): string | undefined {
    return this.records.get(`${object}|${externalId}`)?.id;
  }

  async delete(ids: readonly string[]): Promise<DeleteResult[]> {
    this.requests.push({ object: 'delete', count: ids.length });
    return ids.map((id): DeleteResult => {
      if (this.locked.has(id)) return { status: 'rejected', codes: ['ENTITY_IS_LOCKED'] };
      const key = [...this.records.entries()].find(([, v]) => v.id === id)?.[0];
      if (key === undefined) return { status: 'missing' };
      this.records.delete(key);
      return { status: 'deleted' };
    });
  }

  count(object: string): number {
    return [...this.records.keys()].filter((k) => k.startsWith(`${object}|`)).length;
  }
}

/** A target that seals each request as the Veeva target does (the envelope over the records it carries). */
export class SealingTarget extends MemoryTarget {
  override async upsert(
    object: string,
    field: string,
    writes: readonly TargetWrite[],
    signal?: AbortSignal,
    options: UpsertOptions = {},
  ): Promise<WriteResult[]> {
    await options.seal?.(writes.map((w) => w.fields));
    return super.upsert(object, field, writes, signal, options);
  }
}

export function stageContext(
  overrides: Partial<Omit<RecordStageContext, 'asOf'>> = {},
): Omit<RecordStageContext, 'asOf'> {
  return {
    system: 'epic' as SystemName,
    validateFhir: true,
    withhold: compileWithholdPolicy([
      { resourceType: 'Patient', when: 'deceased.exists() and deceased != false', reason: 'deceased' },
    ]),
    pseudonymKey: { id: 'test-1', secret: new Uint8Array(32).fill(7) },
    restrictedZip3: new Set(['036']),
    veeva: {
      recordTypes: { hcp: 'HCP_RT', hco: 'HCO_RT' },
      patientProfileObject: 'Patient_Profile__c',
      lineageField: 'Sluice_Lineage__c',
    },
    ...overrides,
  };
}

export const silentLogger = pino({ level: 'silent' });
