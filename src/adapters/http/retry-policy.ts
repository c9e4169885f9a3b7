import { DelegateBackoff, handleWhen, type IRetryBackoffContext, type RetryPolicy, retry } from 'cockatiel';
import { HttpStatusError, isTransient } from './http-error.ts';

export interface RetryOptions {
  /** Attempts after the first; default 5. */
  readonly maxRetries?: number;
  /** First backoff step (ms); default 250. */
  readonly initialDelayMs?: number;
  /** Largest backoff step (ms); default 30 s. A server's Retry-After may ask for more (up to its own clamp). */
  readonly maxDelayMs?: number;
  /** Source of randomness for jitter (tests pass a fixed one). */
  readonly random?: () => number;
}

/**
 * Retries transient failures (network errors, 429, 5xx, and whatever the adapter marks transient).
 * The delay is the server's `Retry-After` when it sent a usable one, otherwise exponential backoff
 * with jitter. Built on cockatiel's retry policy; composes with its breaker and bulkhead.
 */
export function createRetryPolicy(options: RetryOptions = {}): RetryPolicy {
  const initial = options.initialDelayMs ?? 250;
  const max = options.maxDelayMs ?? 30_000;
  const random = options.random ?? Math.random;
  return retry(handleWhen(isTransient), {
    maxAttempts: options.maxRetries ?? 5,
    backoff: new DelegateBackoff((context: IRetryBackoffContext<unknown>) => {
      const reason = context.result;
      if (
        'error' in reason &&
        reason.error instanceof HttpStatusError &&
        reason.error.retryAfterMs !== undefined
      ) {
        return reason.error.retryAfterMs;
      }
      return backoffDelay(context.attempt, initial, max, random);
    }),
  });
}

/** Exponential backoff with equal jitter: uniform in [c/2, c] for c = min(max, initial·2^(attempt-1)). */
export function backoffDelay(
  attempt: number,
  initialMs: number,
  maxMs: number,
  random: () => number,
): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
