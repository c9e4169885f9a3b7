import type { Command } from 'commander';
import { EventBus } from '../../adapters/nats-bus/event-bus.ts';
import { isSluiceError } from '../../core/errors/index.ts';
import { eventsExpired, readStart } from '../../engine/bus/bus-source.ts';
import { ingestStateKey } from '../../engine/bus/ingest.ts';
import type { ResolvedFlow } from '../../engine/config/load-flow.ts';
import { CONSENT_STREAM } from '../../engine/consent/consent-gate.ts';
import type { RunSummary } from '../../engine/pipeline/summary.ts';
import { openFlowState } from '../../engine/runtime/build-flow.ts';
import { flowLeaseHolder, serverOf } from '../../engine/store/pg-lease.ts';
import type { Checkpoint } from '../../engine/store/state-store.ts';
import { loadFlowOrReport } from '../load-flow-or-report.ts';
import { EXIT, printJson, printLine, reportError } from '../output.ts';

/** How many refused removals status lists one by one. */
const REFUSED_SHOWN = 20;
const REFUSED_ACTION =
  'Unlock each record, or remove what holds it, in the CRM: every run tries again (loop cycles back off to hourly).';

/**
 * Where a flow stands, from its state alone (nothing is contacted): checkpoints, open quarantine,
 * removals the CRM refused, and the recent runs with their counts and the re-identification risk trend
 * (the smallest k per run), so low-cardinality drift shows before a threshold holds a page.
 */
export function registerStatus(program: Command): void {
  program
    .command('status')
    .description(
      'checkpoints, open quarantine, removals the CRM refused and recent runs of a flow, with the risk (k) trend',
    )
    .argument('<flow>', 'flow file')
    .option('--runs <n>', 'how many recent runs', '10')
    .option('--json', 'as one JSON line')
    .action(async (file: string, options: { runs: string; json?: boolean }) => {
      const json = options.json === true;
      const flow = loadFlowOrReport(file, json, { offline: true });
      if (typeof flow === 'number') {
        process.exitCode = flow;
        return;
      }
      const store = await openFlowState(flow);
      try {
        const name = flow.file.flow;
        const halt = await store.getHalt(name);
        const checkpoints = await store.listCheckpoints(name);
        // With an event bus: where `sluice ingest` stands in the EHR (the checkpoints above are in the
        // bus), and how many events each stream's run has still to read.
        const ingest = flow.file.bus ? await store.listCheckpoints(ingestStateKey(name)) : undefined;
        const waiting = flow.file.bus ? await busWaiting(flow, checkpoints) : undefined;
        const openQuarantine = await store.countQuarantine(name, 'open');
        // What kinds of problem wait for an operator: open entries by code, most first.
        const openByCode = await store.countQuarantineByCode(name, 'open');
        // Removals the CRM refused: the records are still there until a run manages it.
        const refused = await store.countRefusedRemovals(name);
        const refusedList =
          refused.count > 0 ? await store.listRefusedRemovals(name, { limit: REFUSED_SHOWN }) : [];
        const runs = (await store.listRuns(name, Number(options.runs) || 10)).map((r) => {
          const s = r.summary ? (JSON.parse(r.summary) as RunSummary) : undefined;
          return {
            runId: r.runId,
            startedAt: r.startedAt,
            status: r.status,
            ...(s
              ? {
                  read: s.read,
                  delivered: s.delivered,
                  withheld: s.withheld,
                  quarantined: s.quarantined,
                  // Records deleted at the target: source deletions, consent suppression, retraction.
                  removed: (s.deleted ?? 0) + (s.suppressed ?? 0) + (s.retracted ?? 0),
                  ...(s.risk ? { minK: s.risk.minK, heldForRisk: s.risk.held } : {}),
                  ...(s.error ? { error: s.error.code } : {}),
                }
              : {}),
          };
        });
        // Cluster mode: where the state lives and which process runs the flow now.
        const postgres = flow.file.state.postgres;
        const cluster = postgres
          ? {
              state: { engine: 'postgres', server: serverOf(postgres.url), schema: postgres.schema },
              lease: await flowLeaseHolder({ url: postgres.url, schema: postgres.schema, flow: name }),
            }
          : {};
        const status = {
          flow: name,
          halted: halt !== undefined,
          ...(halt ? { halt } : {}),
          ...cluster,
          checkpoints: checkpoints.map((c) => ({
            stream: c.stream,
            position: c.position,
            updatedAt: c.updatedAt,
          })),
          ...(waiting ? { busWaiting: waiting } : {}),
          ...(ingest
            ? {
                ingestCheckpoints: ingest.map((c) => ({
                  stream: c.stream,
                  position: c.position,
                  updatedAt: c.updatedAt,
                })),
              }
            : {}),
          openQuarantine,
          openQuarantineByCode: openByCode,
          refusedRemovals: {
            count: refused.count,
            ...(refused.count > 0 ? { action: REFUSED_ACTION } : {}),
            ...(refused.oldest === undefined ? {} : { oldest: refused.oldest }),
            // The first ones, oldest first: the CRM record, who it belongs to (`Type/id` or pseudonym).
            items: refusedList.map((r) => ({
              object: r.object,
              targetId: r.targetId,
              sourceRef: r.sourceRef,
              cause: r.cause,
              ...(r.because === undefined ? {} : { because: r.because }),
              codes: r.codes,
              attempts: r.attempts,
              firstRefusedAt: r.firstRefusedAt,
              lastAttemptAt: r.lastAttemptAt,
              nextAttemptAt: r.nextAttemptAt,
            })),
          },
          runs,
        };
        if (json) printJson(status);
        else {
          if (halt)
            printLine(
              `flow ${name} is HALTED since ${halt.engagedAt} (${halt.reason}): nothing is sent until \`sluice resume\``,
            );
          if (cluster.lease) {
            const { running, holder } = cluster.lease;
            printLine(
              `flow ${name}: state in PostgreSQL at ${cluster.state.server} (schema ${cluster.state.schema}); ${running ? `run now by ${holder ? `host ${holder.host}, pid ${holder.pid}, since ${holder.since}` : 'another process'}` : 'no process runs it now'}`,
            );
          }
          const codes = Object.entries(openByCode).map(([code, n]) => `${code} ${n}`);
          printLine(
            `flow ${name}: ${openQuarantine} open quarantine entr${openQuarantine === 1 ? 'y' : 'ies'}${codes.length ? ` (${codes.join(', ')})` : ''}`,
          );
          if (refused.count > 0) {
            printLine(
              `flow ${name}: ${refused.count} removal${refused.count === 1 ? '' : 's'} the CRM refused, since ${refused.oldest}: these records are still at the target. ${REFUSED_ACTION}`,
            );
            for (const r of refusedList)
              printLine(
                `  ${r.object} ${r.targetId} (${r.sourceRef}) ${r.cause}${r.because ? `:${r.because}` : ''}: ${r.codes.join(', ')}; ${r.attempts} attempt${r.attempts === 1 ? '' : 's'}, last ${r.lastAttemptAt}`,
              );
            if (refused.count > refusedList.length)
              printLine(`  … and ${refused.count - refusedList.length} more`);
          }
          if (ingest) {
            printLine(`flow ${name}: ingest (EHR → bus) at`);
            for (const c of ingest) printLine(`  ${c.stream.padEnd(14)} at ${c.position}`);
            const pending =
              waiting === undefined
                ? ''
                : 'events' in waiting
                  ? ` (events waiting: ${Object.entries(waiting.events)
                      .map(([k, v]) => `${k} ${v}`)
                      .join(', ')})${
                      waiting.expired
                        ? `; BUS_EVENTS_EXPIRED: the bus discarded ${waiting.expired.join(', ')} events this flow had not read (sluice ingest --reset)`
                        : ''
                    }${
                      waiting.replaced
                        ? `; BUS_STREAM_REPLACED: the bus is not the stream this flow read ${waiting.replaced.join(', ')} events from (sluice ingest --reset)`
                        : ''
                    }`
                  : ` (the bus cannot be reached: ${waiting.unreachable})`;
            printLine(`flow ${name}: run (bus → CRM) at${pending}`);
          }
          for (const c of status.checkpoints) printLine(`  ${c.stream.padEnd(14)} at ${c.position}`);
          for (const r of runs) {
            printLine(
              `  ${r.startedAt} ${r.status.padEnd(9)} read ${r.read ?? '-'} delivered ${r.delivered ?? '-'} withheld ${r.withheld ?? '-'} quarantined ${r.quarantined ?? '-'}${r.removed ? ` removed ${r.removed}` : ''}${'minK' in r ? ` k=${r.minK}` : ''}${'error' in r ? ` ${r.error}` : ''}`,
            );
          }
        }
        process.exitCode = EXIT.ok;
      } catch (err) {
        process.exitCode = reportError(err, json);
      } finally {
        await store.close();
      }
    });
}

