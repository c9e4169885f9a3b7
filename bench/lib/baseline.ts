/**
 * The baseline every figure is compared with: bare `JSON.parse` + `JSON.stringify` of the same NDJSON
 * lines, on one core, in the same run — the least any pipeline must do with a record, so a ratio to it
 * says how much the rest costs, whatever the machine and its load.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { rate } from './measure.ts';

/** Lines per second for parse + stringify of in-memory lines. */
export function baselineRate(lines: readonly string[], minMs: number): Promise<number> {
  return rate(
    lines.length,
    () => {
      for (const line of lines) JSON.stringify(JSON.parse(line));
    },
    minMs,
  );
}

export interface FileBaseline {
  readonly lines: number;
  readonly bytes: number;
  /** Time spent in parse + stringify only (reading the files is not counted). */
  readonly jsonMs: number;
  readonly perSec: number;
}

/**
 * Streams NDJSON files, timing parse + stringify per block of lines: flat memory at any size. Each
 * block is timed `rounds` times and its median counts, so a burst of load from a neighbour (or the
 * first block's JIT warm-up) does not move the baseline that every end-to-end ratio divides by.
 */
export async function baselineOfFiles(files: readonly string[], rounds = 3): Promise<FileBaseline> {
  let lines = 0;
  let bytes = 0;
  let jsonMs = 0;
  let block: string[] = [];
  const flush = (): void => {
    const times: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const started = performance.now();
      for (const line of block) JSON.stringify(JSON.parse(line));
      times.push(performance.now() - started);
    }
    times.sort((a, b) => a - b);
    jsonMs += times[Math.floor(times.length / 2)] ?? 0;
    block = [];
  };
  for (const file of files) {
    const reader = createInterface({ input: createReadStream(file), crlfDelay: Number.POSITIVE_INFINITY });
    for await (const line of reader) {
      if (line === '') continue;
      lines++;
      bytes += Buffer.byteLength(line) + 1;
      block.push(line);
      if (block.length === 2000) flush();
    }
  }
  flush();
  return { lines, bytes, jsonMs, perSec: jsonMs > 0 ? (lines / jsonMs) * 1000 : 0 };
}
