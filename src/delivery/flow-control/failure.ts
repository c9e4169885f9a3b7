import { BrokenCircuitError, TaskCancelledError } from 'cockatiel';
import { HttpStatusError, NetworkError } from '../../adapters/http/http-error.ts';
import { SluiceError } from '../../core/errors/index.ts';
import type { ThrottlePolicy } from './policy.ts';

/**
 * What a failed call means for flow control:
 * - `throttled`: 429 or 503 — the endpoint asks us to slow down (retry, honour Retry-After, shrink);
 * - `quota`: 403 REQUEST_LIMIT_EXCEEDED — the org's daily quota is spent (hold, then retry);
 * - `server`: other 5xx or no answer at all — retry with backoff, count towards the breaker;
 * - `client`: a 4xx about this request — not retried, says nothing about capacity;
 * - `circuit-open`, `aborted`, `other`: not retried.
 */
export type FailureKind = 'throttled' | 'quota' | 'server' | 'client' | 'circuit-open' | 'aborted' | 'other';

export interface Failure {
  readonly kind: FailureKind;
  readonly status: number | undefined;
  /** The server's Retry-After, already parsed and clamped by the HTTP layer. */
  readonly retryAfterMs: number | undefined;
  /** Whether the breaker counts it as the endpoint failing (5xx and network failures). */
  readonly breakerFailure: boolean;
}

const RETRYABLE: ReadonlySet<FailureKind> = new Set(['throttled', 'quota', 'server']);

export function isRetryable(failure: Failure): boolean {
  return RETRYABLE.has(failure.kind);
}

/** Classifies an error, looking through `cause` chains (adapters wrap HTTP errors in SluiceError). */
export function classifyFailure(err: unknown, signal?: AbortSignal): Failure {
  if (signal?.aborted) return failure('aborted');
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    if (e instanceof BrokenCircuitError) return failure('circuit-open');
    if (e instanceof TaskCancelledError) return failure('aborted');
    if (e instanceof Error && e.name === 'AbortError') return failure('aborted');
    if (e instanceof HttpStatusError) return fromHttp(e);
    if (e instanceof NetworkError) return { ...failure('server'), breakerFailure: true };
    if (e instanceof SluiceError) {
      if (e.code === 'FLOW_CIRCUIT_OPEN') return failure('circuit-open');
      if (e.code === 'ABORTED') return failure('aborted');
      if (e.cause === undefined) {
        if (e.code === 'TGT_LIMIT_EXCEEDED') return failure('quota');
        if (e.code === 'TGT_UNREACHABLE' || e.code === 'SRC_UNREACHABLE') {
          return { ...failure('server'), breakerFailure: true };
        }
      }
    }
    e = e instanceof Error ? e.cause : undefined;
  }
  return failure('other');
}

function fromHttp(e: HttpStatusError): Failure {
  const base = { status: e.status, retryAfterMs: e.retryAfterMs };
  if (e.status === 403 && e.codes.includes('REQUEST_LIMIT_EXCEEDED')) {
    return { ...base, kind: 'quota', breakerFailure: false };
  }
  if (e.status === 429) return { ...base, kind: 'throttled', breakerFailure: false };
  if (e.status === 503) return { ...base, kind: 'throttled', breakerFailure: true };
  if (e.status >= 500) return { ...base, kind: 'server', breakerFailure: true };
  return { ...base, kind: e.transient ? 'server' : 'client', breakerFailure: false };
}

function failure(kind: FailureKind): Failure {
  return { kind, status: undefined, retryAfterMs: undefined, breakerFailure: false };
}

/** Exponential backoff with full (uniform [0, c]) or equal (uniform [c/2, c]) jitter; `attempt` ≥ 1. */
export function backoffMs(
  attempt: number,
  retry: Pick<ThrottlePolicy['retry'], 'baseMs' | 'maxMs' | 'jitter'>,
  random: () => number,
): number {
  const ceiling = Math.min(retry.maxMs, retry.baseMs * 2 ** Math.max(0, attempt - 1));
  const r = Math.min(1, Math.max(0, random()));
  return Math.round(retry.jitter === 'full' ? r * ceiling : ceiling / 2 + (r * ceiling) / 2);
}

/**
 * The wait before retry number `attempt`: the server's Retry-After when it sent a usable one (capped
 * at `maxRetryAfterMs`, so an absurd value cannot stall a flow), otherwise backoff.
 */
export function retryDelayMs(
  failure: Failure,
  attempt: number,
  retry: ThrottlePolicy['retry'],
  random: () => number,
): { readonly ms: number; readonly source: 'retry-after' | 'backoff' } {
  if (failure.retryAfterMs !== undefined && Number.isFinite(failure.retryAfterMs)) {
    return { ms: Math.min(Math.max(0, failure.retryAfterMs), retry.maxRetryAfterMs), source: 'retry-after' };
  }
  return { ms: backoffMs(attempt, retry, random), source: 'backoff' };
}
