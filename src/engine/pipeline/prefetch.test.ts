import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { prefetch } from './prefetch.ts';

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * An instrumented source: counts `next()` calls not yet consumed, the high-water mark of them, and
 * whether `return()` was called. Each item takes a macrotask to produce, like a page fetch.
 */
function instrumented(count: number, options: { failAt?: number } = {}) {
  const stats = { requested: 0, consumed: 0, maxOutstanding: 0, returned: false, produced: 0 };
  async function* generate(): AsyncGenerator<number> {
    try {
      for (let i = 0; i < count; i++) {
        await tick();
        if (i === options.failAt) throw new Error(`page ${i} failed`);
        stats.produced++;
        yield i;
      }
    } finally {
      stats.returned = true;
    }
  }
  const inner = generate();
  const source: AsyncIterable<number> = {
    [Symbol.asyncIterator]: () => ({
      next: () => {
        stats.requested++;
        stats.maxOutstanding = Math.max(stats.maxOutstanding, stats.requested - stats.consumed);
        return inner.next();
      },
      return: (value?: unknown) => {
        stats.returned = true;
        return inner.return(value as number);
      },
    }),
  };
  return { source, stats };
}

describe('prefetch', () => {
  it('yields every item in order', async () => {
    const { source } = instrumented(25);
    const out: number[] = [];
    for await (const n of prefetch(source, 3)) out.push(n);
    expect(out).toEqual(Array.from({ length: 25 }, (_, i) => i));
  });

  it('handles an empty source', async () => {
    const { source, stats } = instrumented(0);
    const out: number[] = [];
    for await (const n of prefetch(source, 2)) out.push(n);
    expect(out).toEqual([]);
    expect(stats.requested).toBe(1);
  });

  it('reads ahead while the consumer is busy', async () => {
    const { source, stats } = instrumented(10);
    const reader = prefetch(source, 2);
    await reader.next();
    // The consumer holds item 0; the source is already asked for the next two.
    await tick();
    await tick();
    await tick();
    expect(stats.requested).toBe(3);
    await reader.return(undefined);
  });

  it('property: never more than depth+1 requests outstanding, whatever the consumer speed', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 4 }),
        fc.integer({ min: 0, max: 20 }),
        fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 8 }),
        async (depth, count, pauses) => {
          const { source, stats } = instrumented(count);
          const out: number[] = [];
          for await (const n of prefetch(source, depth)) {
            stats.consumed++;
            out.push(n);
            for (let p = 0; p < (pauses[n % pauses.length] ?? 0); p++) await tick();
            expect(stats.requested - stats.consumed).toBeLessThanOrEqual(depth + 1);
          }
          expect(out).toEqual(Array.from({ length: count }, (_, i) => i));
          expect(stats.maxOutstanding).toBeLessThanOrEqual(depth + 1);
          // The source is never asked far beyond its end either.
          expect(stats.requested).toBeLessThanOrEqual(count + depth + 1);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('surfaces an error from the source to the consumer, after the items before it', async () => {
    const { source, stats } = instrumented(10, { failAt: 4 });
    const out: number[] = [];
    await expect(
      (async () => {
        for await (const n of prefetch(source, 3)) out.push(n);
      })(),
    ).rejects.toThrow('page 4 failed');
    expect(out).toEqual([0, 1, 2, 3]);
    expect(stats.returned).toBe(true);
  });

  it('surfaces an error even when the consumer is slower than the read-ahead', async () => {
    const { source } = instrumented(10, { failAt: 1 });
    const out: number[] = [];
    const run = (async () => {
      for await (const n of prefetch(source, 4)) {
        out.push(n);
        for (let i = 0; i < 10; i++) await tick(); // the failing read settles before we ask for it
      }
    })();
    await expect(run).rejects.toThrow('page 1 failed');
    expect(out).toEqual([0]);
  });

  it('an early break calls return on the source and stops reading', async () => {
    const { source, stats } = instrumented(1000);
    const out: number[] = [];
    for await (const n of prefetch(source, 2)) {
      out.push(n);
      if (n === 5) break;
    }
    expect(out).toEqual([0, 1, 2, 3, 4, 5]);
    expect(stats.returned).toBe(true);
    const requested = stats.requested;
    for (let i = 0; i < 5; i++) await tick();
    expect(stats.requested).toBe(requested);
    expect(stats.produced).toBeLessThanOrEqual(6 + 2 + 1);
  });

  it('an exception in the consumer also returns the source', async () => {
    const { source, stats } = instrumented(100);
    await expect(
      (async () => {
        for await (const n of prefetch(source, 1)) if (n === 2) throw new Error('consumer failed');
      })(),
    ).rejects.toThrow('consumer failed');
    expect(stats.returned).toBe(true);
  });
});
