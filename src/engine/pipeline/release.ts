import type { Logger } from 'pino';
import type { Issue } from '../../core/mapping/outcome.ts';
import type { SystemName } from '../../core/model/ids.ts';
import type { Source, SourcePage, SourceRecord } from '../../core/ports/source.ts';
import type { ResolvedFlow } from '../config/load-flow.ts';
import { CONSENT_STREAM } from '../consent/consent-gate.ts';
import { type FlowRuntime, flowRunOptions } from '../runtime/build-flow.ts';
import { withFlowLease } from '../runtime/flow-lease.ts';
import type { QuarantineEntry } from '../store/state-store.ts';
import { processRecord } from './record-stages.ts';
import { runFlow } from './run-flow.ts';
import type { RunSummary } from './summary.ts';
import { isOlderVersion, refOf, versionKeyOf } from './version-key.ts';

/** One quarantined record taken out to be released, with the record itself. */
interface Candidate {
  readonly entry: QuarantineEntry;
  readonly record: SourceRecord;
}

/** What became of one entry a release was asked for. */
export type ReleaseOutcome =
  | { readonly id: string; readonly outcome: 'released'; readonly requarantined?: string }
  /** Checked again without sending: it still fails, and stays open. */
  | {
      readonly id: string;
      readonly outcome: 'still-failing';
      readonly code: string;
      readonly issues: readonly Issue[];
    }
  /**
   * A newer version of its record was processed since (`processed`: its outcome), or is released in
   * the same run (`released`): releasing this one would send it over the newer.
   */
  | { readonly id: string; readonly outcome: 'superseded'; readonly processed: string }
  /** The run that was to send it did not finish: the entry stays open, its record kept. */
  | { readonly id: string; readonly outcome: 'run-failed' }
  /** Not (or no longer) open. */
  | { readonly id: string; readonly outcome: 'not-open' };

export interface ReleaseResult {
  readonly outcomes: readonly ReleaseOutcome[];
  /** The run that sent the records that passed, when there were any. */
  readonly run?: RunSummary;
}

/**
 * Releases quarantined entries: every record is checked again without sending (still failing: it
 * stays), never released over a newer version of itself, and those that pass go through every stage
 * in one run, as a replay (idempotent). Only a run that succeeds closes its entries and erases their
 * records; a record held back again by the run gets a new entry naming the old one in its origin.
 */
