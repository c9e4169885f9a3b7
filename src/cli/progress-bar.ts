import type { ProgressSink } from '../engine/pipeline/progress.ts';

/**
 * A one-line progress bar per stream on a terminal (stderr, so stdout stays clean for results).
 * Draws nothing when stderr is not a TTY.
 */
export function terminalProgress(stream: NodeJS.WriteStream = process.stderr): ProgressSink {
  if (!stream.isTTY) return { streamStarted() {}, pageCommitted() {}, streamFinished() {} };
  const started = new Map<string, number>();
  const draw = (name: string, processed: number, total: number | undefined, done: boolean): void => {
    const width = 28;
    const seconds = Math.max((Date.now() - (started.get(name) ?? Date.now())) / 1000, 0.001);
    const rate = Math.round(processed / seconds);
    let bar: string;
    if (total !== undefined && total > 0) {
      const ratio = Math.min(processed / total, 1);
      const filled = Math.round(ratio * width);
      bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${processed}/${total}`;
    } else bar = `${processed} records`;
    stream.write(`\r\x1b[2K${name.padEnd(14)} ${bar}  ${rate}/s${done ? '\n' : ''}`);
  };
  return {
    streamStarted(name) {
      started.set(name, Date.now());
      draw(name, 0, undefined, false);
    },
    pageCommitted(name, processed, total) {
      draw(name, processed, total, false);
    },
    streamFinished(name, processed) {
      draw(name, processed, processed, true);
    },
  };
}
