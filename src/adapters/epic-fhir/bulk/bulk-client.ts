import { setTimeout as sleep } from 'node:timers/promises';
import type { RetryPolicy } from 'cockatiel';
import { SluiceError } from '../../../core/errors/index.ts';
import { HttpStatusError, NetworkError } from '../../http/http-error.ts';
import { errorCodes, type JsonResponse, requestJson } from '../../http/request.ts';
import { parseRetryAfter } from '../../http/retry-after.ts';
import { backoffDelay } from '../../http/retry-policy.ts';
import type { BackendServicesAuth } from '../smart-auth.ts';
import { type BulkFile, type BulkManifest, parseManifest } from './manifest.ts';
import {
  DEFAULT_MAX_LINE_BYTES,
  gunzipIfCompressed,
  type NdjsonLine,
  parseLine,
  splitLines,
} from './ndjson-lines.ts';

export interface BulkClientConfig {
  /** The FHIR base URL; status and file URLs must share its origin unless listed in `allowedOrigins`. */
  readonly baseUrl: string;
  readonly auth?: BackendServicesAuth;
  /** Retries transient failures (429, 5xx, network) of the kick-off, each status poll and file opens. */
  readonly retry: RetryPolicy;
  /** Per-request timeout of kick-off and status requests; default 60 s. */
  readonly timeoutMs?: number;
  /** Longest wait for an export to complete, from the first poll; default 2 hours. */
  readonly maxWaitMs?: number;
  /** Poll interval when the server sends no usable Retry-After; default 5 s. */
  readonly pollIntervalMs?: number;
  /** Bounds applied to the server's Retry-After on 202 answers; default 1 s and 2 minutes. */
  readonly minPollIntervalMs?: number;
  readonly maxPollIntervalMs?: number;
  /** Other origins (e.g. `https://files.example.org`) trusted to serve status and output files. */
  readonly allowedOrigins?: readonly string[];
  /** Attempts per file (each re-reads the file from the start); default 5. */
  readonly downloadAttempts?: number;
  /** First backoff step between download attempts; default 1 s (doubling, with jitter, up to 30 s). */
  readonly downloadRetryDelayMs?: number;
  /** A download attempt fails when no byte arrives for this long while reading; default 2 minutes. */
  readonly downloadIdleTimeoutMs?: number;
  readonly maxLineBytes?: number;
  readonly random?: () => number;
}

export type ExportLevel =
  | { readonly kind: 'system' }
  | { readonly kind: 'patient' }
  | { readonly kind: 'group'; readonly groupId: string };

export interface ExportRequest {
  /** Default system level. */
  readonly level?: ExportLevel;
  readonly types?: readonly string[];
  /** FHIR instant; only resources changed after it (and deletions after it) are exported. */
  readonly since?: string;
}

export interface ExportProgress {
  readonly polls: number;
  readonly elapsedMs: number;
  /** The server's X-Progress text, reduced to plain printable characters (at most 100). */
  readonly text?: string;
}

/** A download attempt that failed in a way worth repeating (network, 5xx, a file cut short). */
class TransientFailure extends Error {
  override readonly name = 'TransientFailure';
  readonly retryAfterMs: number | undefined;
  constructor(message: string, retryAfterMs?: number, options?: ErrorOptions) {
    super(message, options);
    this.retryAfterMs = retryAfterMs;
  }
}

/**
 * A FHIR Bulk Data Access (IG v2) client: kick-off, status polling, streamed NDJSON downloads and
 * clean-up. Transient failures are retried where they happen (a failed poll polls again, a failed
 * download re-reads that file), so nothing restarts the export. The bearer token is only ever sent
 * to the FHIR base's origin or an origin the operator listed.
 */
export class BulkExportClient {
  readonly #config: BulkClientConfig;
  readonly #base: URL;
  readonly #origins: ReadonlySet<string>;

