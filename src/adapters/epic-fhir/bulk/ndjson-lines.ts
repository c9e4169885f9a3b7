import { pipeline, Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';

/**
 * Streaming NDJSON: bytes in, one line at a time out, so a file of any size costs one line of memory.
 * Lines are split on bytes (not decoded text), which keeps a multi-byte UTF-8 character that straddles
 * two chunks intact.
 */

/** One raw line. `bytes` is empty when the line was longer than the limit (then only `size` is known). */
export interface RawLine {
  readonly bytes: Buffer;
  /** Length of the line in bytes, without the newline. */
  readonly size: number;
  readonly oversized: boolean;
  /** False for a last line that the body ended without a newline. */
  readonly terminated: boolean;
}

/** One parsed line. `number` is 1-based and counts every line, blank ones included. */
export type NdjsonLine =
  | { readonly kind: 'value'; readonly number: number; readonly value: unknown }
  /** Not JSON: `text` is the raw line (the quarantine keeps it), `reason` describes it without content. */
  | { readonly kind: 'malformed'; readonly number: number; readonly text: string; readonly reason: string };

/** Longest line kept in memory; a longer one is reported as malformed rather than buffered. */
export const DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024;

const NEWLINE = 0x0a;

/** Splits a byte stream on `\n`. A final line without a newline is yielded with `terminated: false`. */
export async function* splitLines(
  chunks: AsyncIterable<Uint8Array>,
  maxLineBytes: number = DEFAULT_MAX_LINE_BYTES,
): AsyncGenerator<RawLine> {
  let parts: Buffer[] = [];
  let size = 0;
  let oversized = false;
  for await (const chunk of chunks) {
    const buffer = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let start = 0;
    for (;;) {
      const newline = buffer.indexOf(NEWLINE, start);
      const piece = buffer.subarray(start, newline === -1 ? buffer.length : newline);
      if (!oversized && size + piece.length > maxLineBytes) {
        oversized = true;
        parts = [];
      }
      if (!oversized && piece.length > 0) parts.push(piece);
      size += piece.length;
      if (newline === -1) break;
      yield line(parts, size, oversized, true);
      parts = [];
      size = 0;
      oversized = false;
      start = newline + 1;
    }
  }
  if (size > 0) yield line(parts, size, oversized, false);
}

function line(parts: Buffer[], size: number, oversized: boolean, terminated: boolean): RawLine {
  const bytes = oversized
    ? Buffer.alloc(0)
    : parts.length === 1
      ? (parts[0] as Buffer)
      : Buffer.concat(parts);
  return { bytes, size, oversized, terminated };
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const lenientUtf8 = new TextDecoder('utf-8');

/**
 * Parses one raw line; blank lines give undefined. Never throws: a line that is not UTF-8 or not JSON
 * comes back as `malformed` with its text, so one bad line costs one record, not the file.
 */
export function parseLine(raw: RawLine, number: number): NdjsonLine | undefined {
  if (raw.oversized) {
    return {
      kind: 'malformed',
      number,
      text: `[line of ${raw.size} bytes not kept: longer than the limit]`,
      reason: `line longer than the limit (${raw.size} bytes)`,
    };
  }
  let text: string;
  try {
    text = utf8.decode(raw.bytes);
  } catch {
    return { kind: 'malformed', number, text: lenientUtf8.decode(raw.bytes), reason: 'not valid UTF-8' };
  }
  if (text.endsWith('\r')) text = text.slice(0, -1);
  if (text.trim() === '') return undefined;
  try {
    return { kind: 'value', number, value: JSON.parse(text) };
  } catch (err) {
    const reason = raw.terminated ? jsonErrorSummary(err) : `last line cut short: ${jsonErrorSummary(err)}`;
    return { kind: 'malformed', number, text, reason };
  }
}

/** JSON.parse messages quote the offending text; keep only the position so no content leaks. */
function jsonErrorSummary(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  if (/Unexpected end/.test(message)) return 'not JSON: unexpected end of input';
  const position = /position (\d+)/.exec(message)?.[1];
  return position === undefined ? 'not JSON: syntax error' : `not JSON: syntax error at position ${position}`;
}

/**
 * Passes bytes through, gunzipping them when they start with the gzip magic number. NDJSON text can
 * never start with 0x1f, so sniffing is safe; it covers servers that serve `.ndjson.gz` files as
 * plain bytes (fetch already undoes `Content-Encoding: gzip`). zlib errors surface from the iterator.
 */
export async function* gunzipIfCompressed(chunks: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const iterator = chunks[Symbol.asyncIterator]();
  let head = Buffer.alloc(0);
  try {
    while (head.length < 2) {
      const next = await iterator.next();
      if (next.done) {
        if (head.length > 0) yield head;
        return;
      }
      head = Buffer.concat([head, next.value]);
    }
    const rest = (async function* (): AsyncGenerator<Uint8Array> {
      yield head;
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        yield next.value;
      }
    })();
    if (head[0] !== 0x1f || head[1] !== 0x8b) {
      yield* rest;
      return;
    }
    const gunzip = createGunzip();
    // The callback form destroys `gunzip` with the source's error, so iterating it throws that error.
    pipeline(Readable.from(rest), gunzip, () => undefined);
    yield* gunzip as AsyncIterable<Buffer>;
  } finally {
    await iterator.return?.();
  }
}
