import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SluiceError } from '../../core/errors/index.ts';
import { asCrmRecordId } from '../../core/model/ids.ts';
import type { WriteResult } from '../../core/ports/target.ts';
import { FakeClock } from './fake-clock.ts';
import { DEFAULT_THROTTLE_POLICY } from './policy.ts';
import { isRetryWriteResult, retryPerEntry } from './retry-per-entry.ts';

const retry = {
  ...DEFAULT_THROTTLE_POLICY.retry,
  maxAttempts: 4,
  baseMs: 100,
  maxMs: 1000,
  jitter: 'equal' as const,
};
const created = (n: number): WriteResult => ({
  status: 'created',
  id: asCrmRecordId(`001${String(n).padStart(15, '0')}`),
});
const retryLater: WriteResult = { status: 'retry', codes: ['UNABLE_TO_LOCK_ROW'] };

describe('retryPerEntry', () => {
  it('re-submits only the entries marked retryable and returns results in the original order', async () => {
    const clock = new FakeClock();
    const batches: number[][] = [];
    const attemptsOf = new Map<number, number>();
    const promise = retryPerEntry(
      [0, 1, 2, 3, 4],
      async (batch) => {
        batches.push([...batch]);
        return batch.map((n) => {
          const seen = (attemptsOf.get(n) ?? 0) + 1;
          attemptsOf.set(n, seen);
          // Entry 1 is locked once, entry 3 twice; entry 4 is refused for good (not retryable).
          if ((n === 1 && seen < 2) || (n === 3 && seen < 3)) return retryLater;
          if (n === 4)
            return { status: 'rejected', codes: ['FIELD_INTEGRITY_EXCEPTION'], fields: [], message: '' };
          return created(n);
        });
      },
      { isRetryable: isRetryWriteResult, retry, clock, random: () => 1 },
    );
    await clock.advance(10_000);
    const results = await promise;
    expect(batches).toEqual([[0, 1, 2, 3, 4], [1, 3], [3]]);
    expect(results.map((r) => r.status)).toEqual(['created', 'created', 'created', 'created', 'rejected']);
    expect(results[3]).toEqual(created(3));
  });

  it('waits with backoff between rounds', async () => {
    const clock = new FakeClock();
    const start = clock.now();
    const rounds: number[] = [];
    const promise = retryPerEntry(
      ['a'],
      async (batch) => {
        rounds.push(clock.now() - start);
        return batch.map(() => retryLater);
      },
      { isRetryable: isRetryWriteResult, retry, clock, random: () => 1 },
    );
    await clock.advance(10_000);
    const results = await promise;
    // equal jitter with random()=1 waits the full ceiling: 100, 200, 400 ms.
    expect(rounds).toEqual([0, 100, 300, 700]);
    // Still retryable after the last round: the caller sees it and leaves the record pending.
    expect(results).toEqual([retryLater]);
  });

  it('refuses an answer with the wrong number of results', async () => {
    const err = await retryPerEntry(['a', 'b'], async () => [created(1)], {
      isRetryable: isRetryWriteResult,
      retry,
      clock: new FakeClock(),
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SluiceError);
    expect((err as SluiceError).code).toBe('TGT_BAD_RESPONSE');
  });

  it('stops waiting when aborted', async () => {
    const clock = new FakeClock();
    const controller = new AbortController();
    const promise = retryPerEntry(['a'], async (b) => b.map(() => retryLater), {
      isRetryable: isRetryWriteResult,
      retry,
      clock,
      signal: controller.signal,
    });
    await clock.advance(10);
    controller.abort(new Error('shutdown'));
    await expect(promise).rejects.toThrow('shutdown');
  });

  it('property: every entry ends with its own last answer, and only retryable ones were sent again', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 0, max: 6 }), { minLength: 1, maxLength: 30 }),
        fc.integer({ min: 1, max: 5 }),
        async (failuresPerEntry, maxAttempts) => {
          const sent = new Map<number, number>();
          const results = await retryPerEntry(
            failuresPerEntry.map((_, i) => i),
            async (batch) =>
              batch.map((i) => {
                const n = (sent.get(i) ?? 0) + 1;
                sent.set(i, n);
                return n <= failuresPerEntry[i]! ? { i, ok: false } : { i, ok: true };
              }),
            {
              isRetryable: (r) => !r.ok,
              retry: { ...retry, maxAttempts, baseMs: 1, maxMs: 1 },
              random: () => 0,
            },
          );
          failuresPerEntry.forEach((failures, i) => {
            expect(results[i]!.i).toBe(i);
            expect(sent.get(i)).toBe(Math.min(failures + 1, maxAttempts));
            expect(results[i]!.ok).toBe(failures < maxAttempts);
          });
        },
      ),
      { numRuns: 50 },
    );
  });
});