  constructor(config: BulkClientConfig) {
    this.#config = config;
    this.#base = new URL(`${config.baseUrl.replace(/\/$/, '')}/`);
    this.#origins = new Set([
      this.#base.origin,
      ...(config.allowedOrigins ?? []).map((o) => new URL(o).origin),
    ]);
  }

  /** Starts an export; returns the absolute status URL (Content-Location). */
  async kickOff(request: ExportRequest, signal: AbortSignal): Promise<string> {
    const url = new URL(exportPath(request.level ?? { kind: 'system' }), this.#base);
    if (request.types?.length) url.searchParams.set('_type', request.types.join(','));
    if (request.since !== undefined) url.searchParams.set('_since', request.since);
    const response = await this.#json('GET', url.toString(), 'the $export kick-off', signal, {
      accept: 'application/fhir+json',
      prefer: 'respond-async',
    });
    if (response.status !== 202) {
      throw new SluiceError(
        'SRC_BAD_RESPONSE',
        `The EHR answered the $export kick-off with HTTP ${response.status} instead of 202 Accepted.`,
        { details: { status: response.status } },
      );
    }
    const location = response.headers.get('content-location');
    if (!location) {
      throw new SluiceError(
        'SRC_BAD_RESPONSE',
        'The EHR answered the $export kick-off without Content-Location.',
      );
    }
    return this.#checkedUrl(location, url.toString(), 'status URL');
  }

  /**
   * Polls the status URL until the manifest is ready, waiting as long as the server's Retry-After asks
   * (within the configured bounds). Transient poll failures are retried by the policy. The caller
   * should `release` the status URL afterwards, whatever happened.
   */
  async waitForManifest(
    statusUrl: string,
    signal: AbortSignal,
    onProgress?: (progress: ExportProgress) => void,
  ): Promise<BulkManifest> {
    const started = Date.now();
    const maxWait = this.#config.maxWaitMs ?? 2 * 3600_000;
    const minPoll = this.#config.minPollIntervalMs ?? 1000;
    const maxPoll = this.#config.maxPollIntervalMs ?? 120_000;
    let polls = 0;
    for (;;) {
      polls++;
      const response = await this.#json('GET', statusUrl, 'the export status', signal, {
        accept: 'application/json',
      });
      if (response.status === 200) return parseManifest(response.body, statusUrl);
      if (response.status !== 202) {
        throw new SluiceError(
          'SRC_BAD_RESPONSE',
          `The EHR's export status answered HTTP ${response.status} (expected 202 or 200).`,
          { details: { status: response.status } },
        );
      }
      const text = progressText(response.headers.get('x-progress'));
      onProgress?.({ polls, elapsedMs: Date.now() - started, ...(text === undefined ? {} : { text }) });
      const retryAfter = parseRetryAfter(response.headers.get('retry-after'), Date.now());
      const asked = retryAfter.kind === 'delay' ? retryAfter.ms : (this.#config.pollIntervalMs ?? 5000);
      const delay = Math.min(maxPoll, Math.max(minPoll, asked));
      if (Date.now() - started + delay > maxWait) {
        throw new SluiceError(
          'SRC_EXPORT_TIMEOUT',
          `The EHR's bulk export did not complete within ${Math.round(maxWait / 1000)} s (${polls} polls).`,
          { details: { polls, maxWaitMs: maxWait } },
        );
      }
      await pause(delay, signal);
    }
  }

  /**
   * Streams the lines of one output, deleted or error file. A failed attempt (network, 5xx, a file
   * shorter than its manifest `count`) re-reads the file from the start and skips the lines already
   * yielded, so every line is yielded exactly once. A missing file (404/410) fails with
   * SRC_EXPORT_INCOMPLETE.
   */
  async *lines(
    file: BulkFile,
    requiresAccessToken: boolean,
    signal: AbortSignal,
  ): AsyncGenerator<NdjsonLine> {
    const url = this.#checkedUrl(file.url, file.url, 'file URL');
    const name = fileLabel(url);
    const maxAttempts = Math.max(1, this.#config.downloadAttempts ?? 5);
    let delivered = 0;
    let renewed = false;
    for (let attempt = 1; ; attempt++) {
      const attemptControl = new AbortController();
      const attemptSignal = AbortSignal.any([signal, attemptControl.signal]);
      let seen = 0;
      let resources = 0;
      try {
        const body = await this.#openFile(url, name, requiresAccessToken, attemptSignal);
        const chunks = withIdleTimeout(body, this.#config.downloadIdleTimeoutMs ?? 120_000, attemptControl);
        for await (const raw of splitLines(gunzipIfCompressed(chunks), this.#maxLineBytes)) {
          seen++;
          const parsed = parseLine(raw, seen);
          // A last line without a newline that is not JSON, or short of the count, is most likely a
          // body cut short: read again; only the last attempt lets it through (as a malformed line).
          if (parsed && !raw.terminated) {
            if (file.count !== undefined && resources + 1 < file.count) {
              throw new TransientFailure(
                `${name} ended mid-line after ${resources} of ${file.count} resources`,
              );
            }
            if (parsed.kind === 'malformed' && attempt < maxAttempts) {
              throw new TransientFailure(`${name} ended in the middle of a line`);
            }
          }
          if (parsed) resources++;
          if (seen <= delivered) continue;
          delivered = seen;
          if (parsed) yield parsed;
        }
        if (file.count !== undefined && resources < file.count) {
          throw new TransientFailure(`${name} ended after ${resources} of ${file.count} resources`);
        }
        return;
      } catch (err) {
        if (signal.aborted) throw signal.reason ?? err;
        if (err instanceof HttpStatusError && err.status === 401 && this.#config.auth && !renewed) {
          // The token expired during a long export: renew it once, without counting an attempt.
          renewed = true;
          this.#config.auth.invalidate();
          attempt--;
          continue;
        }
        const failure = classifyDownloadError(err, name);
        if (failure instanceof SluiceError) throw failure;
        if (attempt >= maxAttempts) {
          throw new SluiceError(
            'SRC_EXPORT_INCOMPLETE',
            `Bulk export file ${name} could not be read completely after ${attempt} attempts: ${failure.message}.`,
            { cause: err, details: { file: name, attempts: attempt, linesRead: delivered } },
          );
        }
        const delay =
          failure.retryAfterMs ??
          backoffDelay(
            attempt,
            this.#config.downloadRetryDelayMs ?? 1000,
            30_000,
            this.#config.random ?? Math.random,
          );
        await pause(delay, signal);
      } finally {
        attemptControl.abort();
      }
    }
  }

  /**
   * DELETEs the status URL so the server can drop the job and its files (or cancel it while running).
   * Best effort: it never throws and is bounded by a short timeout of its own, so it also runs after an
   * abort. Returns whether the server accepted it.
   */
  async release(statusUrl: string): Promise<boolean> {
    try {
      const headers: Record<string, string> = { accept: 'application/fhir+json' };
      if (this.#config.auth) headers.authorization = `Bearer ${await this.#config.auth.token()}`;
      const response = await requestJson(
        statusUrl,
        { method: 'DELETE', headers, timeoutMs: 10_000, accept: [404] },
        'EHR',
      );
      return response.status >= 200 && response.status < 300;
    } catch {
      return false;
    }
  }

  get #maxLineBytes(): number {
    return this.#config.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
  }

  /** Resolves a URL from the server and refuses origins that may not receive the token. */
  #checkedUrl(url: string, base: string, what: string): string {
    let resolved: URL;
    try {
      resolved = new URL(url, base);
    } catch {
      throw new SluiceError('SRC_BAD_RESPONSE', `The EHR sent an invalid bulk export ${what}.`);
    }
    if (!this.#origins.has(resolved.origin)) {
      throw new SluiceError(
        'SRC_EXPORT_FOREIGN_URL',
        `The EHR's bulk export ${what} is on another origin (${resolved.origin}); refusing to follow it.`,
        { details: { origin: resolved.origin } },
      );
    }
    return resolved.toString();
  }

  async #json(
    method: 'GET' | 'DELETE',
    url: string,
    what: string,
    signal: AbortSignal,
    headers: { accept: string; prefer?: string },
  ): Promise<JsonResponse> {
    const attempt = async (): Promise<JsonResponse> => {
      const h: Record<string, string> = { accept: headers.accept };
      if (headers.prefer) h.prefer = headers.prefer;
      if (this.#config.auth) h.authorization = `Bearer ${await this.#config.auth.token(signal)}`;
      return requestJson(
        url,
        { method, headers: h, signal, timeoutMs: this.#config.timeoutMs ?? 60_000 },
        'EHR',
      );
    };
    const renewing = async (): Promise<JsonResponse> => {
      try {
        return await attempt();
      } catch (err) {
        if (err instanceof HttpStatusError && err.status === 401 && this.#config.auth) {
          this.#config.auth.invalidate();
          return attempt();
        }
        throw err;
      }
    };
    try {
      return await this.#config.retry.execute(renewing, signal);
    } catch (err) {
      if (signal.aborted) throw signal.reason ?? err;
      throw translate(err, `${method} ${new URL(url).pathname} (${what})`);
    }
  }

  async #openFile(
    url: string,
    name: string,
    requiresAccessToken: boolean,
    signal: AbortSignal,
  ): Promise<ReadableStream<Uint8Array>> {
    const headers: Record<string, string> = { accept: 'application/fhir+ndjson' };
    // Only when the manifest says so: a token must not travel to a file server that did not ask for it.
    if (requiresAccessToken && this.#config.auth) {
      headers.authorization = `Bearer ${await this.#config.auth.token(signal)}`;
    }
    let response: Response;
    try {
      response = await fetch(url, { headers, signal });
    } catch (err) {
      throw new NetworkError(`request for ${name} failed`, { cause: err });
    }
    if (response.status === 200 && response.body) return response.body;
    const text = await response.text().catch(() => '');
    let codes: string[] = [];
    try {
      codes = errorCodes(JSON.parse(text));
    } catch {
      codes = [];
    }
    const retryAfter = parseRetryAfter(response.headers.get('retry-after'), Date.now());
    throw new HttpStatusError({
      status: response.status,
      transient: response.status === 429 || response.status >= 500,
      retryAfterMs: retryAfter.kind === 'delay' ? retryAfter.ms : undefined,
      codes,
      what: `EHR bulk export file ${name}`,
    });
  }
}

/** Waits, or rejects with the signal's own reason (not a generic AbortError) when it aborts. */
async function pause(ms: number, signal: AbortSignal): Promise<void> {
  try {
    await sleep(ms, undefined, { signal });
  } catch (err) {
    throw signal.aborted ? (signal.reason ?? err) : err;
  }
}

function exportPath(level: ExportLevel): string {
  switch (level.kind) {
    case 'system':
      return '$export';
    case 'patient':
      return 'Patient/$export';
    case 'group':
      return `Group/${encodeURIComponent(level.groupId)}/$export`;
  }
}

/** The last path segment of a file URL: names the file in messages and origins, never its query (signatures). */
export function fileLabel(url: string): string {
  const segment = new URL(url).pathname.split('/').filter(Boolean).at(-1);
  return segment
    ? decodeURIComponent(segment)
        .replace(/[^\w.-]/g, '_')
        .slice(0, 100)
    : 'file';
}

function progressText(value: string | null): string | undefined {
  if (value === null) return undefined;
  const text = value
    .replace(/[^\x20-\x7e]/g, '')
    .trim()
    .slice(0, 100);
  return text === '' ? undefined : text;
}

function translate(err: unknown, what: string): unknown {
  if (err instanceof SluiceError) return err;
  if (err instanceof HttpStatusError) {
    const codes = err.codes.length ? ` (${err.codes.join(', ')})` : '';
    const details = { status: err.status, codes: [...err.codes] };
    if (err.status === 401 || err.status === 403) {
      return new SluiceError('SRC_FORBIDDEN', `The EHR refused ${what}: HTTP ${err.status}${codes}.`, {
        cause: err,
        details,
      });
    }
    if (err.status >= 200 && err.status < 300) {
      return new SluiceError('SRC_BAD_RESPONSE', `The EHR answered ${what} with a body that is not JSON.`, {
        cause: err,
        details,
      });
    }
    return new SluiceError('SRC_HTTP_ERROR', `The EHR answered ${what} with HTTP ${err.status}${codes}.`, {
      cause: err,
      details,
    });
  }
  if (err instanceof NetworkError)
    return new SluiceError('SRC_UNREACHABLE', `${err.message} (${what}).`, { cause: err });
  return err;
}

/** A SluiceError for failures that repeating cannot fix, a TransientFailure for the others. */
function classifyDownloadError(err: unknown, name: string): SluiceError | TransientFailure {
  if (err instanceof SluiceError || err instanceof TransientFailure) return err;
  if (err instanceof HttpStatusError) {
    const codes = err.codes.length ? ` (${err.codes.join(', ')})` : '';
    const details = { status: err.status, file: name };
    if (err.transient)
      return new TransientFailure(`HTTP ${err.status}${codes}`, err.retryAfterMs, { cause: err });
    if (err.status === 404 || err.status === 410) {
      return new SluiceError(
        'SRC_EXPORT_INCOMPLETE',
        `Bulk export file ${name} is gone (HTTP ${err.status}); the export cannot be read completely.`,
        { cause: err, details },
      );
    }
    if (err.status === 401 || err.status === 403) {
      return new SluiceError(
        'SRC_FORBIDDEN',
        `The EHR refused bulk export file ${name}: HTTP ${err.status}${codes}.`,
        {
          cause: err,
          details,
        },
      );
    }
    return new SluiceError(
      'SRC_HTTP_ERROR',
      `The EHR answered bulk export file ${name} with HTTP ${err.status}${codes}.`,
      {
        cause: err,
        details,
      },
    );
  }
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'Z_DATA_ERROR' || code === 'Z_STREAM_ERROR' || code === 'Z_NEED_DICT') {
    return new SluiceError('SRC_BAD_RESPONSE', `Bulk export file ${name} is not valid gzip.`, {
      cause: err,
      details: { file: name },
    });
  }
  // Connection reset or dropped mid-body, idle timeout, gzip cut short (Z_BUF_ERROR): read it again.
  return new TransientFailure(describe(err), undefined, { cause: err });
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause as { code?: unknown; message?: unknown } | undefined;
    if (typeof cause?.code === 'string') return `${err.message} (${cause.code})`;
    return err.message;
  }
  return String(err);
}

/**
 * Iterates a response body, aborting the attempt when no chunk arrives for `ms`. The timer runs only
 * while waiting on the network, not while the consumer holds a page, so slow delivery never trips it.
 */
async function* withIdleTimeout(
  body: ReadableStream<Uint8Array>,
  ms: number,
  control: AbortController,
): AsyncGenerator<Uint8Array> {
  const iterator = body[Symbol.asyncIterator]();
  let idle = false;
  try {
    for (;;) {
      const timer = setTimeout(() => {
        idle = true;
        control.abort();
      }, ms);
      let next: IteratorResult<Uint8Array>;
      try {
        next = await iterator.next();
      } catch (err) {
        if (idle) throw new TransientFailure(`no data for ${Math.round(ms / 1000)} s`);
        throw err;
      } finally {
        clearTimeout(timer);
      }
      if (next.done) return;
      yield next.value;
    }
  } finally {
    await iterator.return?.();
  }
}
