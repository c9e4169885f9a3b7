/**
 * Yields what `source` yields. The first time the consumer has waited `afterMs` for an item, `work`
 * runs (once, synchronously) while the wait goes on: start-up work that a slow source — a bulk export
 * being prepared, a first search page — can hide. A failure of `work` is ignored here: whatever it
 * prepares is prepared again, and fails for real, where it is needed.
 */
export async function* whileWaiting<T>(
  source: AsyncIterable<T>,
  afterMs: number,
  work: () => void,
): AsyncGenerator<T> {
  let pending: (() => void) | undefined = work;
  const iterator = source[Symbol.asyncIterator]();
  try {
    for (;;) {
      const next = iterator.next();
      const timer =
        pending === undefined
          ? undefined
          : setTimeout(() => {
              const run = pending;
              pending = undefined;
              try {
                run?.();
              } catch {
                // Prepared again where it is needed.
              }
            }, afterMs);
      let result: IteratorResult<T>;
      try {
        result = await next;
      } finally {
        clearTimeout(timer);
      }
      if (result.done) return;
      yield result.value;
    }
  } finally {
    await iterator.return?.();
  }
}
