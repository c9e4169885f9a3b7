import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { HttpStatusError, NetworkError } from './http-error.ts';
import { backoffDelay, createRetryPolicy } from './retry-policy.ts';

describe('backoffDelay', () => {
  it('doubles per attempt from the initial delay, with equal jitter', () => {
    expect([1, 2, 3, 4].map((a) => backoffDelay(a, 100, 10_000, () => 0))).toEqual([50, 100, 200, 400]);
    expect([1, 2, 3, 4].map((a) => backoffDelay(a, 100, 10_000, () => 0.999_999))).toEqual([
      100, 200, 400, 800,
    ]);
  });

  it('is capped by the maximum, even for absurd attempt numbers', () => {
    expect(backoffDelay(30, 250, 30_000, () => 0.5)).toBe(22_500);
    expect(backoffDelay(5000, 250, 30_000, () => 0)).toBe(15_000);
    expect(Number.isFinite(backoffDelay(5000, 250, 30_000, () => 0.9))).toBe(true);
  });

  it('treats attempt 0 (or below) as the first', () => {
    expect(backoffDelay(0, 100, 1000, () => 0)).toBe(50);
    expect(backoffDelay(-3, 100, 1000, () => 0)).toBe(50);
  });

  it('property: the delay is within [c/2, c] for c = min(max, initial·2^(attempt-1))', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 1, max: 10_000 }),
        fc.integer({ min: 1, max: 600_000 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (attempt, initial, max, r) => {
          const ceiling = Math.min(max, initial * 2 ** (attempt - 1));
          const delay = backoffDelay(attempt, initial, max, () => r);
          expect(Number.isInteger(delay)).toBe(true);
          expect(delay).toBeGreaterThanOrEqual(Math.floor(ceiling / 2));
          expect(delay).toBeLessThanOrEqual(Math.ceil(ceiling));
          expect(delay).toBeLessThanOrEqual(Math.ceil(max));
        },
      ),
    );
  });

  it('property: more randomness never gives a shorter delay', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 30 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (attempt, a, b) => {
          const [lo, hi] = a <= b ? [a, b] : [b, a];
          expect(backoffDelay(attempt, 250, 30_000, () => lo)).toBeLessThanOrEqual(
            backoffDelay(attempt, 250, 30_000, () => hi),
          );
        },
      ),
    );
  });
});

describe('createRetryPolicy', () => {
  const transient = (retryAfterMs?: number): HttpStatusError =>
    new HttpStatusError({ status: 503, transient: true, retryAfterMs, what: 'EHR' });

  it('retries transient failures with backoff until success', async () => {
    const policy = createRetryPolicy({ maxRetries: 5, initialDelayMs: 2, maxDelayMs: 8, random: () => 0 });
    const delays: number[] = [];
    policy.onRetry((event) => delays.push(event.delay));
    let calls = 0;
    const result = await policy.execute(() => {
      calls++;
      if (calls === 1) throw new NetworkError('reset');
      if (calls < 5) throw transient();
      return 'ok';
    });
    expect(result).toBe('ok');
    expect(calls).toBe(5);
    expect(delays).toEqual([1, 2, 4, 4]);
  });

  it("uses the server's Retry-After instead of backoff", async () => {
    const policy = createRetryPolicy({ maxRetries: 2, initialDelayMs: 1000, random: () => 0 });
    const delays: number[] = [];
    policy.onRetry((event) => delays.push(event.delay));
    let calls = 0;
    await policy.execute(() => {
      calls++;
      if (calls === 1) throw transient(3);
      return calls;
    });
    expect(delays).toEqual([3]);
  });

  it('gives up after maxRetries and rethrows the last error', async () => {
    const policy = createRetryPolicy({ maxRetries: 2, initialDelayMs: 1, maxDelayMs: 1 });
    let calls = 0;
    const failing = policy.execute(() => {
      calls++;
      throw transient();
    });
    await expect(failing).rejects.toBeInstanceOf(HttpStatusError);
    expect(calls).toBe(3);
  });

  it('does not retry a permanent failure (4xx, or any other error)', async () => {
    const policy = createRetryPolicy({ maxRetries: 5, initialDelayMs: 1 });
    for (const err of [
      new HttpStatusError({ status: 400, transient: false, what: 'CRM' }),
      new HttpStatusError({ status: 404, transient: false, what: 'CRM' }),
      new TypeError('bug'),
    ]) {
      let calls = 0;
      await expect(
        policy.execute(() => {
          calls++;
          throw err;
        }),
      ).rejects.toBe(err);
      expect(calls).toBe(1);
    }
  });
});
