import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES_DIR, SAMPLE_DATA_DIR, sharedDataDir } from '../../testkit/data.ts';
import {
  bundleFullUrlOf,
  type FileItem,
  isResourceFile,
  listResourceFiles,
  readResourceFile,
  resourcesFromJsonText,
} from './resource-files.ts';

const CANARY = 'Qzx9SecretValue';

let dir = '';
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-resource-files-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function write(name: string, content: string | Buffer): string {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
}

async function collect(file: string): Promise<FileItem[]> {
  const out: FileItem[] = [];
  for await (const item of readResourceFile(file)) out.push(item);
  return out;
}

/** The message of an error item (undefined for a resource). */
function messageOf(item: FileItem | undefined): string | undefined {
  return item?.kind === 'error' ? item.message : undefined;
}

const patient = (id: string): Record<string, unknown> => ({ resourceType: 'Patient', id });

describe('readResourceFile: JSON', () => {
  it('reads a single resource from .json and .json.gz', async () => {
    const json = write('one.json', JSON.stringify(patient('a')));
    const gz = write('one.json.gz', gzipSync(JSON.stringify(patient('b'))));
    expect(await collect(json)).toEqual([{ kind: 'resource', resource: patient('a'), at: { file: json } }]);
    expect(await collect(gz)).toEqual([{ kind: 'resource', resource: patient('b'), at: { file: gz } }]);
  });

  it('reads files written with a byte order mark or CRLF line ends, as editors on some systems save them', async () => {
    const json = write('bom.json', `\ufeff${JSON.stringify(patient('a'))}`);
    expect(await collect(json)).toEqual([{ kind: 'resource', resource: patient('a'), at: { file: json } }]);
    const lines = [patient('b'), patient('c')].map((p) => JSON.stringify(p));
    const ndjson = write('bom-crlf.ndjson', `\ufeff${lines.join('\r\n')}\r\n`);
    expect((await collect(ndjson)).map((i) => [i.kind, i.at.line])).toEqual([
      ['resource', 1],
      ['resource', 2],
    ]);
    const gz = write('bom.ndjson.gz', gzipSync(`\ufeff${lines.join('\n')}`));
    expect((await collect(gz)).every((i) => i.kind === 'resource')).toBe(true);
  });

  it('says once that a pretty-printed JSON document is not NDJSON, instead of failing every line', async () => {
    const pretty = write('pretty.ndjson', JSON.stringify(patient('p'), null, 2));
    const items = await collect(pretty);
    expect(items).toHaveLength(1);
    expect(messageOf(items[0])).toContain('not NDJSON');
    // A broken first line of real NDJSON is still an error of that line, and the rest is read.
    const broken = write('broken-first.ndjson', `{\n${JSON.stringify(patient('q'))}\n`);
    expect((await collect(broken)).map((i) => [i.kind, i.at.line])).toEqual([
      ['error', 1],
      ['resource', 2],
    ]);
  });

  it('yields the entries of a Bundle with their index, and an error for an entry without resource', async () => {
    const bundle = {
      resourceType: 'Bundle',
      type: 'collection',
      entry: [
        { resource: patient('a') },
        { fullUrl: 'urn:uuid:x' },
        { resource: { id: 'no-type' } },
        { resource: patient('d') },
      ],
    };
    const file = write('bundle.json', JSON.stringify(bundle));
    const items = await collect(file);
    expect(items.map((i) => [i.kind, i.at.entry])).toEqual([
      ['resource', 0],
      ['error', 1],
      ['error', 2],
      ['resource', 3],
    ]);
    expect(items[3]).toMatchObject({ kind: 'resource', resource: patient('d') });
  });

  it('skips the request- and response-only entries of transactions and batches (bdl-5), as real ones have', async () => {
    const examples = join(sharedDataDir() ?? join(FIXTURES_DIR, 'shared-data'), 'fhir-r4-examples');
    // The official examples: a transaction with DELETE and conditional GET entries, a batch request,
    // a transaction response.
    const read = async (name: string) => (await collect(join(examples, name))).map((i) => i.kind);
    expect(await read('Bundle-bundle-transaction.json')).toEqual([
      'resource',
      'resource',
      'resource',
      'resource',
      'resource',
      'resource',
    ]);
    expect(await read('Bundle-bundle-request-medsallergies.json')).toEqual([]);
    expect(await read('Bundle-bundle-response.json')).toEqual(['resource', 'resource', 'resource']);
    // An entry with neither a resource nor a request or response is still an error.
    const bundle = {
      resourceType: 'Bundle',
      type: 'transaction',
      entry: [
        { request: { method: 'DELETE', url: 'Patient/a' } },
        { fullUrl: 'urn:uuid:y' },
        { response: 'x' },
      ],
    };
    const items = await collect(write('transaction.json', JSON.stringify(bundle)));
    expect(items.map((i) => [i.kind, i.at.entry])).toEqual([
      ['error', 1],
      ['error', 2],
    ]);
  });

  it('reads a real Synthea bundle entry by entry and keeps urn:uuid fullUrls (non-enumerable)', async () => {
    const name = readdirSync(join(SAMPLE_DATA_DIR, 'synthea')).find((f) =>
      f.startsWith('Enda_Schaefer'),
    ) as string;
    const file = join(SAMPLE_DATA_DIR, 'synthea', name);
    const bundle = JSON.parse(gunzipSync(readFileSync(file)).toString('utf8')) as {
      entry: { fullUrl: string; resource: { resourceType: string } }[];
    };
    const items = await collect(file);
    expect(items).toHaveLength(bundle.entry.length);
    expect(items.every((i) => i.kind === 'resource')).toBe(true);
    const first = items[0];
    if (first?.kind !== 'resource') throw new Error('expected a resource');
    expect(first.resource.resourceType).toBe(bundle.entry[0]?.resource.resourceType);
    expect(bundleFullUrlOf(first.resource)).toBe(bundle.entry[0]?.fullUrl);
    expect(bundle.entry[0]?.fullUrl).toMatch(/^urn:uuid:/);
    expect(Object.keys(first.resource)).not.toContain('__bundleFullUrl');
    expect(JSON.stringify(first.resource)).not.toContain('urn:uuid');
  });

  it('a Bundle without entries is itself a resource', async () => {
    const file = write('empty-bundle.json', JSON.stringify({ resourceType: 'Bundle', type: 'searchset' }));
    expect(await collect(file)).toMatchObject([{ kind: 'resource', resource: { resourceType: 'Bundle' } }]);
  });

  it('an empty file is one error item, not a crash', async () => {
    const file = write('empty.json', '');
    const items = await collect(file);
    expect(items).toEqual([
      { kind: 'error', message: 'not valid JSON: unexpected end of input', at: { file } },
    ]);
  });

  it('non-FHIR JSON values are errors', async () => {
    for (const [name, text] of [
      ['array.json', '[{"resourceType":"Patient"}]'],
      ['number.json', '42'],
      ['null.json', 'null'],
      ['object.json', '{"name":"x"}'],
      ['typed.json', '{"resourceType":7}'],
    ] as const) {
      const file = write(name, text);
      expect(await collect(file), name).toEqual([
        { kind: 'error', message: 'not a FHIR resource (no resourceType)', at: { file } },
      ]);
    }
  });

  it('malformed JSON is an error that never quotes the content', async () => {
    const file = write('bad.json', `{"resourceType":"Patient","name":"${CANARY}" ${CANARY}}`);
    const [item, ...rest] = await collect(file);
    expect(rest).toEqual([]);
    expect(item?.kind).toBe('error');
    expect(messageOf(item)).toMatch(/^not valid JSON: syntax error/);
    expect(messageOf(item)).not.toContain(CANARY);
  });

  it('a missing file or a corrupt gzip is an error item', async () => {
    const missing = join(dir, 'missing.json');
    expect(await collect(missing)).toMatchObject([{ kind: 'error', at: { file: missing } }]);
    const corrupt = write('corrupt.json.gz', Buffer.from('not gzip at all'));
    expect(await collect(corrupt)).toMatchObject([{ kind: 'error', at: { file: corrupt } }]);
  });
});