export async function releaseQuarantined(
  flow: ResolvedFlow,
  runtime: FlowRuntime,
  entries: readonly QuarantineEntry[],
  logger: Logger,
): Promise<ReleaseResult> {
  const { store } = runtime;
  const name = flow.file.flow;
  const outcomes = new Map<string, ReleaseOutcome>();
  const candidates: Candidate[] = [];
  const asOf = new Date();
  for (const entry of entries) {
    const payload = entry.status === 'open' ? await store.readQuarantinePayload(entry.id) : undefined;
    if (payload === undefined) {
      outcomes.set(entry.id, { id: entry.id, outcome: 'not-open' });
      continue;
    }
    const record = recordOf(entry, payload);
    const ref = refOf(record.resource);
    const processed =
      ref === undefined ? undefined : (await store.getSeen(name, entry.stream, [ref])).get(ref);
    if (processed && isOlderVersion(versionKeyOf(record.resource), processed.versionKey)) {
      outcomes.set(entry.id, { id: entry.id, outcome: 'superseded', processed: processed.outcome });
      continue;
    }
    const verdict =
      entry.stream === CONSENT_STREAM ? undefined : processRecord(record, { ...runtime.stages, asOf });
    if (verdict?.kind === 'quarantine') {
      outcomes.set(entry.id, {
        id: entry.id,
        outcome: 'still-failing',
        code: verdict.code,
        issues: verdict.issues,
      });
      continue;
    }
    candidates.push({ entry, record });
  }
  // Two versions of one record released together: only the newer goes (a replay skips no version).
  const newest = new Map<string, Candidate>();
  for (const c of candidates) {
    const ref = refOf(c.record.resource);
    if (ref === undefined) continue;
    const other = newest.get(ref);
    const older =
      other && isOlderVersion(versionKeyOf(c.record.resource), versionKeyOf(other.record.resource));
    const loser = other === undefined ? undefined : older ? c : other;
    if (loser)
      outcomes.set(loser.entry.id, { id: loser.entry.id, outcome: 'superseded', processed: 'released' });
    if (!older) newest.set(ref, c);
  }
  candidates.splice(0, candidates.length, ...candidates.filter((c) => !outcomes.has(c.entry.id)));
  let run: RunSummary | undefined;
  if (candidates.length > 0) {
    // In cluster mode the release runs the flow: it holds the flow's lease like any run.
    run = await withFlowLease(runtime, name, (signal) =>
      runFlow({
        ...flowRunOptions(flow, runtime),
        source: new QuarantinedRecordSource(runtime.source.system, runtime.source.streams, candidates),
        replay: true,
        changeLogDays: 0,
        logger,
        ...(signal ? { signal } : {}),
      }),
    );
    const again = new Map<string, string>();
    if (run.status === 'succeeded') {
      const fresh = await store.listQuarantine({
        flow: name,
        status: 'open',
        runId: run.runId,
        limit: Number.MAX_SAFE_INTEGER,
      });
      for (const q of fresh) {
        const from = ORIGIN.exec(q.origin)?.[1];
        if (from !== undefined) again.set(from, q.id);
      }
    }
    for (const { entry } of candidates) {
      const closed = run.status === 'succeeded' && (await store.setQuarantineStatus(entry.id, 'released'));
      const requarantined = again.get(entry.id);
      outcomes.set(
        entry.id,
        closed
          ? { id: entry.id, outcome: 'released', ...(requarantined ? { requarantined } : {}) }
          : { id: entry.id, outcome: run.status === 'succeeded' ? 'not-open' : 'run-failed' },
      );
    }
    await runtime.audit.append(
      candidates.map(({ entry }) => ({
        kind: 'release' as const,
        flow: name,
        runId: (run as RunSummary).runId,
        outcome:
          outcomes.get(entry.id)?.outcome === 'released'
            ? ('success' as const)
            : ('serious-failure' as const),
        reason: entry.code,
        details: {
          quarantineId: entry.id,
          ...(entry.payloadSha256 ? { recordSha256: entry.payloadSha256 } : {}),
          result: outcomes.get(entry.id)?.outcome ?? 'not-open',
          ...(again.has(entry.id) ? { requarantinedAs: again.get(entry.id) } : {}),
        },
      })),
    );
  }
  return { outcomes: entries.map((e) => outcomes.get(e.id) as ReleaseOutcome), ...(run ? { run } : {}) };
}

/** The origin a released record carries, naming its entry (a new entry, if held back again, keeps it). */
const originOf = (entry: QuarantineEntry): string => `quarantine ${entry.id} (${entry.origin})`;
const ORIGIN = /^quarantine ([0-9a-f-]{36}) \(/;

function recordOf(entry: QuarantineEntry, payload: string): SourceRecord {
  return { stream: entry.stream, resource: parseOrRaw(payload), origin: originOf(entry) };
}

/** A quarantined record as JSON when it parses (it may be the line that did not). */
export function parseOrRaw(payload: string): unknown {
  try {
    return JSON.parse(payload) as unknown;
  } catch {
    return payload;
  }
}

/**
 * A source of quarantined records, in the flow's stream order (parents before children), a page of
 * up to 200 at a time: a release runs them through every stage again as a replay.
 */
export class QuarantinedRecordSource implements Source {
  readonly system: SystemName;
  readonly streams: readonly string[];
  readonly #byStream = new Map<string, SourceRecord[]>();

  constructor(system: SystemName, flowStreams: readonly string[], candidates: readonly Candidate[]) {
    this.system = system;
    for (const { record } of candidates) {
      const list = this.#byStream.get(record.stream) ?? [];
      list.push(record);
      this.#byStream.set(record.stream, list);
    }
    this.streams = [
      ...flowStreams.filter((s) => this.#byStream.has(s)),
      ...[...this.#byStream.keys()].filter((s) => !flowStreams.includes(s)),
    ];
  }

  async *read(stream: string): AsyncGenerator<SourcePage> {
    const records = this.#byStream.get(stream) ?? [];
    for (let i = 0; i < records.length; i += PAGE) yield { records: records.slice(i, i + PAGE) };
  }
}

const PAGE = 200;
