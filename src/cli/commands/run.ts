import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import { loadFlow } from '../../engine/config/load-flow.ts';
import { runFlow } from '../../engine/pipeline/run-flow.ts';
import type { RunSummary } from '../../engine/pipeline/summary.ts';
import { buildFlowRuntime } from '../../engine/runtime/build-flow.ts';
import { createLogger } from '../../engine/runtime/logger.ts';
import { EXIT, printJson, printLine, reportError } from '../output.ts';
import { terminalProgress } from '../progress-bar.ts';
import { formatSummary } from '../summary-text.ts';

interface RunOptions {
  once?: boolean;
  json?: boolean;
  reset?: boolean;
  progress: boolean;
}

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('run a flow: once with --once, otherwise every schedule.intervalSeconds until stopped')
    .argument('<flow>', 'flow file (YAML)')
    .option('--once', 'run once and exit')
    .option('--json', 'print each run summary as one JSON line on stdout')
    .option('--reset', 'forget the checkpoints and read everything again (writes stay idempotent)')
    .option('--no-progress', 'no progress bar on the terminal')
    .action(async (file: string, options: RunOptions) => {
      process.exitCode = await runCommand(file, options);
    });
}

async function runCommand(file: string, options: RunOptions): Promise<number> {
  const json = options.json === true;
  let flow: ReturnType<typeof loadFlow>;
  try {
    flow = loadFlow(file);
  } catch (err) {
    return reportError(err, json);
  }
  const runtime = buildFlowRuntime(flow);
  const controller = new AbortController();
  const stop = (): void => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    let reset = options.reset === true;
    while (true) {
      const summary = await runFlow({
        flow: flow.file.flow,
        definitionHash: flow.definitionHash,
        source: runtime.source,
        target: runtime.target,
        store: runtime.store,
        stages: runtime.stages,
        maxBatch: runtime.maxBatch,
        reset,
        logger: createLogger(),
        progress: options.progress ? terminalProgress() : undefined,
        signal: controller.signal,
      });
      reset = false;
      report(summary, json);
      if (options.once || controller.signal.aborted) {
        if (summary.error?.code === 'STATE_DEFINITION_CHANGED') return EXIT.usage;
        return summary.status === 'succeeded' ? EXIT.ok : EXIT.failed;
      }
      try {
        await sleep(flow.file.schedule.intervalSeconds * 1000, undefined, { signal: controller.signal });
      } catch {
        return EXIT.ok;
      }
    }
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    await runtime.close();
  }
}

function report(summary: RunSummary, json: boolean): void {
  if (json) printJson(summary);
  else printLine(formatSummary(summary));
  if (summary.error) process.stderr.write(`error ${summary.error.code}: ${summary.error.message}\n`);
}
