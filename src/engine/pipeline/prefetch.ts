/**
 * Reads ahead of the consumer by up to `depth` items, so the next page is fetched while the current
 * one is processed. Bounded: nothing more is requested until the consumer takes an item
 * (backpressure, flat memory).
 */
export async function* prefetch<T>(source: AsyncIterable<T>, depth = 1): AsyncGenerator<T> {
  const iterator = source[Symbol.asyncIterator]();
  const pending: Promise<IteratorResult<T>>[] = [];
  const request = (): void => {
    const next = iterator.next();
    // A rejection surfaces when the consumer reaches it; until then it is not "unhandled".
    next.catch(() => {});
    pending.push(next);
  };
  try {
    request();
    while (pending.length > 0) {
      const result = await (pending.shift() as Promise<IteratorResult<T>>);
      if (result.done) return;
      while (pending.length < depth) request();
      yield result.value;
      if (pending.length === 0) request();
    }
  } finally {
    await iterator.return?.();
  }
}
