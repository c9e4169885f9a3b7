/**
 * Time as the flow-control parts see it. Injected so tests drive token buckets, windows and backoff
 * with a fake clock instead of sleeping; production uses `systemClock`.
 */
export interface Clock {
  /** Milliseconds since the epoch; monotonic for the system clock (it never jumps back with NTP). */
  now(): number;
  /** Calls `fn` once after `ms` milliseconds; the returned function cancels it. */
  schedule(ms: number, fn: () => void): () => void;
}

/** Monotonic wall time: `performance.timeOrigin + performance.now()`, the same base the sandbox request log uses. */
export const systemClock: Clock = {
  now: () => performance.timeOrigin + performance.now(),
  schedule(ms, fn) {
    const timer = setTimeout(fn, Math.max(0, ms));
    return () => clearTimeout(timer);
  },
};

/** Resolves after `ms` on `clock`; rejects with the signal's reason when aborted first. */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortReason(signal));
      return;
    }
    const onAbort = (): void => {
      cancel();
      reject(abortReason(signal));
    };
    const cancel = clock.schedule(ms, () => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    });
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** The reason an aborted signal carries, or a standard AbortError. */
export function abortReason(signal: AbortSignal | undefined): unknown {
  return signal?.reason ?? new DOMException('The operation was aborted.', 'AbortError');
}
