import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { gunzipIfCompressed, type NdjsonLine, parseLine, type RawLine, splitLines } from './ndjson-lines.ts';

async function* chunked(bytes: Buffer, cuts: readonly number[]): AsyncGenerator<Uint8Array> {
  let start = 0;
  for (const cut of [...new Set(cuts)].filter((c) => c > 0 && c < bytes.length).sort((a, b) => a - b)) {
    yield new Uint8Array(bytes.subarray(start, cut));
    start = cut;
  }
  if (start < bytes.length) yield new Uint8Array(bytes.subarray(start));
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

async function parsedLines(bytes: Buffer, cuts: readonly number[] = [], max?: number): Promise<NdjsonLine[]> {
  const out: NdjsonLine[] = [];
  let n = 0;
  for await (const raw of splitLines(gunzipIfCompressed(chunked(bytes, cuts)), max)) {
    const line = parseLine(raw, ++n);
    if (line) out.push(line);
  }
  return out;
}

const lineText = fc.string({ unit: 'grapheme', maxLength: 40 }).map((s) => s.replace(/\n/g, ' '));

describe('splitLines', () => {
  it('yields the same lines whatever the chunking, multi-byte characters included (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(lineText, { maxLength: 20 }),
        fc.boolean(),
        fc.array(fc.nat({ max: 2000 }), { maxLength: 30 }),
        async (lines, trailingNewline, cuts) => {
          const text = lines.join('\n') + (trailingNewline && lines.length > 0 ? '\n' : '');
          const raws = await collect(splitLines(chunked(Buffer.from(text, 'utf8'), cuts)));
          const expected = text.split('\n');
          // The empty piece after a final newline is not a line.
          if (expected.at(-1) === '') expected.pop();
          expect(raws.map((r) => r.bytes.toString('utf8'))).toEqual(expected);
          raws.forEach((r, i) => {
            expect(r.terminated).toBe(i < raws.length - 1 || text.endsWith('\n'));
          });
        },
      ),
      { numRuns: 200 },
    );
  });

  it('does not buffer a line longer than the limit, and goes on after it', async () => {
    const text = `{"a":1}\n${'x'.repeat(5000)}\n{"b":2}\n`;
    const lines = await parsedLines(Buffer.from(text), [100, 2000, 4000, 5003], 1000);
    expect(lines.map((l) => l.kind)).toEqual(['value', 'malformed', 'value']);
    const big = lines[1];
    expect(big?.kind === 'malformed' && big.text).not.toContain('xxx');
    expect(big?.number).toBe(2);
    expect(lines[2]).toEqual({ kind: 'value', number: 3, value: { b: 2 } });
  });
});

describe('parseLine', () => {
  const raw = (text: string | Buffer, terminated = true): RawLine => {
    const bytes = typeof text === 'string' ? Buffer.from(text) : text;
    return { bytes, size: bytes.length, oversized: false, terminated };
  };

  it('parses JSON, skips blank lines, strips CR', () => {
    expect(parseLine(raw('{"resourceType":"Patient"}\r'), 4)).toEqual({
      kind: 'value',
      number: 4,
      value: { resourceType: 'Patient' },
    });
    expect(parseLine(raw('   '), 1)).toBeUndefined();
    expect(parseLine(raw(''), 1)).toBeUndefined();
    // A file written with a byte order mark: the first line still parses.
    expect(parseLine(raw('\ufeff{"resourceType":"Patient"}'), 1)).toMatchObject({ kind: 'value' });
  });

  it('keeps a malformed line as raw text with a reason that does not quote it', () => {
    const line = parseLine(raw('{"name":"Jane Roe", oops}'), 7);
    expect(line).toMatchObject({ kind: 'malformed', number: 7, text: '{"name":"Jane Roe", oops}' });
    expect(line?.kind === 'malformed' && line.reason).not.toContain('Jane');
    const cut = parseLine(raw('{"resourceType":"Pat', false), 8);
    expect(cut?.kind === 'malformed' && cut.reason).toMatch(/last line cut short/);
  });

  it('reports bytes that are not UTF-8 as malformed', () => {
    const line = parseLine(raw(Buffer.from([0x7b, 0xff, 0xfe, 0x7d])), 1);
    expect(line).toMatchObject({ kind: 'malformed', reason: 'not valid UTF-8' });
  });
});

describe('gunzipIfCompressed', () => {
  it('gunzips gzip bytes and passes plain bytes through, whatever the chunking (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ id: fc.string(), n: fc.integer() }), { maxLength: 30 }),
        fc.array(fc.nat({ max: 3000 }), { maxLength: 20 }),
        fc.boolean(),
        async (values, cuts, compress) => {
          const text = values.map((v) => `${JSON.stringify(v)}\n`).join('');
          const bytes = compress ? gzipSync(text) : Buffer.from(text);
          const lines = await parsedLines(bytes, cuts);
          expect(lines.map((l) => (l.kind === 'value' ? l.value : l.text))).toEqual(values);
        },
      ),
      { numRuns: 100 },
    );
  });

  it('fails with a zlib error on corrupt gzip', async () => {
    const bytes = gzipSync('{"a":1}\n'.repeat(100));
    bytes.fill(0x41, 12, 30);
    await expect(parsedLines(bytes)).rejects.toMatchObject({ code: expect.stringMatching(/^Z_/) });
  });

  it('yields a single byte body as is', async () => {
    expect(await parsedLines(Buffer.from('7'))).toEqual([{ kind: 'value', number: 1, value: 7 }]);
  });
});
