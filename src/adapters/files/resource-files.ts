import { createReadStream } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { createGunzip, gunzip } from 'node:zlib';

const gunzipAsync = promisify(gunzip);

/** Where an item came from, for error messages and quarantine entries (no content). */
export interface FileLocation {
  readonly file: string;
  /** 1-based line number for NDJSON. */
  readonly line?: number;
  /** 0-based entry index inside a Bundle. */
  readonly entry?: number;
}

export type FileItem =
  | { readonly kind: 'resource'; readonly resource: Record<string, unknown>; readonly at: FileLocation }
  /** A line or file that could not be parsed; `message` describes the problem, never the content. */
  | { readonly kind: 'error'; readonly message: string; readonly at: FileLocation };

export const RESOURCE_FILE_EXTENSIONS = ['.json', '.json.gz', '.ndjson', '.ndjson.gz', '.jsonl'] as const;

export function isResourceFile(name: string): boolean {
  return RESOURCE_FILE_EXTENSIONS.some((ext) => name.endsWith(ext));
}

/** Lists resource files under the given files or directories (directories are walked recursively, sorted). */
export async function listResourceFiles(paths: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const path of paths) {
    const info = await stat(path);
    if (info.isDirectory()) {
      const names = (await readdir(path)).sort();
      out.push(
        ...(await listResourceFiles(names.map((n) => join(path, n)).filter((p) => !p.endsWith('.md')))),
      );
    } else if (isResourceFile(path)) {
      out.push(path);
    }
  }
  return out;
}

/**
 * Streams FHIR resources from JSON files (a single resource, or a Bundle whose entries are yielded
 * one by one), NDJSON files (line by line, so memory stays flat), and their gzip forms. Unparseable
 * content is yielded as an `error` item with its location; reading goes on.
 */
export async function* readResourceFile(file: string): AsyncGenerator<FileItem> {
  if (file.endsWith('.ndjson') || file.endsWith('.ndjson.gz') || file.endsWith('.jsonl')) {
    yield* readNdjson(file);
    return;
  }
  let text: string;
  try {
    const raw = await readFile(file);
    text = withoutBom((file.endsWith('.gz') ? await gunzipAsync(raw) : raw).toString('utf8'));
  } catch (err) {
    yield { kind: 'error', message: `cannot read file: ${(err as Error).message}`, at: { file } };
    return;
  }
  yield* resourcesFromJsonText(text, { file });
}

/** Parses one JSON document (a resource or a Bundle) into items. */
export function* resourcesFromJsonText(text: string, at: FileLocation): Generator<FileItem> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    yield { kind: 'error', message: `not valid JSON: ${jsonErrorSummary(err)}`, at };
    return;
  }
  yield* resourcesFromValue(doc, at);
}

function* resourcesFromValue(doc: unknown, at: FileLocation): Generator<FileItem> {
  if (!isObject(doc) || typeof doc.resourceType !== 'string') {
    yield { kind: 'error', message: 'not a FHIR resource (no resourceType)', at };
    return;
  }
  if (doc.resourceType !== 'Bundle' || !Array.isArray(doc.entry) || at.entry !== undefined) {
    yield { kind: 'resource', resource: doc, at };
    return;
  }
  for (const [index, entry] of doc.entry.entries()) {
    const location = { ...at, entry: index };
    // An entry of a transaction or batch (a DELETE, a conditional GET) or of its response may carry
    // no resource (FHIR invariant bdl-5): it is not data, and not an error.
    if (
      isObject(entry) &&
      entry.resource === undefined &&
      (isObject(entry.request) || isObject(entry.response))
    )
      continue;
    if (!isObject(entry) || !isObject(entry.resource) || typeof entry.resource.resourceType !== 'string') {
      yield { kind: 'error', message: 'bundle entry without a resource', at: location };
      continue;
    }
    yield { kind: 'resource', resource: withFullUrl(entry.resource, entry.fullUrl), at: location };
  }
}

/**
 * Keeps a Bundle entry's `urn:uuid:` fullUrl with the resource (as a non-FHIR property that callers may
 * use to resolve in-bundle references), because transaction bundles reference entries by fullUrl.
 */
function withFullUrl(resource: Record<string, unknown>, fullUrl: unknown): Record<string, unknown> {
  if (typeof fullUrl !== 'string' || !fullUrl.startsWith('urn:')) return resource;
  Object.defineProperty(resource, BUNDLE_FULL_URL, { value: fullUrl, enumerable: false });
  return resource;
}

/** Symbol-like key under which `readResourceFile` keeps a bundle entry's urn fullUrl (non-enumerable). */
export const BUNDLE_FULL_URL = '__bundleFullUrl';

export function bundleFullUrlOf(resource: object): string | undefined {
  const value = (resource as Record<string, unknown>)[BUNDLE_FULL_URL];
  return typeof value === 'string' ? value : undefined;
}

async function* readNdjson(file: string): AsyncGenerator<FileItem> {
  const input = createReadStream(file);
  const stream = file.endsWith('.gz') ? input.pipe(createGunzip()) : input;
  const lines = createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY });
  let line = 0;
  try {
    for await (const read of lines) {
      line++;
      const text = line === 1 ? withoutBom(read) : read;
      if (text.trim() === '') continue;
      // A pretty-printed JSON document saved as NDJSON would fail on every line: say it once.
      if (line === 1 && (text.trim() === '{' || text.trim() === '[') && (await isOneJsonDocument(file))) {
        yield {
          kind: 'error',
          message:
            'the file is one JSON document over many lines, not NDJSON (one resource per line): name it .json',
          at: { file },
        };
        return;
      }
      yield* resourcesFromJsonText(text, { file, line });
    }
  } catch (err) {
    yield {
      kind: 'error',
      message: `file ended abnormally after line ${line}: ${(err as Error).message}`,
      at: { file, line },
    };
  } finally {
    lines.close();
    input.destroy();
  }
}

/** True when the whole file parses as one JSON value. */
async function isOneJsonDocument(file: string): Promise<boolean> {
  try {
    const raw = await readFile(file);
    JSON.parse(withoutBom((file.endsWith('.gz') ? await gunzipAsync(raw) : raw).toString('utf8')));
    return true;
  } catch {
    return false;
  }
}

/** The text without a leading UTF-8 byte order mark, which editors on some systems write (RFC 8259 §8.1). */
export function withoutBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** JSON.parse messages quote the offending text; keep only the position so no content leaks. */
function jsonErrorSummary(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const position = /position (\d+)/.exec(message)?.[1];
  if (/Unexpected end/.test(message)) return 'unexpected end of input';
  return position === undefined ? 'syntax error' : `syntax error at position ${position}`;
}
