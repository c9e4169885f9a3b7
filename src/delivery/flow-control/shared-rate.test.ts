import { describe, expect, it } from 'vitest';
import { isSluiceError } from '../../core/errors/index.ts';
import { REDIS_SKIP, TEST_REDIS_URL, testKey } from '../../testkit/redis.ts';
import { createDeliveryGate } from './gate.ts';
import { DEFAULT_THROTTLE_POLICY, parseThrottlePolicy } from './policy.ts';
import { openSharedRate, type SharedRate, sharedRateKey } from './shared-rate.ts';

describe('the shared rate in the delivery gate', () => {
  it('is taken after admission and before each attempt; refused, nothing is sent and the slot is freed', async () => {
    let turns = 0;
    let refuse = false;
    const shared: SharedRate = {
      async take() {
        if (refuse) throw new Error('redis down');
        turns++;
        await new Promise((r) => setTimeout(r, 20));
      },
      async close() {},
    };
    const gate = createDeliveryGate(DEFAULT_THROTTLE_POLICY, { endpoint: 'crm', shared });
    let sent = 0;
    try {
      expect(await gate.run('interactive', async () => ++sent)).toBe(1);
      expect(turns).toBe(1);
      expect(gate.stats().waitMsTotal).toBeGreaterThanOrEqual(15);
      refuse = true;
      await expect(gate.run('interactive', async () => ++sent)).rejects.toThrow('redis down');
      expect(sent).toBe(1);
      expect(gate.stats().inFlight).toBe(0);
    } finally {
      gate.close();
    }
  });

  it('is part of the throttle policy, checked like the rest of it', () => {
    const policy = parseThrottlePolicy({ shared: { redis: 'redis://127.0.0.1:6379', rate: 5 } });
    expect(policy.shared).toEqual({ redis: 'redis://127.0.0.1:6379', rate: 5, burst: 1 });
    expect(() => parseThrottlePolicy({ shared: { redis: 'http://x', rate: 0, key: 'a b' } })).toThrow(
      /shared\.redis: a redis:\/\/ or rediss:\/\/ URL.*shared\.key.*shared\.rate/,
    );
    // One counter per org: the key given, or the target's URL hashed (no URL in Redis).
    expect(sharedRateKey('org-00D5', 'https://x')).toBe('sluice:rate:org-00D5');
    expect(sharedRateKey(undefined, 'https://acme.my.salesforce.com')).toMatch(/^sluice:rate:[0-9a-f]{24}$/);
  });
});

describe.skipIf(REDIS_SKIP !== undefined)('the shared rate on Redis', () => {
  it('grants a burst at once, then one turn per interval, to every process that shares the key', async () => {
    const key = testKey();
    const a = await openSharedRate({ url: TEST_REDIS_URL, key, rate: 1000 / 30, burst: 3 });
    const b = await openSharedRate({ url: TEST_REDIS_URL, key, rate: 1000 / 30, burst: 3 });
    const other = await openSharedRate({ url: TEST_REDIS_URL, key: testKey(), rate: 1000 / 30, burst: 3 });
    try {
      const signal = new AbortController().signal;
      const started = Date.now();
      await Promise.all([a.take(signal), b.take(signal), a.take(signal)]);
      expect(Date.now() - started).toBeLessThan(25);
      // The fourth turn, whoever asks, waits for the next interval; another key does not.
      const fourth = Date.now();
      await other.take(signal);
      expect(Date.now() - fourth).toBeLessThan(25);
      await b.take(signal);
      expect(Date.now() - fourth).toBeGreaterThanOrEqual(15);
    } finally {
      await Promise.all([a.close(), b.close(), other.close()]);
    }
  });

  it('stops waiting when the run is stopped', async () => {
    const shared = await openSharedRate({ url: TEST_REDIS_URL, key: testKey(), rate: 0.1, burst: 1 });
    try {
      const controller = new AbortController();
      await shared.take(controller.signal);
      const waiting = shared.take(controller.signal);
      controller.abort(new Error('stopped'));
      await expect(waiting).rejects.toThrow('stopped');
    } finally {
      await shared.close();
    }
  });

  it('refuses turns when Redis cannot be reached, without printing credentials', async () => {
    const err = await openSharedRate({
      url: 'redis://sluice:s3cret@127.0.0.1:1',
      key: testKey(),
      rate: 1,
      burst: 1,
      timeoutMs: 500,
    }).catch((e: unknown) => e);
    expect(isSluiceError(err) && err.code).toBe('FLOW_SHARED_LIMIT_UNAVAILABLE');
    expect(
      JSON.stringify({ m: (err as Error).message, d: (err as { details?: unknown }).details }),
    ).not.toContain('s3cret');
  });
});
