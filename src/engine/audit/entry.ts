import { z } from 'zod';
import { canonicalJson } from '../../core/batch/canonical-json.ts';
import { SluiceError } from '../../core/errors/index.ts';
import type { Pseudonym } from '../../core/model/ids.ts';
import { PURPOSES_OF_USE } from '../config/flow-schema.ts';
import type { Hash } from './hash.ts';
import { hashLeaf } from './merkle.ts';

/** Audit entries are written by Sluice: I-JSON only, so any JCS implementation hashes them the same. */
const I_JSON = { iJson: true } as const;

/**
 * One audit entry: what Sluice decided or did, for which flow, run, batch, recipient and purpose, about
 * which pseudonymous subject, with what outcome. Entries hold no PHI by construction: every free-form
 * field is a code or token (no spaces, bounded length), the subject must be a Sluice pseudonym, and
 * details are a flat map of short scalars. The stored form is the RFC 8785 canonical JSON text, whose
 * leaf hash (RFC 9162) goes into the Merkle tree and the chain.
 */

export const AUDIT_KINDS = [
  'access-decision',
  'send',
  'receive',
  'withhold',
  'quarantine',
  'release',
  'discard',
  'reidentify',
  'kill-switch',
  'policy-change',
  'token-issued',
  'run-start',
  'run-end',
  'audit-access',
  'retention-prune',
] as const;
export type AuditKind = (typeof AUDIT_KINDS)[number];

/** Outcomes, mapped to FHIR AuditEvent.outcome 0 / 8 / 4 / 8 / 12; `denied` is a refused access (BALP). */
export const AUDIT_OUTCOMES = [
  'success',
  'denied',
  'minor-failure',
  'serious-failure',
  'major-failure',
] as const;
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number];

export type AuditPurpose = (typeof PURPOSES_OF_USE)[number];

export type AuditDetailValue = string | number | boolean;
export type AuditDetails = Readonly<Record<string, AuditDetailValue>>;

/** The format version inside every canonical entry; a change of fields or rules bumps it. */
export const AUDIT_ENTRY_VERSION = 1;

/** What a caller records. `at` defaults to the log's clock; `seq` is assigned by the log. */
export interface AuditEventInput {
  readonly at?: string | Date;
  readonly kind: AuditKind;
  readonly flow: string;
  readonly runId?: string;
  readonly batchId?: string;
  readonly recipient?: string;
  readonly purpose?: AuditPurpose;
  /** A keyed pseudonym from `pseudonymize` — never a clear identifier. */
  readonly subject?: Pseudonym;
  readonly outcome: AuditOutcome;
  /** A code (an error code, a policy rule key), not prose. */
  readonly reason?: string;
  readonly details?: AuditDetails;
}

/** An entry as stored: dense 0-based `seq`, `at` normalised to `YYYY-MM-DDTHH:mm:ss.sssZ`. */
export interface AuditEntry {
  readonly seq: number;
  readonly at: string;
  readonly kind: AuditKind;
  readonly flow: string;
  readonly runId?: string;
  readonly batchId?: string;
  readonly recipient?: string;
  readonly purpose?: AuditPurpose;
  readonly subject?: Pseudonym;
  readonly outcome: AuditOutcome;
  readonly reason?: string;
  readonly details: AuditDetails;
}

/** An entry with its hashes (lower-case hex): its Merkle leaf hash and the chain hash up to it. */
export interface StoredAuditEntry extends AuditEntry {
  readonly leafHash: string;
  readonly chainHash: string;
}

/** The shape of a Sluice pseudonym: `p` + base32 of 20 HMAC bytes (see core/anonymize/pseudonym.ts). */
export const PSEUDONYM_PATTERN = /^p[a-z2-7]{32}$/;
export const FLOW_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** Ids, system names and codes: no spaces, so names and addresses cannot slip in as prose. */
export const TOKEN_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
/** A system name, or a `Type/id` reference as consent rules name recipients (never a person's record). */
export const RECIPIENT_PATTERN =
  /^(?!(?:Patient|RelatedPerson|Person)\/)[A-Za-z0-9][A-Za-z0-9._:-]{0,63}(?:\/[A-Za-z0-9][A-Za-z0-9.:-]{0,63})?$/;
/** A provider or organisation source record as entries name it (`details.source`): `Type/id`. */
export const SOURCE_PATTERN = /^[A-Z][A-Za-z]{1,63}\/[A-Za-z0-9\-.]{1,256}$/;
export const DETAIL_KEY_PATTERN = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
export const MAX_DETAILS = 32;
export const MAX_DETAIL_STRING = 256;

