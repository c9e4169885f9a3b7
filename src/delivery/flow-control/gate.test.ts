import { describe, expect, it } from 'vitest';
import { HttpStatusError } from '../../adapters/http/http-error.ts';
import type { SluiceError } from '../../core/errors/index.ts';
import { FakeClock, settle } from './fake-clock.ts';
import { type AttemptContext, createDeliveryGate, type GateEvent } from './gate.ts';
import { parseThrottlePolicy, type ThrottlePolicyInput } from './policy.ts';
import { QuotaPacer } from './quota-pacer.ts';

// 2025-01-15 09:00 UTC is 10:00 in Berlin.
const START = Date.parse('2025-01-15T09:00:00.000Z');

function setup(policy: ThrottlePolicyInput, options: { quota?: QuotaPacer; clock?: FakeClock } = {}) {
  const clock = options.clock ?? new FakeClock(START);
  const events: GateEvent[] = [];
  const gate = createDeliveryGate(parseThrottlePolicy(policy), {
    endpoint: 'crm-upsert',
    clock,
    random: () => 1,
    onEvent: (e) => events.push(e),
    ...(options.quota ? { quota: options.quota } : {}),
  });
  return { clock, events, gate };
}

/** Starts a run and records when each attempt started and how the run ended. */
function start<T>(
  gate: ReturnType<typeof setup>['gate'],
  clock: FakeClock,
  priority: string,
  fn: (ctx: AttemptContext) => Promise<T>,
  signal?: AbortSignal,
) {
  const state = {
    attempts: [] as number[],
    result: undefined as T | undefined,
    error: undefined as unknown,
    done: false,
  };
  gate
    .run(
      priority,
      (ctx) => {
        state.attempts.push(clock.now());
        return fn(ctx);
      },
      signal,
    )
    .then(
      (r) => {
        state.result = r;
        state.done = true;
      },
      (e: unknown) => {
        state.error = e;
        state.done = true;
      },
    );
  return state;
}

const http = (status: number, extra: { codes?: string[]; retryAfterMs?: number } = {}) =>
  new HttpStatusError({
    status,
    transient: status === 429 || status >= 500,
    what: 'CRM',
    ...(extra.codes ? { codes: extra.codes } : {}),
    ...(extra.retryAfterMs === undefined ? {} : { retryAfterMs: extra.retryAfterMs }),
  });

const done = (): Promise<string> => Promise.resolve('done');

