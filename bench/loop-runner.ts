/**
 * The latency benchmark's in-process loop: `runFlow` back to back on one runtime (no schedule sleep,
 * unlike `sluice run`, whose interval is at least one second), until SIGTERM. Prints one JSON line per
 * run: `{durationMs, read, status}` (counts only).
 *
 *   node bench/loop-runner.ts FLOW.yaml
 */
import { pino } from 'pino';
import { loadFlow } from '../src/engine/config/load-flow.ts';
import { runFlow } from '../src/engine/pipeline/run-flow.ts';
import { buildFlowRuntime, flowRunOptions } from '../src/engine/runtime/build-flow.ts';

const file = process.argv[2];
if (file === undefined) {
  process.stderr.write('usage: node bench/loop-runner.ts FLOW.yaml\n');
  process.exit(2);
}
const flow = loadFlow(file);
const runtime = await buildFlowRuntime(flow);
const controller = new AbortController();
process.once('SIGTERM', () => controller.abort());
process.once('SIGINT', () => controller.abort());
const logger = pino({ level: 'silent' });
try {
  while (!controller.signal.aborted) {
    const summary = await runFlow({ ...flowRunOptions(flow, runtime), logger, signal: controller.signal });
    process.stdout.write(
      `${JSON.stringify({ durationMs: summary.durationMs, read: summary.read, status: summary.status })}\n`,
    );
    if (summary.error && !controller.signal.aborted) {
      process.stderr.write(`run failed: ${summary.error.code}\n`);
    }
  }
} finally {
  await runtime.close();
}
