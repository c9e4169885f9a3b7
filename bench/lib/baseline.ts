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

/** Streams NDJSON files, timing parse + stringify per block of lines: flat memory at any size. */
export async function baselineOfFiles(files: readonly string[]): Promise<FileBaseline> {
  let lines = 0;
  let bytes = 0;
  let jsonMs = 0;
  let block: string[] = [];
  const flush = (): void => {
    const started = performance.now();
    for (const line of block) JSON.stringify(JSON.parse(line));
    jsonMs += performance.now() - started;
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
