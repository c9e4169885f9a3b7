/**
 * What both state store engines share about their rows: how a row reads back as a value of the
 * interface, what a sealed payload is bound to, and how a stored provenance row becomes a resource.
 * The engines keep the same columns under the same names, so one reading serves both.
 */
import { hash, randomUUID } from 'node:crypto';
import { buildProvenance, type ProvenanceFacts } from '../../core/fhir/provenance.ts';
import type {
  BatchManifest,
  Checkpoint,
  LedgerEntry,
  NewQuarantineEntry,
  PageCommit,
  QuarantineEntry,
  QuarantineFilter,
  QuarantineStatus,
  RefusedRemoval,
  RemovalCause,
  RunRecord,
} from './state-store.ts';

/** A row as either engine returns it (column name to value). */
export type StoredRow = Readonly<Record<string, unknown>>;

/** A provenance row's facts; flow, entity, run and time are its columns. */
export type StoredFacts = Omit<ProvenanceFacts, 'flow' | 'entity' | 'runId' | 'recorded'>;

/** Splits provenance facts into the row's columns and its stored facts (compact JSON). */
export function provenanceRow(p: ProvenanceFacts): {
  flow: string;
  entity: string;
  runId: string;
  recorded: string;
  facts: string;
} {
  const { flow, entity, runId, recorded, ...facts } = p;
  return { flow, entity, runId, recorded, facts: JSON.stringify(facts satisfies StoredFacts) };
}

/**
 * A provenance row as a FHIR Provenance: `form` 0 is a whole resource (rows written before facts),
 * 1 the facts it is built from.
 */
export function provenanceResource(flow: string, entity: string, r: StoredRow): Record<string, unknown> {
  const body = JSON.parse(String(r.body)) as Record<string, unknown>;
  if (Number(r.form) === 0) return body;
  return buildProvenance({
    ...(body as unknown as StoredFacts),
    flow,
    entity,
    runId: String(r.run_id),
    recorded: String(r.recorded_at),
  });
}

/** The columns a quarantine filter selects on, by filter key. */
export const QUARANTINE_FILTER_COLUMNS = {
  flow: 'flow',
  status: 'status',
  code: 'code',
  stream: 'stream',
  sourceRef: 'source_ref',
  runId: 'run_id',
} as const;

/** The conditions of a quarantine selection: each a column and the value it must equal. */
export function quarantineConditions(
  filter: Omit<QuarantineFilter, 'limit'>,
): { column: string; value: string }[] {
  const out: { column: string; value: string }[] = [];
  for (const [key, column] of Object.entries(QUARANTINE_FILTER_COLUMNS)) {
    const value = filter[key as keyof typeof QUARANTINE_FILTER_COLUMNS];
    if (value !== undefined) out.push({ column, value });
  }
  return out;
}

/** A quarantine row without the record (which only `readQuarantinePayload` opens). */
export const QUARANTINE_COLUMNS =
  "id, flow, run_id, stream, stage, code, issues, origin, source_ref, policy_version, created_at, status, closed_at, payload_sha256, payload <> '' AS payload_kept";

/** What a sealed payload is bound to: its table, flow and row. */
export const quarantineAad = (flow: string, id: string): string => `quarantine\u0000${flow}\u0000${id}`;
export const changeLogAad = (flow: string, stream: string, ref: string, versionKey: string): string =>
  `change_log\u0000${flow}\u0000${stream}\u0000${ref}\u0000${versionKey}`;

export function toBatch(r: StoredRow): BatchManifest {
  return {
    batchId: String(r.batch_id),
    flow: String(r.flow),
    runId: String(r.run_id),
    object: String(r.object),
    createdAt: String(r.created_at),
    purpose: String(r.purpose),
    policyVersion: String(r.policy_version),
    recordCount: Number(r.record_count),
    envelope: String(r.envelope),
    ...(r.jws == null ? {} : { jws: String(r.jws) }),
    ...(r.batch_key == null ? {} : { batchKey: String(r.batch_key) }),
    results: JSON.parse(String(r.results)) as Record<string, number>,
  };
}

/** A checkpoint's column values, in the order both engines' upserts name them. */
export function checkpointRowValues(c: Checkpoint): (string | null)[] {
  return [
    c.flow,
    c.stream,
    c.position,
    c.cursor ?? null,
    c.definitionHash,
    c.environment,
    c.runId,
    c.updatedAt,
  ];
}

