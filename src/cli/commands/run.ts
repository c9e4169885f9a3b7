import { type Command, InvalidArgumentError } from 'commander';
import { ingestStateKey } from '../../engine/bus/ingest.ts';
import { loadFlow } from '../../engine/config/load-flow.ts';
import { ChangeLogSource } from '../../engine/pipeline/change-log-source.ts';
import { runFlow } from '../../engine/pipeline/run-flow.ts';
import type { RunSummary } from '../../engine/pipeline/summary.ts';
import { buildFlowRuntime, flowRunOptions } from '../../engine/runtime/build-flow.ts';
import { eitherSignal, withFlowLease } from '../../engine/runtime/flow-lease.ts';
import { createLogger } from '../../engine/runtime/logger.ts';
import type { StateStore } from '../../engine/store/state-store.ts';
import { leaseKeeper } from '../lease-keeper.ts';
import { loopControl } from '../loop.ts';
import { EXIT, printJson, printLine, reportError } from '../output.ts';
import { terminalProgress } from '../progress-bar.ts';
import { formatSummary } from '../summary-text.ts';

interface RunOptions {
  once?: boolean;
  json?: boolean;
  reset?: boolean;
  from?: string;
  progress: boolean;
}

function instant(value: string): string {
  const ms = Date.parse(value);
  if (Number.isNaN(ms) || !/^\d{4}-\d{2}-\d{2}/.test(value)) {
    throw new InvalidArgumentError('an ISO 8601 date or instant, e.g. 2026-11-23T00:00:00Z');
  }
  return new Date(ms).toISOString();
}

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('run a flow: once with --once, otherwise every schedule.intervalSeconds until stopped')
    .argument('<flow>', 'flow file (YAML)')
    .option('--once', 'run once and exit')
    .option('--json', 'print each run summary as one JSON line on stdout')
    .option('--reset', 'forget the checkpoints and read everything again (writes stay idempotent)')
    .option('--from <instant>', 'start every stream from this instant instead of its checkpoint', instant)
    .option('--no-progress', 'no progress bar on the terminal')
    .action(async (file: string, options: RunOptions) => {
      process.exitCode = await runCommand(file, options);
    });

  program
    .command('replay')
    .description(
      "re-run a window of the flow's change log through the pipeline (idempotent; checkpoints stay)",
    )
    .argument('<flow>', 'flow file (YAML)')
    .requiredOption('--from <instant>', 'replay records last updated at or after this instant', instant)
    .option('--resend', 'send even what the delivery ledger says the target already has')
    .option('--json', 'print the summary as one JSON line')
    .option('--no-progress', 'no progress bar on the terminal')
    .action(
      async (
        file: string,
        options: { from: string; resend?: boolean; json?: boolean; progress: boolean },
      ) => {
        process.exitCode = await replayCommand(file, options);
      },
    );
}

async function replayCommand(
  file: string,
  options: { from: string; resend?: boolean; json?: boolean; progress: boolean },
): Promise<number> {
  const json = options.json === true;
  let flow: ReturnType<typeof loadFlow>;
  try {
    flow = loadFlow(file);
  } catch (err) {
    return reportError(err, json);
  }
  let runtime: Awaited<ReturnType<typeof buildFlowRuntime>>;
  try {
    runtime = await buildFlowRuntime(flow);
  } catch (err) {
    return reportError(err, json);
  }
  try {
    const source = new ChangeLogSource({
      system: runtime.source.system,
      streams: runtime.source.streams,
      store: runtime.store,
      flow: flow.file.flow,
      pageSize: flow.file.source.pageSize,
    });
    const summary = await withFlowLease(runtime, flow.file.flow, (leaseSignal) =>
      runFlow({
        ...flowRunOptions(flow, runtime),
        source,
        changeLogDays: 0,
        replay: true,
        from: options.from,
        resend: options.resend === true,
        logger: createLogger(),
        progress: options.progress ? terminalProgress() : undefined,
        ...(leaseSignal ? { signal: leaseSignal } : {}),
      }),
    );
    report(summary, json);
    return summary.status === 'succeeded' ? EXIT.ok : EXIT.failed;
  } catch (err) {
    return reportError(err, json);
  } finally {
    await runtime.close();
  }
}