const INPUT_INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/;
const STORED_INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what is refused
const CONTROL = /[\u0000-\u001f\u007f]/;

const token = (what: string) =>
  z.string().regex(TOKEN_PATTERN, `${what}: a token (letters, digits, . _ : -)`);
const detailValue = z.union([
  z
    .string()
    .max(MAX_DETAIL_STRING, `at most ${MAX_DETAIL_STRING} characters`)
    .refine((s) => !CONTROL.test(s) && s.isWellFormed(), 'no control characters'),
  z.number(),
  z.boolean(),
]);
const details = z
  .record(
    z.string().regex(DETAIL_KEY_PATTERN, 'a detail key (a letter, then letters, digits, _ . -)'),
    detailValue,
  )
  .refine((d) => Object.keys(d).length <= MAX_DETAILS, `at most ${MAX_DETAILS} details`);

const common = {
  kind: z.enum(AUDIT_KINDS),
  flow: z.string().regex(FLOW_PATTERN, 'a flow name (lower-case letters, digits, dashes)'),
  runId: token('runId').optional(),
  batchId: token('batchId').optional(),
  recipient: z
    .string()
    .regex(RECIPIENT_PATTERN, 'recipient: a system name or a Type/id reference')
    .optional(),
  purpose: z.enum(PURPOSES_OF_USE).optional(),
  subject: z.string().regex(PSEUDONYM_PATTERN, 'a Sluice pseudonym').optional(),
  outcome: z.enum(AUDIT_OUTCOMES),
  reason: token('reason').optional(),
};

const inputSchema = z
  .object({
    ...common,
    at: z
      .union([
        z.date(),
        z
          .string()
          .regex(INPUT_INSTANT, 'an RFC 3339 instant with a time zone')
          .refine(isCalendarValid, 'a real calendar date and time'),
      ])
      .optional(),
    details: details.optional(),
  })
  .strict();

const storedSchema = z
  .object({
    ...common,
    v: z.literal(AUDIT_ENTRY_VERSION),
    seq: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
    at: z.string().regex(STORED_INSTANT, 'a normalised UTC instant'),
    details,
  })
  .strict();

/**
 * Validates a caller's entry and fixes its position. Throws AUDIT_ENTRY_INVALID naming every offending
 * field (never its value).
 */
export function normalizeEntry(input: AuditEventInput, seq: number, now: Date): AuditEntry {
  const parsed = inputSchema.safeParse(input);
  if (!parsed.success) {
    throw new SluiceError('AUDIT_ENTRY_INVALID', `Audit entry rejected: ${describeIssues(parsed.error)}.`, {
      details: { fields: parsed.error.issues.map((i) => pathOf(i.path)) },
    });
  }
  const value = parsed.data;
  const at = normalizeInstant(value.at ?? now);
  if (at === undefined) {
    throw new SluiceError('AUDIT_ENTRY_INVALID', 'Audit entry rejected: at: not a valid instant.', {
      details: { fields: ['at'] },
    });
  }
  return compact({
    seq,
    at,
    kind: value.kind,
    flow: value.flow,
    runId: value.runId,
    batchId: value.batchId,
    recipient: value.recipient,
    purpose: value.purpose,
    subject: value.subject as Pseudonym | undefined,
    outcome: value.outcome,
    reason: value.reason,
    details: normalizeDetails(value.details ?? {}),
  });
}

/**
 * The canonical text of an entry: the exact bytes that are hashed and stored. Written out member by
 * member in RFC 8785 order (it is on the append path of every entry); `canonicalEntryReference` is the
 * same through the generic canonicaliser, and a test holds the two equal.
 */
export function canonicalEntry(entry: AuditEntry): string {
  const s = JSON.stringify;
  let out = `{"at":${s(entry.at)}`;
  if (entry.batchId !== undefined) out += `,"batchId":${s(entry.batchId)}`;
  out += `,"details":${canonicalJson(entry.details, I_JSON)},"flow":${s(entry.flow)},"kind":${s(entry.kind)}`;
  out += `,"outcome":${s(entry.outcome)}`;
  if (entry.purpose !== undefined) out += `,"purpose":${s(entry.purpose)}`;
  if (entry.reason !== undefined) out += `,"reason":${s(entry.reason)}`;
  if (entry.recipient !== undefined) out += `,"recipient":${s(entry.recipient)}`;
  if (entry.runId !== undefined) out += `,"runId":${s(entry.runId)}`;
  out += `,"seq":${s(entry.seq)}`;
  if (entry.subject !== undefined) out += `,"subject":${s(entry.subject)}`;
  return `${out},"v":${AUDIT_ENTRY_VERSION}}`;
}

