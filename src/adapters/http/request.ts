import { HttpStatusError, NetworkError } from './http-error.ts';
import { parseRetryAfter } from './retry-after.ts';

export interface JsonRequest {
  readonly method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  readonly headers?: Record<string, string>;
  /** A JSON value (sent as JSON) or a URLSearchParams (sent form-encoded). */
  readonly body?: unknown;
  readonly signal?: AbortSignal;
  /** Per-attempt timeout; default 60 s. */
  readonly timeoutMs?: number;
  /** Statuses that are expected answers (returned, not thrown) besides 2xx. */
  readonly accept?: readonly number[];
}

export interface JsonResponse {
  readonly status: number;
  readonly headers: Headers;
  /** Parsed JSON body, or undefined for an empty body. */
  readonly body: unknown;
}

/**
 * One HTTP exchange with a JSON API. Non-2xx answers become `HttpStatusError` (429 and 5xx marked
 * transient, with the server's Retry-After parsed and clamped); failures to get any answer become
 * `NetworkError`. `what` names the system in messages ("EHR", "CRM"). No retries here: callers
 * compose a retry policy around it.
 */
export async function requestJson(url: string, request: JsonRequest, what: string): Promise<JsonResponse> {
  const headers: Record<string, string> = { accept: 'application/json', ...request.headers };
  let body: string | undefined;
  if (request.body instanceof URLSearchParams) {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    body = request.body.toString();
  } else if (request.body !== undefined) {
    headers['content-type'] ??= 'application/json';
    body = JSON.stringify(request.body);
  }
  const timeout = AbortSignal.timeout(request.timeoutMs ?? 60_000);
  const signal = request.signal ? AbortSignal.any([request.signal, timeout]) : timeout;
  let response: Response;
  let text: string;
  try {
    response = await fetch(url, { method: request.method ?? 'GET', headers, body, signal });
    text = await response.text();
  } catch (err) {
    if (request.signal?.aborted) throw request.signal.reason ?? err;
    const reason = timeout.aborted ? 'timed out' : 'failed';
    throw new NetworkError(`${what} request ${reason}: ${describeNetworkError(err)}`, { cause: err });
  }
  const parsed = parseBody(text);
  if ((response.status >= 200 && response.status < 300) || request.accept?.includes(response.status)) {
    if (parsed.ok) return { status: response.status, headers: response.headers, body: parsed.value };
    throw new HttpStatusError({
      status: response.status,
      transient: false,
      what: `${what} (body is not JSON)`,
    });
  }
  const retryAfter = parseRetryAfter(response.headers.get('retry-after'), Date.now());
  throw new HttpStatusError({
    status: response.status,
    transient: response.status === 429 || response.status >= 500,
    retryAfterMs: retryAfter.kind === 'delay' ? retryAfter.ms : undefined,
    codes: parsed.ok ? errorCodes(parsed.value) : [],
    what,
  });
}

function parseBody(text: string): { ok: true; value: unknown } | { ok: false } {
  if (text.trim() === '') return { ok: true, value: undefined };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false };
  }
}

/** Error codes from the error bodies our peers send: OperationOutcome, Salesforce error arrays, OAuth. */
export function errorCodes(body: unknown): string[] {
  if (Array.isArray(body)) {
    return body.flatMap((e) =>
      e && typeof e === 'object' && typeof e.errorCode === 'string' ? [e.errorCode] : [],
    );
  }
  if (body && typeof body === 'object') {
    const o = body as Record<string, unknown>;
    if (o.resourceType === 'OperationOutcome' && Array.isArray(o.issue)) {
      return o.issue.flatMap((i) =>
        i && typeof i === 'object' && typeof i.code === 'string' ? [i.code] : [],
      );
    }
    if (typeof o.error === 'string') return [o.error];
  }
  return [];
}

function describeNetworkError(err: unknown): string {
  if (err instanceof Error) {
    const cause = err.cause as { code?: string } | undefined;
    return cause?.code ?? err.message;
  }
  return String(err);
}
