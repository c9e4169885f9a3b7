import { BrokenCircuitError, TaskCancelledError } from 'cockatiel';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HttpStatusError, NetworkError } from '../../adapters/http/http-error.ts';
import { SluiceError } from '../../core/errors/index.ts';
import { backoffMs, classifyFailure, isRetryable, retryDelayMs } from './failure.ts';
import { DEFAULT_THROTTLE_POLICY } from './policy.ts';

const http = (status: number, extra: { codes?: string[]; retryAfterMs?: number; transient?: boolean } = {}) =>
  new HttpStatusError({
    status,
    transient: extra.transient ?? (status === 429 || status >= 500),
    what: 'CRM',
    ...(extra.codes ? { codes: extra.codes } : {}),
    ...(extra.retryAfterMs === undefined ? {} : { retryAfterMs: extra.retryAfterMs }),
  });

describe('classifyFailure', () => {
  it('tells throttling, quota, server and client failures apart', () => {
    expect(classifyFailure(http(429, { retryAfterMs: 1000 }))).toEqual({
      kind: 'throttled',
      status: 429,
      retryAfterMs: 1000,
      breakerFailure: false,
    });
    expect(classifyFailure(http(503))).toMatchObject({ kind: 'throttled', breakerFailure: true });
    expect(classifyFailure(http(500))).toMatchObject({ kind: 'server', breakerFailure: true });
    expect(classifyFailure(http(502))).toMatchObject({ kind: 'server', breakerFailure: true });
    expect(classifyFailure(http(403, { codes: ['REQUEST_LIMIT_EXCEEDED'] }))).toMatchObject({
      kind: 'quota',
      breakerFailure: false,
    });
    expect(classifyFailure(http(403, { codes: ['INSUFFICIENT_ACCESS'] }))).toMatchObject({ kind: 'client' });
    expect(classifyFailure(http(400))).toMatchObject({ kind: 'client', breakerFailure: false });
    expect(classifyFailure(http(408, { transient: true }))).toMatchObject({ kind: 'server' });
    expect(classifyFailure(new NetworkError('CRM request failed: ECONNRESET'))).toMatchObject({
      kind: 'server',
      breakerFailure: true,
    });
  });

  it('looks through the SluiceError an adapter wraps around the HTTP error', () => {
    const wrapped = new SluiceError('TGT_HTTP_ERROR', 'The CRM answered with HTTP 429.', {
      cause: http(429),
    });
    expect(classifyFailure(wrapped).kind).toBe('throttled');
    expect(classifyFailure(new SluiceError('TGT_LIMIT_EXCEEDED', 'quota')).kind).toBe('quota');
    expect(classifyFailure(new SluiceError('TGT_UNREACHABLE', 'down')).kind).toBe('server');
    expect(classifyFailure(new SluiceError('TGT_RECORD_REJECTED', 'bad')).kind).toBe('other');
  });

  it('never retries cancellations, open circuits or unknown errors', () => {
    const aborted = AbortSignal.abort();
    expect(classifyFailure(http(503), aborted).kind).toBe('aborted');
    expect(classifyFailure(new DOMException('x', 'AbortError')).kind).toBe('aborted');
    expect(classifyFailure(new TaskCancelledError()).kind).toBe('aborted');
    expect(classifyFailure(new BrokenCircuitError()).kind).toBe('circuit-open');
    expect(classifyFailure(new TypeError('bug')).kind).toBe('other');
    expect(classifyFailure('a string').kind).toBe('other');
    for (const kind of ['aborted', 'circuit-open', 'other', 'client'] as const) {
      expect(isRetryable({ kind, status: undefined, retryAfterMs: undefined, breakerFailure: false })).toBe(
        false,
      );
    }
  });

  it('survives a cyclic cause chain', () => {
    const a = new Error('a');
    const b = new Error('b', { cause: a });
    (a as { cause?: unknown }).cause = b;
    expect(classifyFailure(a).kind).toBe('other');
  });
});

describe('retry delays', () => {
  const retry = DEFAULT_THROTTLE_POLICY.retry;

  it('property: full jitter stays in [0, c], equal jitter in [c/2, c], c capped at maxMs', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 30 }),
        fc.integer({ min: 1, max: 5000 }),
        fc.integer({ min: 1, max: 60_000 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (attempt, baseMs, extra, r) => {
          const maxMs = baseMs + extra;
          const ceiling = Math.min(maxMs, baseMs * 2 ** (attempt - 1));
          const full = backoffMs(attempt, { baseMs, maxMs, jitter: 'full' }, () => r);
          const equal = backoffMs(attempt, { baseMs, maxMs, jitter: 'equal' }, () => r);
          expect(full).toBeGreaterThanOrEqual(0);
          expect(full).toBeLessThanOrEqual(Math.round(ceiling));
          expect(equal).toBeGreaterThanOrEqual(Math.floor(ceiling / 2));
          expect(equal).toBeLessThanOrEqual(Math.round(ceiling));
        },
      ),
    );
  });

  it("honours the server's Retry-After, capped at maxRetryAfterMs", () => {
    const throttled = classifyFailure(http(429, { retryAfterMs: 1000 }));
    expect(retryDelayMs(throttled, 1, retry, () => 0)).toEqual({ ms: 1000, source: 'retry-after' });
    const absurd = classifyFailure(http(429, { retryAfterMs: 300_000 }));
    expect(retryDelayMs(absurd, 1, { ...retry, maxRetryAfterMs: 2000 }, () => 0)).toEqual({
      ms: 2000,
      source: 'retry-after',
    });
    const none = classifyFailure(http(503));
    expect(retryDelayMs(none, 3, { ...retry, jitter: 'equal' }, () => 1)).toEqual({
      ms: 1000,
      source: 'backoff',
    });
  });
});
