import type { Command } from 'commander';
import { SluiceError } from '../../core/errors/index.ts';
import { type IngestSummary, ingestFlow, ingestStateKey } from '../../engine/bus/ingest.ts';
import { loadFlow } from '../../engine/config/load-flow.ts';
import { buildFlowRuntime } from '../../engine/runtime/build-flow.ts';
import { eitherSignal } from '../../engine/runtime/flow-lease.ts';
import { createLogger } from '../../engine/runtime/logger.ts';
import { leaseKeeper } from '../lease-keeper.ts';
import { loopControl } from '../loop.ts';
import { EXIT, printJson, printLine, reportError } from '../output.ts';
import { terminalProgress } from '../progress-bar.ts';

interface IngestCommandOptions {
  once?: boolean;
  json?: boolean;
  reset?: boolean;
  progress: boolean;
}

/**
 * `sluice ingest FLOW`: the reading half of a flow with an event bus (`bus.nats`). It reads the EHR from
 * its own checkpoints and publishes the records as sealed change events, once or in a loop; `sluice
 * run` reads them. One process ingests a flow at a time in cluster mode (the `FLOW@ingest` lease).
 */
export function registerIngest(program: Command): void {
  program
    .command('ingest')
    .description(
      "read the EHR into the flow's event bus (bus.nats): once with --once, otherwise every schedule.intervalSeconds",
    )
    .argument('<flow>', 'flow file (YAML)')
    .option('--once', 'read once and exit')
    .option('--json', 'print each summary as one JSON line on stdout')
    .option('--reset', 'forget the ingest checkpoints and read everything again (the bus keeps one copy)')
    .option('--no-progress', 'no progress bar on the terminal')
    .action(async (file: string, options: IngestCommandOptions) => {
      process.exitCode = await ingestCommand(file, options);
    });
}

async function ingestCommand(file: string, options: IngestCommandOptions): Promise<number> {
  const json = options.json === true;
  let runtime: Awaited<ReturnType<typeof buildFlowRuntime>>;
  let flow: ReturnType<typeof loadFlow>;
  try {
    flow = loadFlow(file);
    if (flow.file.bus === undefined) {
      throw new SluiceError(
        'CFG_FLOW_INVALID',
        `Flow ${flow.file.flow} has no event bus (bus.nats): \`sluice run\` reads its source itself.`,
      );
    }
    runtime = await buildFlowRuntime(flow);
  } catch (err) {
    return reportError(err, json);
  }
  const bus = runtime.bus;
  const key = flow.payloadKey;
  if (bus === undefined || key === undefined) {
    await runtime.close();
    return reportError(new SluiceError('INTERNAL', 'The event bus was not opened.'), json);
  }
  const loop = loopControl(flow.file.schedule.intervalSeconds);
  const name = ingestStateKey(flow.file.flow);
  const acquire = runtime.lease;
  const keeper = leaseKeeper({
    acquire: acquire ? () => acquire(name) : undefined,
    name,
    json,
    once: options.once === true,
  });
  const logger = createLogger();
  try {
    let reset = options.reset === true;
    let wasIdle = false;
    while (true) {
      const turn = await keeper.take();
      if (typeof turn === 'number') return turn;
      if (turn === 'wait') {
        if (!(await loop.pause())) return EXIT.ok;
        continue;
      }
      const summary = await ingestFlow({
        flow: flow.file.flow,
        definitionHash: flow.definitionHash,
        sourceUrl: flow.file.source.baseUrl,
        source: bus.ehr,
        bus: bus.events,
        key,
        store: runtime.store,
        overlapSeconds: flow.file.source.overlapSeconds,
        clockSkewSeconds: flow.file.source.clockSkewSeconds,
        reset,
        logger,
        audit: runtime.audit,
        ...(options.progress ? { progress: terminalProgress() } : {}),
        purpose: flow.file.purpose,
        signal: eitherSignal(loop.signal, keeper.signal) ?? loop.signal,
      });
      reset = false;
      // JSON consumers get every cycle; a person the first, those that publish, and failures.
      if (json) printJson(summary);
      else if (summary.idle !== true || !wasIdle || options.once) printLine(formatIngest(summary));
      if (summary.error) process.stderr.write(`error ${summary.error.code}: ${summary.error.message}\n`);
      wasIdle = summary.idle === true;
      if (options.once) return summary.status === 'succeeded' ? EXIT.ok : EXIT.failed;
      if (loop.signal.aborted || !(await loop.pause())) return EXIT.ok;
    }
  } finally {
    loop.dispose();
    await keeper.release();
    await runtime.close();
  }
}

function formatIngest(s: IngestSummary): string {
  const streams = Object.entries(s.byStream)
    .map(([stream, c]) => `${stream} ${c.read}${c.deletions ? ` (+${c.deletions} deleted)` : ''}`)
    .join(', ');
  return `flow ${s.flow} ingest ${s.runId} ${s.status}: read ${s.read}, published ${s.published} new event${s.published === 1 ? '' : 's'} to ${s.bus} (${s.duplicates} already there)${streams ? `; ${streams}` : ''}`;
}