export function canonicalEntryReference(entry: AuditEntry): string {
  return canonicalJson(
    {
      v: AUDIT_ENTRY_VERSION,
      seq: entry.seq,
      at: entry.at,
      kind: entry.kind,
      flow: entry.flow,
      runId: entry.runId,
      batchId: entry.batchId,
      recipient: entry.recipient,
      purpose: entry.purpose,
      subject: entry.subject,
      outcome: entry.outcome,
      reason: entry.reason,
      details: entry.details,
    },
    I_JSON,
  );
}

/** RFC 9162 leaf hash of an entry's canonical text (UTF-8). */
export function leafHashOf(canonical: string): Hash {
  return hashLeaf(Buffer.from(canonical, 'utf8'));
}

export type DecodedEntry =
  | { readonly ok: true; readonly entry: AuditEntry }
  | { readonly ok: false; readonly problem: string };

/**
 * Reads a stored canonical text back. It must be valid, and exactly canonical: re-serialising the
 * parsed entry must give the same text, so two different texts can never stand for one entry.
 */
export function decodeEntry(canonical: unknown): DecodedEntry {
  if (typeof canonical !== 'string') return { ok: false, problem: 'the stored entry is not text' };
  let json: unknown;
  try {
    json = JSON.parse(canonical);
  } catch {
    return { ok: false, problem: 'the stored entry is not valid JSON' };
  }
  const parsed = storedSchema.safeParse(json);
  if (!parsed.success)
    return { ok: false, problem: `the stored entry is malformed (${describeIssues(parsed.error)})` };
  const { v: _version, ...rest } = parsed.data;
  const entry = compact({ ...rest, subject: rest.subject as Pseudonym | undefined });
  if (normalizeInstant(entry.at) !== entry.at)
    return { ok: false, problem: 'the stored entry has an invalid instant' };
  if (canonicalEntry(entry) !== canonical)
    return { ok: false, problem: 'the stored entry is not in canonical form' };
  return { ok: true, entry };
}

const DATE_PARTS =
  /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2}))?(?:\.\d+)?(?:Z|[+-](\d{2}):(\d{2}))?)?$/;

/**
 * True when an ISO date or date-time names a real calendar moment. `Date.parse` alone rolls
 * 2025-02-30 over to March, which would silently move an audit record.
 */
export function isCalendarValid(text: string): boolean {
  const m = DATE_PARTS.exec(text);
  if (!m) return false;
  const n = (i: number): number => Number(m[i] ?? 0);
  const [year, month, day, hour, minute, second, offsetHour, offsetMinute] = [1, 2, 3, 4, 5, 6, 7, 8].map(
    n,
  ) as [number, number, number, number, number, number, number, number];
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  return (
    month >= 1 &&
    month <= 12 &&
    day >= 1 &&
    day <= daysInMonth &&
    hour <= 23 &&
    minute <= 59 &&
    second <= 59 &&
    offsetHour <= 23 &&
    offsetMinute <= 59
  );
}

function normalizeInstant(value: string | Date): string | undefined {
  const ms = value instanceof Date ? value.getTime() : Date.parse(value);
  if (!Number.isFinite(ms)) return undefined;
  const iso = new Date(ms).toISOString();
  return STORED_INSTANT.test(iso) ? iso : undefined;
}

function normalizeDetails(input: Readonly<Record<string, AuditDetailValue>>): AuditDetails {
  const out: Record<string, AuditDetailValue> = {};
  for (const [key, value] of Object.entries(input)) out[key] = Object.is(value, -0) ? 0 : value;
  return out;
}

/** Drops undefined optional members so entries compare and serialise the same however they were built. */
function compact<T extends object>(value: T): T {
  const out: Record<string, unknown> = {};
  for (const [key, member] of Object.entries(value)) if (member !== undefined) out[key] = member;
  return out as T;
}

/** A field path for messages; a detail key that is not a valid key is not echoed (it could be anything). */
function pathOf(path: readonly PropertyKey[]): string {
  if (path.length === 0) return '(entry)';
  return path
    .map((p) =>
      typeof p === 'number' || (typeof p === 'string' && DETAIL_KEY_PATTERN.test(p)) ? String(p) : '<key>',
    )
    .join('.');
}

function describeIssues(error: z.ZodError): string {
  return error.issues.map((i) => `${pathOf(i.path)}: ${i.message}`).join('; ');
}
