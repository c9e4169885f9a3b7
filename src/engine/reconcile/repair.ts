import type { Logger } from 'pino';
import type { Source, SourcePage } from '../../core/ports/source.ts';
import { type RunFlowOptions, runFlow } from '../pipeline/run-flow.ts';
import type { RunSummary } from '../pipeline/summary.ts';
import type { StateStore } from '../store/state-store.ts';
import type { ReconcileFinding } from './reconcile.ts';

/**
 * Repair of what reconciliation found missing at the target: each source record is read again from
 * the source and sent through the whole pipeline once more (validation, policy, consent at ingest and
 * at send time, mapping), re-sent whatever the ledger says, without moving any checkpoint. A record
 * the source no longer has is gone at both ends: its ledger rows are forgotten. Patient data is found
 * through the pseudonym the ledger holds (the state's record of what was processed for whom).
 */

export interface RepairOutcome {
  /** Source records read again and sent through the pipeline. */
  readonly refetched: number;
  /** Source records the source no longer has (their ledger rows were forgotten). */
  readonly goneAtSource: number;
  /** Missing records whose source record Sluice cannot name (no processed version on record). */
  readonly unresolved: number;
  /** The run that sent them again (absent when nothing was read again). */
  readonly run?: RunSummary;
}

const FETCH_CHUNK = 50;

export async function repairMissing(input: {
  readonly missing: readonly ReconcileFinding[];
  /** Reads records by id (the flow's source, or its search source when it reads bulk exports). */
  readonly fetcher: Required<Pick<Source, 'fetch'>>;
  /** How the flow runs (its source is replaced; the run is a replay that re-sends). */
  readonly runOptions: Omit<RunFlowOptions, 'logger'>;
  readonly store: StateStore;
  readonly logger: Logger;
  readonly signal: AbortSignal;
}): Promise<RepairOutcome> {
  const { runOptions, store } = input;
  const flow = runOptions.flow;
  // The missing ledger rows of each ledger ref (`Type/id`, or a patient's pseudonym).
  const rowsOfLedgerRef = new Map<string, { object: string; externalId: string }[]>();
  for (const f of input.missing) {
    const rows = rowsOfLedgerRef.get(f.sourceRef) ?? [];
    rows.push({ object: f.object, externalId: f.externalId });
    rowsOfLedgerRef.set(f.sourceRef, rows);
  }
  // Source records to read again, per stream, with the ledger ref each was delivered under.
  const idsByStream = new Map<string, Set<string>>();
  const ledgerRefOf = new Map<string, string>();
  let unresolved = 0;
  const add = (ref: string, ledgerRef: string): void => {
    const slash = ref.indexOf('/');
    const stream = ref.slice(0, slash);
    if (!runOptions.source.streams.includes(stream)) {
      unresolved++;
      return;
    }
    const ids = idsByStream.get(stream) ?? new Set<string>();
    ids.add(ref.slice(slash + 1));
    idsByStream.set(stream, ids);
    ledgerRefOf.set(ref, ledgerRef);
  };
  for (const ledgerRef of rowsOfLedgerRef.keys()) {
    if (/^[A-Z][A-Za-z]+\//.test(ledgerRef)) {
      add(ledgerRef, ledgerRef);
      continue;
    }
    const refs = await store.refsOfSubjects(flow, 'Patient', [ledgerRef]);
    if (refs.length === 0) unresolved++;
    for (const ref of refs) add(ref, ledgerRef);
  }

  let refetched = 0;
  let goneAtSource = 0;
  const gone: { object: string; externalId: string }[] = [];
  const streams = runOptions.source.streams.filter((s) => idsByStream.has(s));
  const source: Source = {
    system: runOptions.source.system,
    streams,
    async *read(stream: string, _since: string | undefined, signal: AbortSignal): AsyncGenerator<SourcePage> {
      const ids = [...(idsByStream.get(stream) ?? [])];
      for (let start = 0; start < ids.length; start += FETCH_CHUNK) {
        const chunk = ids.slice(start, start + FETCH_CHUNK);
        const page = await input.fetcher.fetch(stream, chunk, signal);
        const found = new Set(page.records.map((r) => String((r.resource as { id?: unknown })?.id)));
        for (const id of chunk) {
          if (found.has(id)) continue;
          goneAtSource++;
          gone.push(...(rowsOfLedgerRef.get(ledgerRefOf.get(`${stream}/${id}`) ?? '') ?? []));
        }
        refetched += page.records.length;
        yield { records: page.records.map((r) => ({ ...r, origin: `${stream} read again (reconcile)` })) };
      }
    },
  };
  if (streams.length === 0) return { refetched: 0, goneAtSource: 0, unresolved };
  const run = await runFlow({
    ...runOptions,
    source,
    replay: true,
    resend: true,
    logger: input.logger,
    signal: input.signal,
  });
  // Gone at the target and at the source: nothing is left to reconcile for them.
  if (run.status === 'succeeded' && gone.length > 0)
    await store.settleRefusedRemovals(flow, { removed: gone, refused: [] });
  return { refetched, goneAtSource, unresolved, run };
}
