import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SluiceError } from '../../core/errors/index.ts';
import { AdaptiveLimiter, type Permit } from './adaptive-limit.ts';
import { FakeClock, settle } from './fake-clock.ts';

const options = { min: 2, max: 10, initial: 4, latencyTargetMs: 500, decreaseFactor: 0.5 };

/** Fills every free slot and returns the permits. */
function fill(limiter: AdaptiveLimiter): Permit[] {
  const permits: Permit[] = [];
  for (let p = limiter.tryAcquire(); p; p = limiter.tryAcquire()) permits.push(p);
  return permits;
}

describe('AdaptiveLimiter', () => {
  it('admits up to the limit and no more', () => {
    const limiter = new AdaptiveLimiter({ ...options, clock: new FakeClock() });
    expect(fill(limiter)).toHaveLength(4);
    expect(limiter.inFlight).toBe(4);
    expect(limiter.tryAcquire()).toBeUndefined();
  });

  it('grows additively while saturated and fast, never past max', () => {
    const limiter = new AdaptiveLimiter({ ...options, clock: new FakeClock() });
    for (let round = 0; round < 40; round++) {
      for (const p of fill(limiter)) p.release('success', 100);
    }
    expect(limiter.limit).toBe(10);
    // One full round of successes adds about one slot, not one per call.
    const fresh = new AdaptiveLimiter({ ...options, clock: new FakeClock() });
    for (const p of fill(fresh)) p.release('success', 100);
    expect(fresh.limit).toBe(4);
    for (const p of fill(fresh)) p.release('success', 100);
    expect(fresh.limit).toBe(5);
  });

  it('does not grow while the caller leaves the limit unused', () => {
    const limiter = new AdaptiveLimiter({ ...options, clock: new FakeClock() });
    for (let i = 0; i < 100; i++) limiter.tryAcquire()!.release('success', 10);
    expect(limiter.limit).toBe(4);
  });

  it('shrinks multiplicatively on overload, never below min', () => {
    const limiter = new AdaptiveLimiter({ ...options, initial: 8, clock: new FakeClock() });
    limiter.tryAcquire()!.release('overload');
    expect(limiter.limit).toBe(4);
    limiter.tryAcquire()!.release('overload');
    expect(limiter.limit).toBe(2);
    limiter.tryAcquire()!.release('overload');
    expect(limiter.limit).toBe(2);
  });

  it('treats a success slower than the latency target as overload', () => {
    const limiter = new AdaptiveLimiter({ ...options, initial: 8, clock: new FakeClock() });
    limiter.tryAcquire()!.release('success', 501);
    expect(limiter.limit).toBe(4);
  });

  it('counts a burst of failures from one congested moment once', () => {
    const limiter = new AdaptiveLimiter({ ...options, initial: 8, clock: new FakeClock() });
    const permits = fill(limiter);
    for (const p of permits) p.release('overload');
    expect(limiter.limit).toBe(4);
    // A call started after the decrease can shrink it again.
    limiter.tryAcquire()!.release('overload');
    expect(limiter.limit).toBe(2);
  });

  it('ignores neutral outcomes and a second release of the same permit', () => {
    const limiter = new AdaptiveLimiter({ ...options, clock: new FakeClock() });
    const [a] = fill(limiter);
    a!.release('ignore');
    expect(limiter.inFlight).toBe(3);
    a!.release('overload');
    expect(limiter.inFlight).toBe(3);
    expect(limiter.limit).toBe(4);
  });

  it('queues acquire() first come, first served and accounts the time waited', async () => {
    const clock = new FakeClock();
    const limiter = new AdaptiveLimiter({ ...options, clock });
    const held = fill(limiter);
    const order: string[] = [];
    const a = limiter.acquire().then((p) => {
      order.push('a');
      return p;
    });
    const b = limiter.acquire().then((p) => {
      order.push('b');
      return p;
    });
    expect(limiter.queueDepth).toBe(2);
    await clock.advance(300);
    held[0]!.release('ignore');
    await settle();
    expect(order).toEqual(['a']);
    await clock.advance(200);
    held[1]!.release('ignore');
    await settle();
    expect(order).toEqual(['a', 'b']);
    expect(limiter.queueDepth).toBe(0);
    expect(limiter.waitMsTotal).toBe(300 + 500);
    (await a).release('ignore');
    (await b).release('ignore');
  });

  it('rejects an aborted acquire() and keeps serving the others', async () => {
    const clock = new FakeClock();
    const limiter = new AdaptiveLimiter({ ...options, clock });
    const held = fill(limiter);
    const controller = new AbortController();
    const aborted = limiter.acquire(controller.signal);
    const next = limiter.acquire();
    controller.abort(new Error('stop'));
    await expect(aborted).rejects.toThrow('stop');
    expect(limiter.queueDepth).toBe(1);
    held[0]!.release('ignore');
    await expect(next).resolves.toBeDefined();
  });

  it('refuses an inconsistent configuration', () => {
    expect(() => new AdaptiveLimiter({ ...options, min: 5, initial: 4 })).toThrow(SluiceError);
    expect(() => new AdaptiveLimiter({ ...options, max: 3 })).toThrow(SluiceError);
    expect(() => new AdaptiveLimiter({ ...options, min: 0, initial: 1 })).toThrow(SluiceError);
  });

  it('property: in-flight never exceeds the limit in force when a call was admitted, limit stays in [min, max]', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(fc.constant('acquire' as const), fc.constantFrom('success', 'overload', 'ignore')),
          {
            maxLength: 300,
          },
        ),
        fc.array(fc.nat({ max: 1000 }), { minLength: 300, maxLength: 300 }),
        (steps, latencies) => {
          const limiter = new AdaptiveLimiter({ ...options, clock: new FakeClock() });
          const held: Permit[] = [];
          steps.forEach((step, i) => {
            if (step === 'acquire') {
              const before = limiter.inFlight;
              const p = limiter.tryAcquire();
              if (p) {
                expect(before).toBeLessThan(limiter.limit);
                held.push(p);
              } else expect(before).toBeGreaterThanOrEqual(limiter.limit);
            } else {
              held.shift()?.release(step, latencies[i]);
            }
            expect(limiter.limit).toBeGreaterThanOrEqual(options.min);
            expect(limiter.limit).toBeLessThanOrEqual(options.max);
            expect(limiter.inFlight).toBe(held.length);
          });
        },
      ),
    );
  });
});
