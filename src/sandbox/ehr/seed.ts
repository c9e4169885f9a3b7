import { randomUUID } from 'node:crypto';
import type { Resource } from '@medplum/fhirtypes';
import {
  bundleFullUrlOf,
  type FileLocation,
  listResourceFiles,
  readResourceFile,
} from '../../adapters/files/resource-files.ts';
import { SluiceError } from '../../core/errors/index.ts';
import { rewriteReferences } from '../../core/fhir/resource.ts';
import type { SandboxRepository, UpsertOutcome } from './repository.ts';

/** One resource of an import group (the entries of one Bundle, or one standalone resource). */
export interface ImportItem {
  readonly resource: Record<string, unknown>;
  /** The Bundle entry's `urn:uuid:`/`urn:oid:` fullUrl, when it had one. */
  readonly fullUrl?: string | undefined;
}

export interface ImportIssue {
  /** Index of the item in its group. */
  readonly index: number;
  readonly message: string;
}

export interface ImportCounts {
  created: number;
  updated: number;
  unchanged: number;
}

export interface SeedReport extends ImportCounts {
  readonly files: number;
  readonly resources: number;
  readonly durationMs: number;
}

const ID = /^[A-Za-z0-9\-.]{1,256}$/;
const TYPE_NAME = /^[A-Za-z]{1,64}$/;
const MAX_LISTED_ISSUES = 20;

/**
 * Prepares a group that came from one Bundle for storage: an entry without an id takes the uuid of its
 * `urn:uuid:` fullUrl, and `urn:` references to entries of the group become `Type/id`. Resources are
 * checked for a known type and a usable id. Pure apart from generating ids for entries that have neither.
 */
export function prepareGroup(
  items: readonly ImportItem[],
  isResourceType: (type: string) => boolean,
): { resources: Resource[]; issues: ImportIssue[] } {
  const issues: ImportIssue[] = [];
  const urnTargets = new Map<string, string>();
  const ok: { index: number; resource: Record<string, unknown> }[] = [];
  for (const [index, item] of items.entries()) {
    const type = item.resource.resourceType;
    if (typeof type !== 'string' || !isResourceType(type)) {
      const shown = typeof type === 'string' && TYPE_NAME.test(type) ? ` "${type}"` : '';
      issues.push({ index, message: `unknown resource type${shown}` });
      continue;
    }
    let id = item.resource.id;
    if (id === undefined) id = idFromFullUrl(item.fullUrl) ?? randomUUID();
    if (typeof id !== 'string' || !ID.test(id)) {
      issues.push({
        index,
        message: 'resource id is not a valid FHIR id ([A-Za-z0-9-.], at most 256 characters)',
      });
      continue;
    }
    const resource = id === item.resource.id ? item.resource : { ...item.resource, id };
    if (item.fullUrl) urnTargets.set(item.fullUrl, `${type}/${id}`);
    ok.push({ index, resource });
  }
  const resources = ok.map(({ resource }) => {
    if (urnTargets.size > 0) rewriteReferences(resource, urnTargets);
    return resource as unknown as Resource;
  });
  return { resources, issues };
}

/** Stores prepared resources: created, updated when their content changed, left alone otherwise. */
export async function storeResources(
  repo: SandboxRepository,
  resources: readonly Resource[],
  counts: ImportCounts = { created: 0, updated: 0, unchanged: 0 },
): Promise<ImportCounts> {
  for (const resource of resources) {
    const { outcome } = await repo.upsert(resource);
    counts[outcome satisfies UpsertOutcome]++;
  }
  return counts;
}

/**
 * Seeds the repository from files and folders (recursively): FHIR JSON resources, Bundles (transaction
 * bundles with `urn:uuid` references included), NDJSON, and their `.gz` forms. Every unparseable line,
 * entry or file is collected; if there is any, a `SANDBOX_SEED_INVALID` error lists them (file, line,
 * entry — never content).
 */
export async function seedRepository(
  repo: SandboxRepository,
  paths: readonly string[],
  isResourceType: (type: string) => boolean,
): Promise<SeedReport> {
  const started = performance.now();
  let files: string[];
  try {
    files = await listResourceFiles(paths);
  } catch (err) {
    const path = (err as { path?: unknown }).path;
    const where = typeof path === 'string' ? path : paths.join(', ');
    throw new SluiceError('SANDBOX_SEED_INVALID', `Seed path ${where} cannot be read.`, { cause: err });
  }

  const problems: string[] = [];
  const counts: ImportCounts = { created: 0, updated: 0, unchanged: 0 };
  let resources = 0;
  for (const file of files) {
    let group: { key: string; items: ImportItem[]; locations: FileLocation[] } | undefined;
    const flush = async (): Promise<void> => {
      if (!group) return;
      const { resources: prepared, issues } = prepareGroup(group.items, isResourceType);
      for (const issue of issues)
        problems.push(`${describe(group.locations[issue.index])}: ${issue.message}`);
      await storeResources(repo, prepared, counts);
      resources += prepared.length;
      group = undefined;
    };
    for await (const item of readResourceFile(file)) {
      if (item.kind === 'error') {
        problems.push(`${describe(item.at)}: ${item.message}`);
        continue;
      }
      // Entries of one Bundle (same file and line) form a group; anything else stands alone.
      const key = item.at.entry === undefined ? undefined : `${item.at.line ?? ''}`;
      if (group && group.key !== key) await flush();
      if (key === undefined) {
        group = { key: '', items: [], locations: [] };
      } else {
        group ??= { key, items: [], locations: [] };
      }
      group.items.push({ resource: item.resource, fullUrl: bundleFullUrlOf(item.resource) });
      group.locations.push(item.at);
      if (key === undefined) await flush();
    }
    await flush();
  }

  if (problems.length > 0) {
    const listed = problems.slice(0, MAX_LISTED_ISSUES);
    const more = problems.length > listed.length ? `\n  … and ${problems.length - listed.length} more` : '';
    throw new SluiceError(
      'SANDBOX_SEED_INVALID',
      `${problems.length} problem(s) in the seed data:\n  ${listed.join('\n  ')}${more}`,
      { details: { problems: problems.length, files: files.length } },
    );
  }
  return { files: files.length, resources, ...counts, durationMs: performance.now() - started };
}

function idFromFullUrl(fullUrl: string | undefined): string | undefined {
  if (!fullUrl?.startsWith('urn:uuid:')) return undefined;
  const id = fullUrl.slice('urn:uuid:'.length);
  return ID.test(id) ? id : undefined;
}

function describe(at: FileLocation | undefined): string {
  if (!at) return 'unknown location';
  let text = at.file;
  if (at.line !== undefined) text += ` line ${at.line}`;
  if (at.entry !== undefined) text += ` entry ${at.entry}`;
  return text;
}