async function runCommand(file: string, options: RunOptions): Promise<number> {
  const json = options.json === true;
  let flow: ReturnType<typeof loadFlow>;
  try {
    flow = loadFlow(file);
  } catch (err) {
    return reportError(err, json);
  }
  let runtime: Awaited<ReturnType<typeof buildFlowRuntime>>;
  try {
    runtime = await buildFlowRuntime(flow);
  } catch (err) {
    return reportError(err, json);
  }
  if (flow.payloadKey === undefined) {
    // Quarantined records and change-log copies are whole source resources: say where they lie in clear.
    createLogger().warn(
      { stateDir: flow.stateDir },
      'state.encryption is not set: quarantined records and the change log are stored unencrypted; set it, or keep state.dir on an encrypted volume',
    );
  }
  // Cluster mode: the lease this process holds while it runs the flow (kept from cycle to cycle).
  const keeper = leaseKeeper({
    acquire: runtime.lease,
    name: flow.file.flow,
    json,
    once: options.once === true,
  });
  const loop = loopControl(flow.file.schedule.intervalSeconds);
  try {
    let reset = options.reset === true;
    let from = options.from;
    let cycle = 0;
    let wasIdle = false;
    let haltSeen: string | undefined;
    // Over a bus, a run that read nothing says once when no ingest has published for the flow yet.
    let ingestChecked = runtime.bus === undefined;
    const logger = createLogger();
    while (true) {
      // Loop mode waits while the kill switch is engaged, saying so once, and starts no run.
      if (!options.once) {
        let halt: Awaited<ReturnType<typeof runtime.store.getHalt>>;
        try {
          halt = await runtime.store.getHalt(flow.file.flow);
        } catch (err) {
          // The state store is unreachable (PostgreSQL restarting): a loop says so and tries again.
          reportError(err, json);
          if (!(await loop.pause())) return EXIT.ok;
          continue;
        }
        if (halt !== undefined) {
          if (haltSeen !== halt.engagedAt) {
            haltSeen = halt.engagedAt;
            if (json) printJson({ flow: flow.file.flow, halted: true, ...halt });
            else
              printLine(
                `flow ${flow.file.flow} is halted since ${halt.engagedAt} (${halt.reason}): waiting for \`sluice resume\``,
              );
          }
          if (!(await loop.pause())) return EXIT.ok;
          continue;
        }
        haltSeen = undefined;
      }
      const turn = await keeper.take();
      if (typeof turn === 'number') return turn;
      if (turn === 'wait') {
        if (!(await loop.pause())) return EXIT.ok;
        continue;
      }
      // In loop mode every cycle after the first is quiet when it finds nothing to do: it is not
      // recorded in the audit trail or the run history, nor printed as text.
      let summary: RunSummary;
      try {
        summary = await runFlow({
          ...flowRunOptions(flow, runtime),
          reset,
          ...(from === undefined ? {} : { from }),
          quietWhenIdle: !options.once && cycle > 0,
          retryRemovals: !options.once && cycle > 0 ? 'due' : 'all',
          logger,
          progress: options.progress ? terminalProgress() : undefined,
          signal: eitherSignal(loop.signal, keeper.signal) ?? loop.signal,
        });
      } catch (err) {
        // A run that could not even start (its state store unreachable): --once reports it; a loop
        // says so and tries again next cycle (nothing was read or sent).
        const code = reportError(err, json);
        if (options.once || loop.signal.aborted || !(await loop.pause()))
          return options.once ? code : EXIT.ok;
        continue;
      }
      cycle++;
      reset = false;
      from = undefined;
      // JSON consumers get every cycle (an idle one says `"idle": true`); a person only the changes.
      if (summary.idle === true && !json) {
        if (!wasIdle)
          printLine(
            `flow ${flow.file.flow}: no changes at ${summary.finishedAt}; cycles that find nothing to do are not reported until the next change`,
          );
      } else report(summary, json);
      wasIdle = summary.idle === true;
      if (!ingestChecked && summary.read === 0 && summary.status === 'succeeded') {
        ingestChecked = true;
        await noteNothingIngested(runtime.store, flow.file.flow);
      }
      if (options.once) {
        if (summary.error?.code === 'STATE_DEFINITION_CHANGED') return EXIT.usage;
        return summary.status === 'succeeded' ? EXIT.ok : EXIT.failed;
      }
      // A loop stopped by a signal ends as asked: a cycle it interrupted is reported and repeated by the
      // next start (nothing of it was committed past what was sent).
      if (loop.signal.aborted) return EXIT.ok;
      if (!(await loop.pause())) return EXIT.ok;
    }
  } finally {
    loop.dispose();
    await keeper.release();
    await runtime.close();
  }
}

/**
 * With an event bus the run reads only what `sluice ingest` published: when no ingest has yet, an
 * empty run is that, not an EHR with nothing in it. Said on stderr (for a person, in either mode).
 */
async function noteNothingIngested(store: StateStore, flow: string): Promise<void> {
  const published = await store.listCheckpoints(ingestStateKey(flow)).catch(() => undefined);
  if (published === undefined || published.length > 0) return;
  process.stderr.write(
    `note: flow ${flow} reads the event bus (bus.nats), and no \`sluice ingest\` has published its EHR records yet: run \`sluice ingest FLOW\` (a loop beside this one, or --once first)\n`,
  );
}

function report(summary: RunSummary, json: boolean): void {
  if (json) printJson(summary);
  else printLine(formatSummary(summary));
  if (summary.error) process.stderr.write(`error ${summary.error.code}: ${summary.error.message}\n`);
}