/**
 * The events of each stream stored after its run checkpoint, read from the bus, and the streams whose
 * run would stop because the bus discarded events it had not read (`expired`, BUS_EVENTS_EXPIRED) or is
 * not the stream it read them from (`replaced`, BUS_STREAM_REPLACED);
 * `unreachable` when the bus cannot be reached (status reads the state; it does not fail for the bus).
 */
async function busWaiting(
  flow: ResolvedFlow,
  checkpoints: readonly Checkpoint[],
): Promise<
  | { stream: string; events: Record<string, number>; expired?: string[]; replaced?: string[] }
  | { unreachable: string }
  | undefined
> {
  const nats = flow.file.bus?.nats;
  if (nats === undefined) return undefined;
  let bus: EventBus | undefined;
  try {
    bus = await EventBus.open({
      url: nats.url,
      flow: flow.file.flow,
      ...(nats.stream === undefined ? {} : { stream: nats.stream }),
      maxAgeDays: nats.maxAgeDays,
      replicas: nats.replicas,
      readOnly: true,
    });
    const streams = [...(flow.file.stages.consent ? [CONSENT_STREAM] : []), ...flow.file.source.resources];
    const events: Record<string, number> = {};
    const expired: string[] = [];
    const replaced: string[] = [];
    const extent = await bus.extent();
    for (const stream of streams) {
      const checkpoint = checkpoints.find((c) => c.stream === stream);
      // Where the run would start, as it decides it.
      const start = await readStart(
        bus,
        stream,
        { cursor: checkpoint?.cursor, since: checkpoint?.position },
        extent,
      );
      if (start === 'replaced') {
        replaced.push(stream);
        events[stream] = await bus.waiting(stream, {});
        continue;
      }
      const { cursor, since } = start;
      events[stream] = await bus.waiting(
        stream,
        cursor !== undefined ? { afterSeq: cursor } : { ...(since === undefined ? {} : { since }) },
      );
      if (await eventsExpired(bus, stream, start, extent)) expired.push(stream);
    }
    return {
      stream: bus.stream,
      events,
      ...(expired.length > 0 ? { expired } : {}),
      ...(replaced.length > 0 ? { replaced } : {}),
    };
  } catch (err) {
    return { unreachable: isSluiceError(err) ? err.code : 'BUS_UNAVAILABLE' };
  } finally {
    await bus?.close();
  }
}
