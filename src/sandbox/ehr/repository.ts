import {
  badRequest,
  deepClone,
  deepEquals,
  type Filter,
  gone,
  notFound,
  OperationOutcomeError,
  Operator,
  preconditionFailed,
  type SearchRequest,
  type SortRule,
  toPeriod,
  type WithId,
} from '@medplum/core';
import {
  type CreateResourceOptions,
  type DeleteResourceOptions,
  FhirRepository,
  getExtraEntries,
  MemoryRepository,
  type ReadHistoryOptions,
  type UpdateResourceOptions,
} from '@medplum/fhir-router';
import type { Bundle, BundleEntry, OperationOutcome, Resource } from '@medplum/fhirtypes';

/** What is left of a deleted resource: enough to answer 410, list the deletion in history and in bulk export. */
export interface Tombstone {
  readonly resourceType: string;
  readonly id: string;
  /** The version the deletion created (one above `lastVersionId`). */
  readonly versionId: string;
  /** The last version that held content. */
  readonly lastVersionId: string;
  /** ISO instant of the deletion. */
  readonly deletedAt: string;
}

/** The state of one resource at an instant, as bulk export needs it. */
export type VersionAt =
  | { readonly kind: 'present'; readonly resource: WithId<Resource>; readonly lastUpdatedMs: number }
  | {
      readonly kind: 'deleted';
      readonly tombstone: Tombstone;
      readonly deletedAtMs: number;
      /** The content before the deletion, for compartment checks. */
      readonly last: WithId<Resource> | undefined;
    };

export type UpsertOutcome = 'created' | 'updated' | 'unchanged';

export interface RepositoryStats {
  readonly resources: number;
  readonly byType: Record<string, number>;
  readonly deleted: number;
}

type Method = 'POST' | 'PUT' | 'DELETE';

interface VersionEvent {
  readonly versionId: string;
  readonly at: string;
  readonly atMs: number;
  readonly method: Method;
  /** Content of a superseded version; the current version's content lives in the base repository. */
  snapshot?: WithId<Resource>;
}

interface ResourceRecord {
  readonly resourceType: string;
  readonly id: string;
  /** Every version, oldest first; version ids are 1, 2, 3… in this order. */
  readonly events: VersionEvent[];
}

/** Sort parameters this repository sorts on directly (medplum's MemoryRepository evaluates FHIRPath per comparison). */
const DIRECT_SORT_KEYS: Readonly<Record<string, (resource: Resource) => string>> = {
  _lastUpdated: (r) => r.meta?.lastUpdated ?? '',
  _id: (r) => r.id ?? '',
};

/**
 * medplum's `MemoryRepository` with what the EHR sandbox needs on top:
 * - sequential version ids (`1`, `2`, …) and `meta.lastUpdated` from an injected clock;
 * - deletes leave a tombstone: reads answer 410, history keeps every version plus the deletion;
 * - a full version log, so bulk export can answer "as of the kick-off instant";
 * - `_lastUpdated`-only searches (the incremental-sync query) answered from the version log, cloning
 *   only the page; `_sort=_lastUpdated` / `_id` sorted directly (MemoryRepository evaluates FHIRPath per
 *   comparison);
 * - counts for `stats()`.
 *
 * Writes are serialized (one at a time); reads are not.
 */
export class SandboxRepository extends MemoryRepository {
  readonly #now: () => Date;
  readonly #records = new Map<string, Map<string, ResourceRecord>>();
  /**
   * Per type, the current records by `meta.lastUpdated` (ties in write order), built on the first
   * `_lastUpdated`-sorted search after a write: the incremental-sync query then costs a binary search,
   * not a scan of every resource of the type for each page.
   */
  readonly #byTime = new Map<string, readonly { readonly id: string; readonly at: string }[]>();
  readonly #counts = new Map<string, number>();
  #deleted = 0;
  #tail: Promise<unknown> = Promise.resolve();