export function toCheckpoint(r: StoredRow): Checkpoint {
  return {
    flow: String(r.flow),
    stream: String(r.stream),
    position: String(r.position),
    ...(r.cursor === null || r.cursor === undefined ? {} : { cursor: String(r.cursor) }),
    definitionHash: String(r.definition_hash),
    environment: String(r.environment ?? ''),
    runId: String(r.run_id),
    updatedAt: String(r.updated_at),
  };
}

export function toLedger(r: StoredRow): LedgerEntry {
  return {
    flow: String(r.flow),
    object: String(r.object),
    externalId: String(r.external_id),
    payloadHash: String(r.payload_hash),
    targetId: String(r.target_id),
    sourceRef: String(r.source_ref),
    mappingVersion: String(r.mapping_version),
    runId: String(r.run_id),
    deliveredAt: String(r.delivered_at),
  };
}

export function toQuarantine(r: StoredRow): QuarantineEntry {
  return {
    id: String(r.id),
    flow: String(r.flow),
    runId: String(r.run_id),
    stream: String(r.stream),
    stage: String(r.stage) as QuarantineEntry['stage'],
    code: String(r.code),
    issues: JSON.parse(String(r.issues)) as QuarantineEntry['issues'],
    origin: String(r.origin),
    ...(r.source_ref == null ? {} : { sourceRef: String(r.source_ref) }),
    ...(r.policy_version == null ? {} : { policyVersion: String(r.policy_version) }),
    createdAt: String(r.created_at),
    status: String(r.status) as QuarantineStatus,
    ...(r.closed_at == null ? {} : { closedAt: String(r.closed_at) }),
    ...(r.payload_sha256 == null ? {} : { payloadSha256: String(r.payload_sha256) }),
    // SQLite answers the comparison 1 or 0, PostgreSQL true or false.
    payloadKept: r.payload_kept === true || Number(r.payload_kept) === 1,
  };
}

export function toRefusedRemoval(r: StoredRow): RefusedRemoval {
  return {
    flow: String(r.flow),
    object: String(r.object),
    externalId: String(r.external_id),
    targetId: String(r.target_id),
    sourceRef: String(r.source_ref),
    cause: String(r.cause) as RemovalCause,
    ...(r.because == null ? {} : { because: String(r.because) }),
    codes: JSON.parse(String(r.codes)) as string[],
    runId: String(r.run_id),
    firstRefusedAt: String(r.first_refused_at),
    lastAttemptAt: String(r.last_attempt_at),
    attempts: Number(r.attempts),
    nextAttemptAt: String(r.next_attempt_at),
  };
}

export function toRun(r: StoredRow): RunRecord {
  return {
    runId: String(r.run_id),
    flow: String(r.flow),
    startedAt: String(r.started_at),
    ...(r.finished_at == null ? {} : { finishedAt: String(r.finished_at) }),
    status: String(r.status) as RunRecord['status'],
    ...(r.summary == null ? {} : { summary: String(r.summary) }),
  };
}

/** The last of each key: what a page's upserts, applied one by one, leave behind. */
export function lastOfEach<T>(rows: readonly T[], key: (row: T) => string): T[] {
  const byKey = new Map<string, T>();
  for (const row of rows) {
    const k = key(row);
    byKey.delete(k);
    byKey.set(k, row);
  }
  return [...byKey.values()];
}

/**
 * A new quarantine entry's row, in the order `id, flow, run_id, stream, stage, code, issues, origin,
 * source_ref, payload, created_at, policy_version, payload_sha256`: a fresh id, the record sealed by
 * `seal` bound to that id, and the SHA-256 of the record as quarantined.
 */
export function quarantineRowValues(
  q: NewQuarantineEntry,
  createdAt: string,
  seal: (payload: string, aad: string) => string,
): (string | null)[] {
  const id = randomUUID();
  return [
    id,
    q.flow,
    q.runId,
    q.stream,
    q.stage,
    q.code,
    JSON.stringify(q.issues),
    q.origin,
    q.sourceRef ?? null,
    seal(q.payload, quarantineAad(q.flow, id)),
    createdAt,
    q.policyVersion ?? null,
    hash('sha256', q.payload, 'hex'),
  ];
}

/** The flow and stream a page commit's per-stream rows belong to; throws when they are missing. */
export function commitKeys(commit: PageCommit): { flow: string | undefined; stream: string | undefined } {
  const { flow, stream } = commit;
  const perStream =
    commit.ledgerDeletes?.length ||
    commit.seen?.length ||
    commit.changeLog?.length ||
    commit.consents?.length;
  if (perStream && (flow === undefined || stream === undefined))
    throw new Error('commitPage needs flow and stream');
  if (commit.keptTargets?.length && flow === undefined) throw new Error('commitPage needs flow');
  return { flow, stream };
}