describe('readResourceFile: NDJSON', () => {
  const lines = [
    JSON.stringify(patient('l1')),
    JSON.stringify(patient('l2')),
    `{"resourceType":"Patient","id":"${CANARY}"`, // truncated line 3
    '',
    JSON.stringify(patient('l5')),
    '{"no":"type"}',
    JSON.stringify(patient('l7')),
  ];

  it('yields an error with file and line for a malformed line, and every other line', async () => {
    for (const [name, content] of [
      ['mixed.ndjson', lines.join('\n')],
      ['mixed.jsonl', lines.join('\r\n')],
      ['mixed.ndjson.gz', gzipSync(`${lines.join('\n')}\n`)],
    ] as const) {
      const file = write(name, content);
      const items = await collect(file);
      expect(
        items.map((i) => [i.kind, i.at.line, i.kind === 'resource' ? i.resource.id : undefined]),
        name,
      ).toEqual([
        ['resource', 1, 'l1'],
        ['resource', 2, 'l2'],
        ['error', 3, undefined],
        ['resource', 5, 'l5'],
        ['error', 6, undefined],
        ['resource', 7, 'l7'],
      ]);
      for (const item of items) expect(item.at.file).toBe(file);
      expect(messageOf(items[2]) ?? '').not.toContain(CANARY);
    }
  });

  it('an empty NDJSON file yields nothing', async () => {
    expect(await collect(write('empty.ndjson', ''))).toEqual([]);
    expect(await collect(write('blank.ndjson', '\n\n  \n'))).toEqual([]);
  });

  it('a truncated gzip stream yields what was read, then an error', async () => {
    const full = gzipSync(
      Array.from({ length: 2000 }, (_, i) => JSON.stringify(patient(`p${i}`))).join('\n'),
    );
    const file = write('truncated.ndjson.gz', full.subarray(0, Math.floor(full.length / 2)));
    const items = await collect(file);
    const last = items.at(-1);
    expect(last?.kind).toBe('error');
    expect(messageOf(last)).toMatch(/^file ended abnormally after line \d+/);
    expect(items.slice(0, -1).every((i) => i.kind === 'resource')).toBe(true);
  });

  it('reads the real provider directory NDJSON.gz', async () => {
    const items = await collect(join(SAMPLE_DATA_DIR, 'directory', 'Practitioner.ndjson.gz'));
    expect(items.length).toBeGreaterThan(200);
    expect(items.every((i) => i.kind === 'resource' && i.resource.resourceType === 'Practitioner')).toBe(
      true,
    );
    expect(items.map((i) => i.at.line)).toEqual(items.map((_, index) => index + 1));
  });
});