  constructor(options: { readonly now?: () => Date } = {}) {
    super();
    this.#now = options.now ?? (() => new Date());
  }

  // ---- writes -------------------------------------------------------------------------------

  override createResource<T extends Resource>(
    resource: T,
    options?: CreateResourceOptions,
    update = false,
  ): Promise<WithId<T>> {
    return this.#exclusive(() =>
      this.#write(resource, {
        generateId: options?.assignedId === false,
        allowExisting: update,
        method: 'POST',
      }),
    );
  }

  override updateResource<T extends Resource>(
    resource: T,
    options?: UpdateResourceOptions,
  ): Promise<WithId<T>> {
    return this.#exclusive(async () => {
      if (!resource.id) throw new OperationOutcomeError(badRequest('Missing id'));
      if (options?.ifMatch !== undefined) {
        const record = this.#record(resource.resourceType, resource.id);
        const current = record && currentEvent(record);
        if (current?.versionId !== options.ifMatch) throw new OperationOutcomeError(preconditionFailed);
      }
      return this.#write(resource, { generateId: false, allowExisting: true, method: 'PUT' });
    });
  }

  override conditionalCreate<T extends Resource>(
    resource: T,
    search: SearchRequest<T>,
    options?: CreateResourceOptions,
  ): Promise<{ resource: WithId<T>; outcome: OperationOutcome }> {
    // MemoryRepository's own version writes around createResource; the generic one goes through it.
    const generic = FhirRepository.prototype.conditionalCreate as (
      this: FhirRepository,
      resource: T,
      search: SearchRequest<T>,
      options?: CreateResourceOptions,
    ) => Promise<{ resource: WithId<T>; outcome: OperationOutcome }>;
    return generic.call(this, resource, search, options);
  }

  override deleteResource(resourceType: string, id: string, options?: DeleteResourceOptions): Promise<void> {
    return this.#exclusive(async () => {
      const record = this.#record(resourceType, id);
      if (!record) throw new OperationOutcomeError(notFound);
      const current = currentEvent(record);
      if (!current) throw new OperationOutcomeError(gone);
      if (options?.ifMatch !== undefined && options.ifMatch !== current.versionId) {
        throw new OperationOutcomeError(preconditionFailed);
      }
      current.snapshot = await super.readResource<WithId<Resource>>(resourceType, id);
      await super.deleteResource(resourceType, id);
      const at = this.#now();
      this.#byTime.delete(resourceType);
      record.events.push({
        versionId: String(record.events.length + 1),
        at: at.toISOString(),
        atMs: at.getTime(),
        method: 'DELETE',
      });
      this.#count(resourceType, -1);
      this.#deleted++;
    });
  }

  override async expungeResources(resourceType: string, ids: string[]): Promise<void> {
    await this.#exclusive(async () => {
      await super.expungeResources(resourceType, ids);
      for (const id of ids) {
        const record = this.#record(resourceType, id);
        if (!record) continue;
        if (currentEvent(record)) this.#count(resourceType, -1);
        else this.#deleted--;
        this.#records.get(resourceType)?.delete(id);
      }
      this.#byTime.delete(resourceType);
    });
  }

  override clear(): void {
    super.clear();
    this.#records.clear();
    this.#byTime.clear();
    this.#counts.clear();
    this.#deleted = 0;
  }

  /**
   * Creates the resource, or updates it when its content (ignoring `meta.versionId`/`lastUpdated`)
   * differs from the current version. Used for seeding, where the same Practitioner recurs in many files.
   */
  upsert<T extends Resource>(resource: T): Promise<{ outcome: UpsertOutcome; resource: WithId<T> }> {
    return this.#exclusive(async () => {
      const record = resource.id === undefined ? undefined : this.#record(resource.resourceType, resource.id);
      if (record && resource.id !== undefined && currentEvent(record)) {
        const existing = await super.readResource<WithId<T>>(resource.resourceType, resource.id);
        if (deepEquals(withoutVersionMeta(existing), withoutVersionMeta(resource))) {
          return { outcome: 'unchanged' as const, resource: existing };
        }
        const updated = await this.#write(resource, {
          generateId: false,
          allowExisting: true,
          method: 'PUT',
        });
        return { outcome: 'updated' as const, resource: updated };
      }
      const created = await this.#write(resource, { generateId: false, allowExisting: true, method: 'POST' });
      return { outcome: 'created' as const, resource: created };
    });
  }

  // ---- reads --------------------------------------------------------------------------------

  override async readResource<T extends Resource>(resourceType: string, id: string): Promise<T> {
    const record = this.#record(resourceType, id);
    if (record && !currentEvent(record)) throw new OperationOutcomeError(gone);
    return super.readResource<T>(resourceType, id);
  }

  override async readVersion<T extends Resource>(
    resourceType: string,
    id: string,
    versionId: string,
  ): Promise<T> {
    const record = this.#record(resourceType, id);
    const index = record?.events.findIndex((e) => e.versionId === versionId) ?? -1;
    const event = record?.events[index];
    if (!record || !event) throw new OperationOutcomeError(notFound);
    if (event.method === 'DELETE') throw new OperationOutcomeError(gone);
    return (await this.#content(record, index)) as T;
  }

  override async readHistory<T extends Resource>(
    resourceType: string,
    id: string,
    options?: ReadHistoryOptions,
  ): Promise<Bundle<WithId<T>>> {
    const record = this.#record(resourceType, id);
    if (!record) throw new OperationOutcomeError(notFound);
    const offset = Math.max(0, options?.offset ?? 0);
    const limit = options?.limit ?? record.events.length;
    const entries: BundleEntry<WithId<T>>[] = [];
    const newestFirst = record.events.length - 1;
    for (let index = newestFirst - offset; index >= 0 && entries.length < limit; index--) {
      const event = record.events[index] as VersionEvent;
      const createdHere = index === 0 || record.events[index - 1]?.method === 'DELETE';
      const response = {
        etag: `W/"${event.versionId}"`,
        lastModified: event.at,
        status: event.method === 'DELETE' ? '410 Gone' : createdHere ? '201 Created' : '200 OK',
      };
      if (event.method === 'DELETE') {
        entries.push({ request: { method: 'DELETE', url: `${resourceType}/${id}` }, response });
        continue;
      }
      const resource = (await this.#content(record, index)) as WithId<T>;
      const url = event.method === 'POST' ? resourceType : `${resourceType}/${id}`;
      entries.push({ resource, request: { method: event.method, url }, response });
    }
    return {
      resourceType: 'Bundle',
      type: 'history',
      total: record.events.length,
      ...(entries.length > 0 ? { entry: entries } : {}),
    };
  }

  override async search<T extends Resource>(searchRequest: SearchRequest<T>): Promise<Bundle<WithId<T>>> {
    const indexed = await this.#indexedSearch(searchRequest);
    if (indexed) return indexed;
    const rules = searchRequest.sortRules;
    if (!rules?.length || !rules.every((rule) => Object.hasOwn(DIRECT_SORT_KEYS, rule.code))) {
      return super.search(searchRequest);
    }
    const all = await super.search({
      ...searchRequest,
      sortRules: undefined,
      offset: undefined,
      count: undefined,
      include: undefined,
      revInclude: undefined,
    });
    const entries = all.entry ?? [];
    entries.sort(compareBy(rules));
    const offset = Math.max(0, searchRequest.offset ?? 0);
    const page = entries.slice(
      offset,
      searchRequest.count === undefined ? undefined : offset + searchRequest.count,
    );
    if ((searchRequest.include || searchRequest.revInclude) && page.length > 0) {
      const resources = page.map((e) => e.resource as WithId<T>);
      await getExtraEntries(this, searchRequest, resources, page as BundleEntry[]);
    }
    return {
      resourceType: 'Bundle',
      type: 'searchset',
      ...(page.length > 0 ? { entry: page } : {}),
      total: all.total ?? entries.length,
    };
  }

  // ---- sandbox-specific views ------------------------------------------------------------------

  /** The current version id of a resource, or undefined when it does not exist or is deleted. */
  versionIdOf(resourceType: string, id: string): string | undefined {
    const record = this.#record(resourceType, id);
    return record ? currentEvent(record)?.versionId : undefined;
  }

  /** The current tombstone of a resource, if it is deleted now. */
  tombstone(resourceType: string, id: string): Tombstone | undefined {
    const record = this.#record(resourceType, id);
    return record ? tombstoneOf(record) : undefined;
  }

  tombstones(): Tombstone[] {
    const out: Tombstone[] = [];
    for (const byId of this.#records.values()) {
      for (const record of byId.values()) {
        const tombstone = tombstoneOf(record);
        if (tombstone) out.push(tombstone);
      }
    }
    return out;
  }

  /** Resource types that have at least one resource, current or deleted. */
  recordedTypes(): string[] {
    return [...this.#records.keys()].filter((type) => (this.#records.get(type)?.size ?? 0) > 0);
  }

  /** A snapshot of the ids recorded for a type (current and deleted), in insertion order. */
  recordedIds(resourceType: string): string[] {
    return [...(this.#records.get(resourceType)?.keys() ?? [])];
  }

  /** The number of records (current and deleted) of a type. */
  recordCount(resourceType: string): number {
    return this.#records.get(resourceType)?.size ?? 0;
  }

  /** The state of a resource at an instant (its newest version not after it), or undefined if it did not exist then. */
  async versionAt(resourceType: string, id: string, atMs: number): Promise<VersionAt | undefined> {
    const record = this.#record(resourceType, id);
    if (!record) return undefined;
    let index = record.events.length - 1;
    while (index >= 0 && (record.events[index] as VersionEvent).atMs > atMs) index--;
    const event = record.events[index];
    if (!event) return undefined;
    if (event.method !== 'DELETE') {
      return { kind: 'present', resource: await this.#content(record, index), lastUpdatedMs: event.atMs };
    }
    const previous = record.events[index - 1];
    return {
      kind: 'deleted',
      tombstone: {
        resourceType,
        id,
        versionId: event.versionId,
        lastVersionId: previous?.versionId ?? '0',
        deletedAt: event.at,
      },
      deletedAtMs: event.atMs,
      last: previous ? await this.#content(record, index - 1) : undefined,
    };
  }

  stats(): RepositoryStats {
    const byType: Record<string, number> = {};
    let resources = 0;
    for (const [type, count] of [...this.#counts.entries()].sort(([a], [b]) => a.localeCompare(b))) {
      if (count === 0) continue;
      byType[type] = count;
      resources += count;
    }
    return { resources, byType, deleted: this.#deleted };
  }

  // ---- internals ----------------------------------------------------------------------------

  /** Runs write operations one at a time, so version numbering and the version log stay consistent. */
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(fn, fn);
    this.#tail = run.catch(() => undefined);
    return run;
  }

  async #write<T extends Resource>(
    resource: T,
    options: {
      readonly generateId: boolean;
      readonly allowExisting: boolean;
      readonly method: 'POST' | 'PUT';
    },
  ): Promise<WithId<T>> {
    const resourceType = resource.resourceType;
    const id = options.generateId || !resource.id ? this.generateId() : resource.id;
    let record = this.#record(resourceType, id);
    const current = record && currentEvent(record);
    if (current && !options.allowExisting)
      throw new OperationOutcomeError(badRequest('Assigned ID is already in use'));
    if (record && current) current.snapshot = await super.readResource<WithId<Resource>>(resourceType, id);

    const at = this.#now();
    const versionId = String((record?.events.length ?? 0) + 1);
    const stamped = { ...resource, id, meta: { ...resource.meta, versionId, lastUpdated: at.toISOString() } };
    // Seeding mode makes MemoryRepository keep the versionId and lastUpdated given here.
    const written = await this.withSeeding(() => super.createResource(stamped, undefined, true));

    if (!record) {
      record = { resourceType, id, events: [] };
      let byId = this.#records.get(resourceType);
      if (!byId) {
        byId = new Map();
        this.#records.set(resourceType, byId);
      }
      byId.set(id, record);
    }
    const wasDeleted = record.events.length > 0 && !current;
    this.#byTime.delete(resourceType);
    record.events.push({
      versionId,
      at: stamped.meta.lastUpdated,
      atMs: at.getTime(),
      method: options.method,
    });
    if (!current) this.#count(resourceType, 1);
    if (wasDeleted) this.#deleted--;
    return written as WithId<T>;
  }

  /**
   * Answers searches whose only filters are `_lastUpdated` gt/ge/lt/le (the incremental-sync query)
   * from the version log, cloning only the page; MemoryRepository would evaluate FHIRPath on and clone
   * every resource of the type for each page. Comparisons are medplum's (`toPeriod` bounds), so results
   * are the same. Anything else returns undefined and goes to MemoryRepository.
   */
  async #indexedSearch<T extends Resource>(
    request: SearchRequest<T>,
  ): Promise<Bundle<WithId<T>> | undefined> {
    if (request.include || request.revInclude || request.types?.length) return undefined;
    const rules = request.sortRules ?? [];
    if (!rules.every((rule) => Object.hasOwn(DIRECT_SORT_KEYS, rule.code))) return undefined;
    const bounds: LastUpdatedBound[] = [];
    for (const filter of request.filters ?? []) {
      const bound = lastUpdatedTest(filter);
      if (!bound) return undefined;
      bounds.push(bound);
    }
    const tests = bounds.map((b) => b.test);

    const byTime = rules.length === 1 && rules[0]?.code === '_lastUpdated' && !rules[0].descending;
    let matches: { readonly id: string; readonly at: string }[] = [];
    if (byTime) {
      matches = inRange(this.#sortedByTime(request.resourceType), bounds);
    } else {
      for (const record of this.#records.get(request.resourceType)?.values() ?? []) {
        const current = currentEvent(record);
        if (current && tests.every((test) => test(current.at)))
          matches.push({ id: record.id, at: current.at });
      }
    }
    if (rules.length > 0 && !byTime) {
      matches.sort((a, b) => {
        for (const rule of rules) {
          const ka = rule.code === '_id' ? a.id : a.at;
          const kb = rule.code === '_id' ? b.id : b.at;
          if (ka !== kb) return (ka < kb ? -1 : 1) * (rule.descending ? -1 : 1);
        }
        return 0;
      });
    }
    const offset = Math.max(0, request.offset ?? 0);
    const page = matches.slice(offset, request.count === undefined ? undefined : offset + request.count);
    const entry: BundleEntry<WithId<T>>[] = [];
    for (const { id } of page) {
      try {
        entry.push({
          search: { mode: 'match' },
          resource: await super.readResource<WithId<T>>(request.resourceType, id),
        });
      } catch {
        // Deleted while this page was being read: leave it out.
      }
    }
    return {
      resourceType: 'Bundle',
      type: 'searchset',
      ...(entry.length > 0 ? { entry } : {}),
      total: matches.length,
    };
  }

  #sortedByTime(resourceType: string): readonly { readonly id: string; readonly at: string }[] {
    let index = this.#byTime.get(resourceType);
    if (index === undefined) {
      const current: { id: string; at: string }[] = [];
      for (const record of this.#records.get(resourceType)?.values() ?? []) {
        const event = currentEvent(record);
        if (event) current.push({ id: record.id, at: event.at });
      }
      // Stable: equal instants keep write order, as the scan-and-sort path does.
      index = current.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
      this.#byTime.set(resourceType, index);
    }
    return index;
  }

  async #content(record: ResourceRecord, index: number): Promise<WithId<Resource>> {
    const event = record.events[index] as VersionEvent;
    if (event.snapshot) return deepClone(event.snapshot);
    return super.readResource<WithId<Resource>>(record.resourceType, record.id);
  }

  #record(resourceType: string, id: string): ResourceRecord | undefined {
    return this.#records.get(resourceType)?.get(id);
  }

  #count(resourceType: string, delta: number): void {
    this.#counts.set(resourceType, (this.#counts.get(resourceType) ?? 0) + delta);
  }
}

function currentEvent(record: ResourceRecord): VersionEvent | undefined {
  const last = record.events.at(-1);
  return last && last.method !== 'DELETE' ? last : undefined;
}

function tombstoneOf(record: ResourceRecord): Tombstone | undefined {
  const last = record.events.at(-1);
  if (last?.method !== 'DELETE') return undefined;
  return {
    resourceType: record.resourceType,
    id: record.id,
    versionId: last.versionId,
    lastVersionId: record.events.at(-2)?.versionId ?? '0',
    deletedAt: last.at,
  };
}

/** medplum's date-filter comparison (see `matchesDateValue` in @medplum/core) for an instant value. */
/** A `_lastUpdated` filter as a test, and which side of a time range it bounds. */
interface LastUpdatedBound {
  readonly test: (at: string) => boolean;
  /** `lower` (gt, ge): false then true along time; `upper` (lt, le): true then false. */
  readonly side: 'lower' | 'upper';
}

/** The entries of a time-sorted index that pass every bound: one contiguous run, found by bisection. */
function inRange<T extends { readonly at: string }>(
  index: readonly T[],
  bounds: readonly LastUpdatedBound[],
): T[] {
  let lo = 0;
  let hi = index.length;
  for (const { test, side } of bounds) {
    // First position where the test flips (lower: becomes true; upper: becomes false).
    const flips = (i: number): boolean => test((index[i] as T).at) === (side === 'lower');
    let a = 0;
    let b = index.length;
    while (a < b) {
      const mid = (a + b) >>> 1;
      if (flips(mid)) b = mid;
      else a = mid + 1;
    }
    if (side === 'lower') lo = Math.max(lo, a);
    else hi = Math.min(hi, a);
  }
  return lo < hi ? index.slice(lo, hi) : [];
}

function lastUpdatedTest(filter: Filter): LastUpdatedBound | undefined {
  if (filter.code !== '_lastUpdated' || filter.value.includes(',')) return undefined;
  let start: string | undefined;
  let end: string | undefined;
  try {
    ({ start, end } = toPeriod(filter.value) ?? {});
  } catch {
    return undefined;
  }
  if (start === undefined || end === undefined) return undefined;
  const [from, to] = [start, end];
  switch (filter.operator) {
    case Operator.GREATER_THAN:
      return { test: (at) => at > to, side: 'lower' };
    case Operator.GREATER_THAN_OR_EQUALS:
      return { test: (at) => at >= from, side: 'lower' };
    case Operator.LESS_THAN:
      return { test: (at) => at < from, side: 'upper' };
    case Operator.LESS_THAN_OR_EQUALS:
      return { test: (at) => at <= to, side: 'upper' };
    default:
      return undefined;
  }
}

function withoutVersionMeta(resource: Resource): Resource {
  if (!resource.meta) return resource;
  const { versionId: _v, lastUpdated: _l, ...meta } = resource.meta;
  const { meta: _m, ...rest } = resource;
  return (Object.keys(meta).length > 0 ? { ...rest, meta } : rest) as Resource;
}

function compareBy(rules: readonly SortRule[]): (a: BundleEntry, b: BundleEntry) => number {
  return (a, b) => {
    for (const rule of rules) {
      const key = DIRECT_SORT_KEYS[rule.code];
      if (!key || !a.resource || !b.resource) continue;
      const ka = key(a.resource);
      const kb = key(b.resource);
      if (ka !== kb) return (ka < kb ? -1 : 1) * (rule.descending ? -1 : 1);
    }
    return 0;
  };
}
