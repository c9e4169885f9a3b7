import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { WeightedQueue } from './priority-queue.ts';

const all = (): boolean => true;

function drain(queue: WeightedQueue<string>, n: number, eligible: (cls: string) => boolean = all): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const next = queue.shift(eligible);
    if (!next) break;
    out.push(next.cls);
  }
  return out;
}

describe('WeightedQueue', () => {
  it('shares dispatches by weight while both classes wait, without starving the light one', () => {
    const queue = new WeightedQueue<string>({ interactive: 4, backfill: 1 });
    for (let i = 0; i < 100; i++) {
      queue.push('backfill', `b${i}`, i);
      queue.push('interactive', `i${i}`, 1000 + i);
    }
    const first50 = drain(queue, 50);
    expect(first50.filter((c) => c === 'interactive')).toHaveLength(40);
    expect(first50.filter((c) => c === 'backfill')).toHaveLength(10);
    // Backfill gets a turn in every stretch of five.
    for (let i = 0; i + 5 <= first50.length; i++) expect(first50.slice(i, i + 5)).toContain('backfill');
  });

  it('keeps FIFO order inside a class, with a retried item back in its original place', () => {
    const queue = new WeightedQueue<string>({ a: 1 });
    queue.push('a', 'second', 2);
    queue.push('a', 'third', 3);
    queue.push('a', 'first-retry', 1);
    expect([queue.shift(all)?.item, queue.shift(all)?.item, queue.shift(all)?.item]).toEqual([
      'first-retry',
      'second',
      'third',
    ]);
  });

  it('lets an idle class rejoin at the present, not with a backlog of unused turns', () => {
    const queue = new WeightedQueue<string>({ interactive: 1, backfill: 1 });
    for (let i = 0; i < 50; i++) queue.push('backfill', `b${i}`, i);
    drain(queue, 40);
    for (let i = 0; i < 10; i++) queue.push('interactive', `i${i}`, 100 + i);
    // Equal weights: strict alternation, not ten interactive items in a row.
    expect(drain(queue, 6)).toEqual([
      'interactive',
      'backfill',
      'interactive',
      'backfill',
      'interactive',
      'backfill',
    ]);
  });

  it('skips classes that are not eligible and removes aborted items', () => {
    const queue = new WeightedQueue<string>({ interactive: 4, backfill: 1 });
    queue.push('backfill', 'b', 1);
    queue.push('interactive', 'i', 2);
    expect(queue.peekClass((c) => c === 'backfill')).toBe('backfill');
    expect(queue.remove('interactive', 'i')).toBe(true);
    expect(queue.remove('interactive', 'i')).toBe(false);
    expect(queue.shift((c) => c === 'interactive')).toBeUndefined();
    expect(queue.size).toBe(1);
    expect(queue.waitingClasses()).toEqual(['backfill']);
    expect(() => queue.push('bulk', 'x', 3)).toThrow(RangeError);
  });

  it('property: with every class backlogged, no class ever lags or leads its weighted share by more than the number of classes', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 10 }), { minLength: 1, maxLength: 5 }),
        fc.integer({ min: 1, max: 200 }),
        (weights, n) => {
          const names = weights.map((_, i) => `c${i}`);
          const queue = new WeightedQueue<string>(Object.fromEntries(names.map((c, i) => [c, weights[i]!])));
          let seq = 0;
          for (const c of names) for (let i = 0; i < n; i++) queue.push(c, c, seq++);
          const total = weights.reduce((a, b) => a + b, 0);
          const served = new Map<string, number>();
          drain(queue, n).forEach((cls, step) => {
            served.set(cls, (served.get(cls) ?? 0) + 1);
            names.forEach((c, i) => {
              const share = ((step + 1) * weights[i]!) / total;
              expect(Math.abs((served.get(c) ?? 0) - share)).toBeLessThanOrEqual(names.length);
            });
          });
        },
      ),
      { numRuns: 300 },
    );
  });
});
