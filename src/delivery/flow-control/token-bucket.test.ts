import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SluiceError } from '../../core/errors/index.ts';
import { FakeClock, settle } from './fake-clock.ts';
import { TokenBucket } from './token-bucket.ts';

/** Starts `take(n)` now and records when it is granted. */
function track(bucket: TokenBucket, clock: FakeClock, n = 1, signal?: AbortSignal) {
  const state: { grantedAt: number | undefined; error: unknown } = { grantedAt: undefined, error: undefined };
  bucket.take(n, signal).then(
    () => {
      state.grantedAt = clock.now();
    },
    (err: unknown) => {
      state.error = err;
    },
  );
  return state;
}

/** Largest sum of grants inside any closed window [t_i, t_i + T] minus the allowance burst + rate·T. */
function worstExcess(grants: readonly { t: number; n: number }[], rate: number, burst: number): number {
  let worst = Number.NEGATIVE_INFINITY;
  const sorted = [...grants].sort((a, b) => a.t - b.t);
  for (let i = 0; i < sorted.length; i++) {
    let sum = 0;
    for (let j = i; j < sorted.length; j++) {
      sum += sorted[j]!.n;
      const span = sorted[j]!.t - sorted[i]!.t;
      worst = Math.max(worst, sum - (burst + (rate * span) / 1000));
    }
  }
  return worst;
}

describe('TokenBucket', () => {
  it('grants a full burst at once, then one token per 1/rate seconds', async () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket({ rate: 10, burst: 3, clock });
    const start = clock.now();
    const grants = Array.from({ length: 6 }, () => track(bucket, clock));
    await settle();
    expect(grants.map((g) => g.grantedAt)).toEqual([start, start, start, undefined, undefined, undefined]);
    await clock.advance(100);
    expect(grants[3]!.grantedAt).toBe(start + 100);
    expect(grants[4]!.grantedAt).toBeUndefined();
    await clock.advance(200);
    expect(grants.map((g) => (g.grantedAt ?? 0) - start)).toEqual([0, 0, 0, 100, 200, 300]);
  });

  it('never holds more than burst, however long it idles', async () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket({ rate: 100, burst: 5, clock, initialTokens: 0 });
    expect(bucket.available()).toBe(0);
    await clock.advance(3_600_000);
    expect(bucket.available()).toBe(5);
    for (let i = 0; i < 5; i++) expect(bucket.tryTake()).toBe(true);
    expect(bucket.tryTake()).toBe(false);
  });

  it('waits on one timer for the head of the line instead of polling', async () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket({ rate: 1, burst: 1, clock, initialTokens: 0 });
    const waiters = Array.from({ length: 50 }, () => track(bucket, clock));
    await settle();
    expect(clock.pendingTimers).toBe(1);
    await clock.advance(1000);
    expect(waiters.filter((w) => w.grantedAt !== undefined)).toHaveLength(1);
    expect(clock.pendingTimers).toBe(1);
  });

  it('serves first come, first served: a large request is not overtaken by small ones', async () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket({ rate: 10, burst: 5, clock, initialTokens: 0 });
    const big = track(bucket, clock, 5);
    const small = track(bucket, clock, 1);
    expect(bucket.tryTake(1)).toBe(false);
    await clock.advance(499);
    expect(big.grantedAt).toBeUndefined();
    expect(small.grantedAt).toBeUndefined();
    await clock.advance(1);
    expect(big.grantedAt).toBeDefined();
    await clock.advance(100);
    expect(small.grantedAt).toBeDefined();
  });

  it('drops an aborted waiter with the signal reason and serves the next one on time', async () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket({ rate: 10, burst: 1, clock, initialTokens: 0 });
    const controller = new AbortController();
    const first = track(bucket, clock, 1, controller.signal);
    const second = track(bucket, clock, 1);
    await clock.advance(50);
    controller.abort(new Error('caller gave up'));
    await settle();
    expect((first.error as Error).message).toBe('caller gave up');
    expect(bucket.waiting).toBe(1);
    await clock.advance(50);
    expect(second.grantedAt).toBe(clock.now());
    const already = AbortSignal.abort(new Error('already'));
    await expect(bucket.take(1, already)).rejects.toThrow('already');
  });

  it('refuses a request larger than the burst (it could never be granted)', () => {
    const bucket = new TokenBucket({ rate: 10, burst: 4, clock: new FakeClock() });
    expect(() => bucket.take(5)).toThrow(SluiceError);
    expect(() => bucket.tryTake(0)).toThrow(SluiceError);
    expect(() => new TokenBucket({ rate: 0, burst: 1 })).toThrow(SluiceError);
    expect(() => new TokenBucket({ rate: Number.NaN, burst: 1 })).toThrow(SluiceError);
  });

  it('applies a new rate from the moment it is set, keeping tokens already earned', async () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket({ rate: 10, burst: 10, clock, initialTokens: 0 });
    await clock.advance(250);
    bucket.setRate(2);
    expect(bucket.available()).toBeCloseTo(2.5, 9);
    const w = track(bucket, clock, 3);
    await clock.advance(249);
    expect(w.grantedAt).toBeUndefined();
    await clock.advance(1);
    expect(w.grantedAt).toBeDefined();
  });

  it('sustains exactly the configured rate over a long run', async () => {
    const clock = new FakeClock();
    const rate = 7;
    const bucket = new TokenBucket({ rate, burst: 4, clock });
    const t0 = clock.now();
    const grants: number[] = [];
    // 4 tokens at once, then 700 at 7/s: the last grant at 100 s, give or take the 1 ms timer rounding.
    for (let i = 0; i < 704; i++) void bucket.take(1).then(() => grants.push(clock.now()));
    await clock.advance(101_000);
    expect(grants).toHaveLength(704);
    expect(grants.at(-1)! - t0).toBeGreaterThanOrEqual(100_000);
    expect(grants.at(-1)! - t0).toBeLessThanOrEqual(100_002);
  });

  it('property: in any window of length T the grants never exceed burst + rate·T', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.double({ min: 0.5, max: 200, noNaN: true }),
        fc.integer({ min: 1, max: 20 }),
        fc.array(
          fc.record({
            gapMs: fc.integer({ min: 0, max: 400 }),
            n: fc.double({ min: 0.01, max: 1, noNaN: true }),
            abortAfterMs: fc.option(fc.integer({ min: 0, max: 300 })),
          }),
          { minLength: 1, maxLength: 40 },
        ),
        async (rate, burst, requests) => {
          const clock = new FakeClock();
          const bucket = new TokenBucket({ rate, burst, clock });
          const grants: { t: number; n: number }[] = [];
          for (const r of requests) {
            await clock.advance(r.gapMs);
            const n = Math.max(0.01, r.n * burst);
            const controller = new AbortController();
            if (r.abortAfterMs !== null) clock.schedule(r.abortAfterMs, () => controller.abort());
            bucket.take(n, controller.signal).then(
              () => grants.push({ t: clock.now(), n }),
              () => undefined,
            );
          }
          await clock.advance(((burst * requests.length) / rate) * 1000 + 1000);
          expect(bucket.waiting).toBe(0);
          expect(worstExcess(grants, rate, burst)).toBeLessThanOrEqual(1e-6);
        },
      ),
      { numRuns: 150 },
    );
  });
});
