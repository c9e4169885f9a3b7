import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';

/**
 * A minimal Bulk Data server for tests that need what the EHR sandbox does not do: malformed or
 * truncated NDJSON, a connection dropped mid-file, gzip, files on another origin, error files, a job
 * that never completes. It serves `GET /fhir/$export`, `GET|DELETE /fhir/status/1`, `GET /files/:name`
 * and `POST /token`, and records every request.
 */

/** What one GET of a file does; after the list runs out, files are served normally. */
export type FileAttempt =
  | { readonly kind: 'ok' }
  /** Sends this many bytes of the body (chunked), then destroys the socket. */
  | { readonly kind: 'drop'; readonly afterBytes: number }
  /** Sends this many bytes, then ends the response cleanly (a silent truncation). */
  | { readonly kind: 'short'; readonly afterBytes: number }
  | { readonly kind: 'status'; readonly status: number; readonly retryAfter?: string };

export interface FakeFile {
  readonly body: string | Buffer;
  /** `encoding`: gzip with Content-Encoding; `raw`: gzip bytes without it (a `.ndjson.gz` file). */
  readonly gzip?: 'encoding' | 'raw';
  readonly attempts?: readonly FileAttempt[];
}

export interface FakeBulkOptions {
  /** The completion manifest, built from the server's origin. */
  readonly manifest: (origin: string) => unknown;
  readonly files?: Readonly<Record<string, FakeFile>>;
  /** 202 answers before the manifest; `Infinity` never completes. Default 0. */
  readonly pollsBeforeReady?: number;
  readonly retryAfter?: string;
  /** Answer the kick-off with this status instead of 202. */
  readonly kickOffStatus?: number;
}

export interface RecordedRequest {
  /** Arrival, ms since the epoch. */
  readonly at: number;
  readonly method: string;
  readonly path: string;
  readonly query: string;
  readonly authorization: string | undefined;
}

export interface FakeBulkServer {
  readonly origin: string;
  /** FHIR base: `${origin}/fhir`. */
  readonly url: string;
  readonly requests: RecordedRequest[];
  close(): Promise<void>;
}

export async function startFakeBulkServer(options: FakeBulkOptions): Promise<FakeBulkServer> {
  const requests: RecordedRequest[] = [];
  const fileHits = new Map<string, number>();
  let polls = 0;
  let origin = '';

  const handle = (req: IncomingMessage, res: ServerResponse): ServerResponse => {
    const url = new URL(req.url ?? '/', origin);
    requests.push({
      at: Date.now(),
      method: req.method ?? 'GET',
      path: url.pathname,
      query: url.search,
      authorization: req.headers.authorization,
    });
    const path = decodeURIComponent(url.pathname);
    if (req.method === 'POST' && path === '/token') {
      return json(res, 200, { access_token: 'fake-token', token_type: 'bearer', expires_in: 300 });
    }
    if (req.method === 'GET' && path === '/fhir/$export') {
      if (options.kickOffStatus !== undefined) {
        return json(res, options.kickOffStatus, outcome('invalid'));
      }
      res.setHeader('content-location', `${origin}/fhir/status/1`);
      return json(res, 202, outcome('informational'));
    }
    if (path === '/fhir/status/1') {
      if (req.method === 'DELETE') return json(res, 202, outcome('informational'));
      polls++;
      if (polls <= (options.pollsBeforeReady ?? 0)) {
        res.setHeader('x-progress', `step ${polls}`);
        if (options.retryAfter !== undefined) res.setHeader('retry-after', options.retryAfter);
        res.statusCode = 202;
        return res.end();
      }
      return json(res, 200, options.manifest(origin));
    }
    const name = /^\/files\/(.+)$/.exec(path)?.[1];
    const file = name === undefined ? undefined : options.files?.[name];
    if (req.method === 'GET' && name !== undefined && file) {
      const hit = fileHits.get(name) ?? 0;
      fileHits.set(name, hit + 1);
      return serveFile(res, file, file.attempts?.[hit] ?? { kind: 'ok' });
    }
    return json(res, 404, outcome('not-found'));
  };

  const server: Server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    origin,
    url: `${origin}/fhir`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function serveFile(res: ServerResponse, file: FakeFile, attempt: FileAttempt): ServerResponse {
  if (attempt.kind === 'status') {
    if (attempt.retryAfter !== undefined) res.setHeader('retry-after', attempt.retryAfter);
    return json(res, attempt.status, outcome(attempt.status >= 500 ? 'exception' : 'not-found'));
  }
  const raw = typeof file.body === 'string' ? Buffer.from(file.body, 'utf8') : file.body;
  const body = file.gzip ? gzipSync(raw) : raw;
  res.statusCode = 200;
  res.setHeader('content-type', 'application/fhir+ndjson');
  if (file.gzip === 'encoding') res.setHeader('content-encoding', 'gzip');
  if (attempt.kind === 'ok') {
    res.setHeader('content-length', body.length);
    return res.end(body);
  }
  // Chunked, so the client cannot tell a short body from Content-Length.
  res.write(body.subarray(0, attempt.afterBytes), () => {
    if (attempt.kind === 'drop') setTimeout(() => res.socket?.destroy(), 10);
    else res.end();
  });
  return res;
}

function json(res: ServerResponse, status: number, body: unknown): ServerResponse {
  res.statusCode = status;
  res.setHeader('content-type', 'application/fhir+json');
  return res.end(JSON.stringify(body));
}

function outcome(code: string): unknown {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'information', code }] };
}

/** NDJSON text of the given values, one per line, with a final newline. */
export function ndjson(values: readonly unknown[]): string {
  return values.map((v) => `${JSON.stringify(v)}\n`).join('');
}
