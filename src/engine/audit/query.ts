import { z } from 'zod';
import { SluiceError } from '../../core/errors/index.ts';
import {
  AUDIT_KINDS,
  AUDIT_OUTCOMES,
  type AuditEntry,
  type AuditKind,
  type AuditOutcome,
  decodeEntry,
  FLOW_PATTERN,
  isCalendarValid,
  leafHashOf,
  PSEUDONYM_PATTERN,
  RECIPIENT_PATTERN,
  SOURCE_PATTERN,
  type StoredAuditEntry,
  TOKEN_PATTERN,
} from './entry.ts';
import { sameHash, toHex } from './hash.ts';
import type { AuditStore, EntrySearch } from './store.ts';

/**
 * Searching the trail: by subject pseudonym, batch, run, flow, recipient, kind, outcome and time, with
 * keyset paging on seq (stable while the log grows). Every returned entry is decoded from its canonical
 * text and checked against its leaf hash, so a search never hands out an entry that was altered.
 */

export interface AuditQuery {
  readonly subject?: string;
  /** A provider or organisation record, `Type/id` (patient records are found by pseudonym). */
  readonly source?: string;
  readonly batchId?: string;
  readonly runId?: string;
  readonly flow?: string;
  readonly recipient?: string;
  readonly kind?: AuditKind | readonly AuditKind[];
  readonly outcome?: AuditOutcome;
  /** Inclusive. */
  readonly from?: string | Date;
  /** Exclusive. */
  readonly to?: string | Date;
  /** The `next` of the previous page. */
  readonly after?: number;
  /** Page size: 1 to 1000, default 100. */
  readonly limit?: number;
  /** By seq; default ascending (oldest first). */
  readonly order?: 'asc' | 'desc';
}

export interface AuditPage {
  readonly entries: readonly StoredAuditEntry[];
  /** Pass as `after` for the next page; absent on the last page. */
  readonly next?: number;
}

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

const instant = z.union([
  z.date().refine((d) => Number.isFinite(d.getTime()), 'a valid date'),
  z
    .string()
    .regex(
      /^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2}))?$/,
      'an ISO date or instant',
    )
    .refine((s) => isCalendarValid(s) && Number.isFinite(Date.parse(s)), 'a valid date'),
]);

const querySchema = z
  .object({
    subject: z.string().regex(PSEUDONYM_PATTERN, 'a Sluice pseudonym').optional(),
    source: z
      .string()
      .regex(SOURCE_PATTERN, 'a source record, Type/id')
      .refine((s) => !s.startsWith('Patient/'), 'patient records are found by pseudonym')
      .optional(),
    batchId: z.string().regex(TOKEN_PATTERN, 'a token').optional(),
    runId: z.string().regex(TOKEN_PATTERN, 'a token').optional(),
    flow: z.string().regex(FLOW_PATTERN, 'a flow name').optional(),
    recipient: z.string().regex(RECIPIENT_PATTERN, 'a recipient').optional(),
    kind: z
      .union([z.enum(AUDIT_KINDS), z.array(z.enum(AUDIT_KINDS)).min(1).max(AUDIT_KINDS.length)])
      .optional(),
    outcome: z.enum(AUDIT_OUTCOMES).optional(),
    from: instant.optional(),
    to: instant.optional(),
    after: z.number().int().min(-1).max(Number.MAX_SAFE_INTEGER).optional(),
    limit: z.number().int().min(1).max(MAX_PAGE_SIZE).optional(),
    order: z.enum(['asc', 'desc']).optional(),
  })
  .strict();

/** Validates a query into store criteria. Throws AUDIT_QUERY_INVALID naming the parameter. */
export function toSearch(query: AuditQuery): EntrySearch {
  const parsed = querySchema.safeParse(query);
  if (!parsed.success) {
    const fields = [...new Set(parsed.error.issues.map((i) => String(i.path[0] ?? '(query)')))];
    throw new SluiceError('AUDIT_QUERY_INVALID', `Invalid audit search parameter: ${fields.join(', ')}.`, {
      details: { fields },
    });
  }
  const q = parsed.data;
  const from = q.from === undefined ? undefined : toInstant(q.from);
  const to = q.to === undefined ? undefined : toInstant(q.to);
  if (from !== undefined && to !== undefined && from > to) {
    throw new SluiceError('AUDIT_QUERY_INVALID', 'Invalid audit search: `from` is after `to`.', {
      details: { fields: ['from', 'to'] },
    });
  }
  return compact({
    subject: q.subject,
    source: q.source,
    batchId: q.batchId,
    runId: q.runId,
    flow: q.flow,
    recipient: q.recipient,
    kinds: q.kind === undefined ? undefined : typeof q.kind === 'string' ? [q.kind] : [...new Set(q.kind)],
    outcome: q.outcome,
    from,
    to,
    after: q.after,
    order: q.order ?? 'asc',
    limit: q.limit ?? DEFAULT_PAGE_SIZE,
  });
}

export async function queryAudit(store: AuditStore, query: AuditQuery): Promise<AuditPage> {
  const search = toSearch(query);
  const rows = await store.search({ ...search, limit: search.limit + 1 });
  const page = rows.slice(0, search.limit);
  const entries = page.map((row) => {
    const decoded = decodeEntry(row.canonical);
    const canonical = row.canonical as string;
    if (!decoded.ok || !sameHash(leafHashOf(canonical), row.leafHash) || decoded.entry.seq !== row.seq) {
      throw tampered(row.seq);
    }
    if (!matches(decoded.entry, search)) throw tampered(row.seq);
    return { ...decoded.entry, leafHash: toHex(row.leafHash), chainHash: toHex(row.chainHash) };
  });
  const last = entries[entries.length - 1];
  return rows.length > search.limit && last ? { entries, next: last.seq } : { entries };
}

/** Every matching entry, page by page (for exports): memory stays at one page. */
export async function* iterateAudit(
  store: AuditStore,
  query: AuditQuery = {},
): AsyncGenerator<StoredAuditEntry> {
  let after = query.after;
  for (;;) {
    const page = await queryAudit(store, { ...query, ...(after === undefined ? {} : { after }) });
    yield* page.entries;
    if (page.next === undefined) return;
    after = page.next;
  }
}

/** The entry really satisfies the criteria (the store's columns are derived, but the hash is the truth). */
function matches(entry: AuditEntry, s: EntrySearch): boolean {
  return (
    (s.subject === undefined || entry.subject === s.subject) &&
    (s.source === undefined || entry.details.source === s.source) &&
    (s.batchId === undefined || entry.batchId === s.batchId) &&
    (s.runId === undefined || entry.runId === s.runId) &&
    (s.flow === undefined || entry.flow === s.flow) &&
    (s.recipient === undefined || entry.recipient === s.recipient) &&
    (s.kinds === undefined || s.kinds.includes(entry.kind)) &&
    (s.outcome === undefined || entry.outcome === s.outcome) &&
    (s.from === undefined || entry.at >= s.from) &&
    (s.to === undefined || entry.at < s.to)
  );
}

function toInstant(value: string | Date): string {
  return (value instanceof Date ? value : new Date(Date.parse(value))).toISOString();
}

function tampered(seq: number): SluiceError {
  return new SluiceError(
    'AUDIT_INTEGRITY',
    `The audit entry at ${seq} does not match its hash; run the audit verification.`,
    { details: { seq } },
  );
}

function compact<T extends object>(value: T): T {
  const out: Record<string, unknown> = {};
  for (const [key, member] of Object.entries(value)) if (member !== undefined) out[key] = member;
  return out as T;
}