describe('listing and text parsing', () => {
  it('recognises resource file extensions', () => {
    for (const ok of ['a.json', 'a.json.gz', 'a.ndjson', 'a.ndjson.gz', 'a.jsonl'])
      expect(isResourceFile(ok)).toBe(true);
    for (const no of ['a.md', 'a.txt', 'a.gz', 'a.json.bak', 'json']) expect(isResourceFile(no)).toBe(false);
  });

  it('walks directories recursively, sorted, skipping other files', async () => {
    const root = join(dir, 'tree');
    mkdirSync(join(root, 'b-sub'), { recursive: true });
    writeFileSync(join(root, 'c.ndjson'), '');
    writeFileSync(join(root, 'a.json'), '{}');
    writeFileSync(join(root, 'README.md'), '# x');
    writeFileSync(join(root, 'notes.txt'), 'x');
    writeFileSync(join(root, 'b-sub', 'z.json.gz'), gzipSync('{}'));
    expect(await listResourceFiles([root])).toEqual([
      join(root, 'a.json'),
      join(root, 'b-sub', 'z.json.gz'),
      join(root, 'c.ndjson'),
    ]);
    expect(await listResourceFiles([join(root, 'notes.txt'), join(root, 'a.json')])).toEqual([
      join(root, 'a.json'),
    ]);
  });

  it('resourcesFromJsonText keeps the given location', () => {
    const items = [...resourcesFromJsonText(JSON.stringify(patient('x')), { file: 'f', line: 9 })];
    expect(items).toEqual([{ kind: 'resource', resource: patient('x'), at: { file: 'f', line: 9 } }]);
  });
});