describe('delivery gate', () => {
  it('dispatches by priority weight when the rate limit is the bottleneck', async () => {
    const { gate, clock } = setup({ rate: 10, burst: 1, concurrency: { max: 50, initial: 50 } });
    const order: string[] = [];
    const runs = [
      ...Array.from({ length: 10 }, () => start(gate, clock, 'backfill', async () => order.push('b'))),
      ...Array.from({ length: 10 }, () => start(gate, clock, 'interactive', async () => order.push('i'))),
    ];
    await clock.advance(3000);
    expect(runs.every((r) => r.done)).toBe(true);
    // The first backfill item got the only token at once; after that interactive gets about 4 turns
    // in 5, and backfill is not starved.
    expect(order[0]).toBe('b');
    const next10 = order.slice(1, 11);
    expect(next10.filter((c) => c === 'i').length).toBeGreaterThanOrEqual(7);
    expect(next10.filter((c) => c === 'b').length).toBeGreaterThanOrEqual(1);
    expect(order.lastIndexOf('i')).toBeLessThan(15);
  });

  it('holds a class outside its scheduling window and releases it when the window opens', async () => {
    const { gate, clock } = setup({
      windows: { backfill: [{ start: '22:00', end: '06:00', timeZone: 'Europe/Berlin' }] },
    });
    const backfill = start(gate, clock, 'backfill', done);
    const interactive = start(gate, clock, 'interactive', done);
    await clock.advance(1000);
    expect(interactive.done).toBe(true);
    expect(backfill.attempts).toEqual([]);
    expect(gate.stats().queueDepthByClass).toEqual({ interactive: 0, backfill: 1 });
    await clock.advance(Date.parse('2025-01-15T21:00:00.000Z') - clock.now() - 1);
    expect(backfill.done).toBe(false);
    await clock.advance(60_001);
    expect(backfill.attempts).toHaveLength(1);
    expect(backfill.attempts[0]).toBeGreaterThanOrEqual(Date.parse('2025-01-15T21:00:00.000Z'));
    expect(backfill.attempts[0]).toBeLessThanOrEqual(Date.parse('2025-01-15T21:01:00.000Z'));
  });

  it('paces by the reported quota: slows down, holds non-interactive work at stopAt, and says so', async () => {
    const { gate, clock, events } = setup({ rate: 10, burst: 1 });
    const answer = (usage: string) => async () => ({ headers: new Headers({ 'Sforce-Limit-Info': usage }) });
    const first = start(gate, clock, 'interactive', answer('api-usage=8750/10000'));
    await clock.advance(1);
    expect(first.done).toBe(true);
    expect(gate.stats()).toMatchObject({ quotaUsage: 0.875, quotaMode: 'slow', rate: 5 });

    const explicit = start(gate, clock, 'interactive', async (ctx) => {
      ctx.observe({ 'sforce-limit-info': 'api-usage=9600/10000' });
      return 'ok';
    });
    await clock.advance(200);
    expect(explicit.done).toBe(true);
    expect(gate.stats()).toMatchObject({ quotaMode: 'stop', rate: 1 });
    expect(events).toContainEqual({
      type: 'quota',
      endpoint: 'crm-upsert',
      mode: 'stop',
      code: 'FLOW_QUOTA_HOLD',
    });

    const backfill = start(gate, clock, 'backfill', done);
    const interactive = start(gate, clock, 'interactive', done);
    await clock.advance(1000);
    expect(interactive.done).toBe(true);
    expect(backfill.attempts).toEqual([]);
    // Interactive work now runs at minRateFactor (1/s).
    const paced = [start(gate, clock, 'interactive', done), start(gate, clock, 'interactive', done)];
    await clock.advance(1000);
    expect(paced.filter((p) => p.done)).toHaveLength(1);
    await clock.advance(1000);
    expect(paced.filter((p) => p.done)).toHaveLength(2);
    // The rolling window recovers: the held work goes out.
    await clock.advance(10_000);
    const recovered = start(gate, clock, 'interactive', answer('api-usage=100/10000'));
    await clock.advance(60_000);
    expect(recovered.done).toBe(true);
    expect(backfill.done).toBe(true);
    expect(gate.stats().quotaMode).toBe('normal');
  });

  it('lets held backfill probe once the stop verdict is recheckMs old, and holds it again on a high count', async () => {
    const { gate, clock } = setup({ rate: 10, burst: 1, quota: { recheckMs: 60_000 } });
    const report = (usage: string) => async () => ({ headers: new Headers({ 'sforce-limit-info': usage }) });
    await Promise.all([gate.run('interactive', report('api-usage=9900/10000')), clock.advance(1)]);
    const probe = start(gate, clock, 'backfill', report('api-usage=9950/10000'));
    const after = start(gate, clock, 'backfill', done);
    await clock.advance(59_000);
    expect(probe.attempts).toEqual([]);
    await clock.advance(2_000);
    expect(probe.done).toBe(true);
    expect(after.attempts).toEqual([]);
    expect(gate.stats().quotaMode).toBe('stop');
    await clock.advance(60_000);
    expect(after.done).toBe(true);
  });

  it('holds every class after REQUEST_LIMIT_EXCEEDED until the recheck, then retries', async () => {
    const clock = new FakeClock(START);
    const shared = new QuotaPacer({
      slowDownAt: 0.8,
      stopAt: 0.95,
      minRateFactor: 0.1,
      recheckMs: 30_000,
      clock,
    });
    const { gate, events } = setup({ rate: 100, burst: 10 }, { quota: shared, clock });
    const other = setup({ rate: 100, burst: 10 }, { quota: shared, clock });
    let calls = 0;
    const limited = start(gate, clock, 'interactive', async () => {
      calls++;
      if (calls === 1) throw http(403, { codes: ['REQUEST_LIMIT_EXCEEDED'] });
      return 'ok';
    });
    await clock.advance(1);
    expect(calls).toBe(1);
    expect(gate.stats().quotaMode).toBe('hold');
    // The quota is per org: another endpoint sharing the pacer is held too.
    const elsewhere = start(other.gate, clock, 'interactive', done);
    await clock.advance(29_000);
    expect(calls).toBe(1);
    expect(elsewhere.attempts).toEqual([]);
    await clock.advance(1_100);
    expect(limited.result).toBe('ok');
    expect(limited.attempts[1]! - limited.attempts[0]!).toBeGreaterThanOrEqual(30_000);
    expect(elsewhere.done).toBe(true);
    expect(events).toContainEqual(expect.objectContaining({ type: 'retry', source: 'quota-hold' }));
    expect(events).toContainEqual({
      type: 'quota',
      endpoint: 'crm-upsert',
      mode: 'hold',
      code: 'FLOW_QUOTA_HOLD',
    });
  });

  it('dispatches as soon as a hold ends, even when it ends while the gate is deciding how long to sleep', async () => {
    // Real time moves while the gate works: here the pacer's clock gains a millisecond at every read, so
    // for one of these hold lengths the hold ends between "not eligible" and "how long until eligible".
    // The gate must then look again at once, not sleep its idle maximum (60 s).
    for (let recheckMs = 1; recheckMs <= 40; recheckMs++) {
      const clock = new FakeClock(START);
      let drift = 0;
      const pacer = new QuotaPacer({
        slowDownAt: 0.8,
        stopAt: 0.95,
        minRateFactor: 0.1,
        recheckMs,
        clock: { now: () => clock.now() + drift++, schedule: (ms, fn) => clock.schedule(ms, fn) },
      });
      const { gate } = setup({ rate: 100, burst: 10 }, { quota: pacer, clock });
      pacer.limitExceeded();
      const held = start(gate, clock, 'interactive', done);
      await clock.advance(1_000);
      expect({ recheckMs, done: held.done }).toEqual({ recheckMs, done: true });
      gate.close();
    }
  });

  it('never runs more calls at once than the adaptive limit, and shrinks it on overload', async () => {
    const { gate, clock } = setup({
      rate: 1000,
      burst: 100,
      concurrency: { min: 1, max: 4, initial: 4, decreaseFactor: 0.5 },
      retry: { maxAttempts: 1 },
    });
    let running = 0;
    let peak = 0;
    const releases: (() => void)[] = [];
    const slow = () =>
      new Promise<string>((resolve) => {
        running++;
        peak = Math.max(peak, running);
        releases.push(() => {
          running--;
          resolve('ok');
        });
      });
    const runs = Array.from({ length: 10 }, () => start(gate, clock, 'interactive', slow));
    await clock.advance(10);
    expect(gate.stats()).toMatchObject({ inFlight: 4, limit: 4, queueDepth: 6 });
    releases.shift()!();
    await clock.advance(10);
    expect(running).toBe(4);
    const overloaded = start(gate, clock, 'interactive', () => Promise.reject(http(503)));
    while (releases.length > 0) {
      releases.shift()!();
      await clock.advance(10);
    }
    await clock.advance(10);
    expect(peak).toBe(4);
    expect(runs.every((r) => r.done)).toBe(true);
    expect(overloaded.error).toBeInstanceOf(HttpStatusError);
    expect(gate.stats().limit).toBeLessThan(4);
    expect(gate.stats().waitMsTotal).toBeGreaterThan(0);
  });

  it("waits the server's Retry-After before retrying and pauses the endpoint meanwhile", async () => {
    const { gate, clock, events } = setup({ rate: 100, burst: 10 });
    let calls = 0;
    const throttled = start(gate, clock, 'interactive', async () => {
      calls++;
      if (calls === 1) throw http(429, { retryAfterMs: 1000 });
      return 'ok';
    });
    await clock.advance(1);
    const bystander = start(gate, clock, 'backfill', done);
    await clock.advance(990);
    expect(throttled.done).toBe(false);
    expect(bystander.attempts).toEqual([]);
    expect(gate.stats().pausedForMs).toBeGreaterThan(0);
    await clock.advance(20);
    expect(throttled.result).toBe('ok');
    expect(throttled.attempts[1]! - throttled.attempts[0]!).toBeGreaterThanOrEqual(1000);
    expect(bystander.done).toBe(true);
    expect(events).toContainEqual({
      type: 'retry',
      endpoint: 'crm-upsert',
      priority: 'interactive',
      attempt: 1,
      delayMs: 1000,
      source: 'retry-after',
    });
  });

  it('caps an absurd Retry-After and falls back to backoff without one', async () => {
    const { gate, clock } = setup({
      rate: 100,
      burst: 10,
      retry: { maxRetryAfterMs: 2000, baseMs: 100, maxMs: 1000, jitter: 'equal' },
    });
    let calls = 0;
    const run = start(gate, clock, 'interactive', async () => {
      calls++;
      if (calls === 1) throw http(429, { retryAfterMs: 300_000 });
      if (calls === 2) throw http(503);
      return 'ok';
    });
    await clock.advance(10_000);
    expect(run.result).toBe('ok');
    expect(run.attempts[1]! - run.attempts[0]!).toBe(2000);
    // Second retry: no Retry-After, equal jitter with random()=1 → the full ceiling 200 ms.
    expect(run.attempts[2]! - run.attempts[1]!).toBe(200);
  });

  it('gives up after maxAttempts with the last error, and never retries a client error', async () => {
    const { gate, clock } = setup({ retry: { maxAttempts: 3, baseMs: 10, maxMs: 10 } });
    const failing = start(gate, clock, 'interactive', () => Promise.reject(http(502)));
    const refused = start(gate, clock, 'interactive', () => Promise.reject(http(400)));
    await clock.advance(1000);
    expect(failing.attempts).toHaveLength(3);
    expect((failing.error as HttpStatusError).status).toBe(502);
    expect(refused.attempts).toHaveLength(1);
    expect((refused.error as HttpStatusError).status).toBe(400);
  });

  it('fails fast while the breaker is open, without calling the function', async () => {
    const { gate, clock, events } = setup({
      rate: 100,
      burst: 10,
      breaker: { consecutiveFailures: 2, halfOpenAfterMs: 60_000 },
      retry: { maxAttempts: 5, baseMs: 1, maxMs: 1 },
    });
    const failing = start(gate, clock, 'interactive', () => Promise.reject(http(500)));
    await clock.advance(100);
    expect(failing.attempts).toHaveLength(2);
    expect((failing.error as SluiceError).code).toBe('FLOW_CIRCUIT_OPEN');
    expect(gate.stats().breakerState).toBe('open');
    let called = false;
    await expect(
      gate.run('interactive', async () => {
        called = true;
      }),
    ).rejects.toMatchObject({ code: 'FLOW_CIRCUIT_OPEN', details: { endpoint: 'crm-upsert' } });
    expect(called).toBe(false);
    expect(events).toContainEqual({ type: 'breaker', endpoint: 'crm-upsert', state: 'open' });
  });

  it('bounds the queue and names unknown classes', async () => {
    const { gate, clock } = setup({ rate: 1, burst: 1, maxQueueDepth: 2 });
    // One goes out at once (the burst), two wait: the queue is full.
    const runs = Array.from({ length: 3 }, () => start(gate, clock, 'interactive', done));
    await settle();
    expect(runs[0]!.done).toBe(true);
    expect(gate.stats().queueDepth).toBe(2);
    await expect(gate.run('backfill', done)).rejects.toMatchObject({
      code: 'FLOW_QUEUE_FULL',
      details: { queueDepth: 2 },
    });
    await expect(gate.run('bulk', done)).rejects.toMatchObject({ code: 'FLOW_PRIORITY_UNKNOWN' });
    await clock.advance(2000);
    expect(runs.every((r) => r.done && r.error === undefined)).toBe(true);
    // Room again once the queue drains.
    await clock.advance(1000);
    await expect(gate.run('backfill', done)).resolves.toBe('done');
  });

  it('drops a cancelled call from the queue, and rejects everything waiting on close', async () => {
    const { gate, clock } = setup({ rate: 1, burst: 1 });
    start(gate, clock, 'interactive', done);
    const controller = new AbortController();
    const cancelled = start(gate, clock, 'interactive', done, controller.signal);
    const waiting = start(gate, clock, 'backfill', done);
    await settle();
    expect(gate.stats().queueDepth).toBe(2);
    controller.abort(new Error('caller cancelled'));
    await settle();
    expect((cancelled.error as Error).message).toBe('caller cancelled');
    expect(cancelled.attempts).toEqual([]);
    expect(gate.stats().queueDepth).toBe(1);
    gate.close();
    await settle();
    expect((waiting.error as SluiceError).code).toBe('ABORTED');
    await expect(gate.run('interactive', done)).rejects.toMatchObject({ code: 'ABORTED' });
  });
});
