import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FakeClock } from './fake-clock.ts';
import { parseSforceLimitInfo, QuotaPacer } from './quota-pacer.ts';

const config = { slowDownAt: 0.8, stopAt: 0.95, minRateFactor: 0.1, recheckMs: 60_000 };

describe('parseSforceLimitInfo', () => {
  it('reads api-usage in the forms Salesforce sends', () => {
    expect(parseSforceLimitInfo('api-usage=123/15000')).toEqual({ used: 123, max: 15000 });
    expect(parseSforceLimitInfo('  api-usage = 123 / 15000  ')).toEqual({ used: 123, max: 15000 });
    expect(parseSforceLimitInfo('per-app-api-usage=17/250(appName=sample-app), api-usage=18/5000')).toEqual({
      used: 18,
      max: 5000,
    });
    expect(parseSforceLimitInfo('API-Usage=1/2; other=3/4')).toEqual({ used: 1, max: 2 });
    // Salesforce lets an org run slightly over its allocation.
    expect(parseSforceLimitInfo('api-usage=15010/15000')).toEqual({ used: 15010, max: 15000 });
  });

  it('returns undefined for garbage instead of throwing', () => {
    for (const bad of [
      null,
      undefined,
      '',
      'api-usage',
      'api-usage=',
      'api-usage=abc/100',
      'api-usage=5/0',
      'api-usage=-5/100',
      'api-usage=1.5/100',
      'api-usage=5/100/7',
      'per-app-api-usage=17/250',
      'xapi-usage=1/2',
      `api-usage=${'9'.repeat(5000)}/1`,
    ]) {
      expect(parseSforceLimitInfo(bad)).toBeUndefined();
    }
  });

  it('property: never throws on arbitrary input', () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        const r = parseSforceLimitInfo(s);
        if (r) expect(r.max).toBeGreaterThan(0);
      }),
    );
  });
});

describe('QuotaPacer', () => {
  it('runs at full rate without a report and below slowDownAt', () => {
    const pacer = new QuotaPacer({ ...config, clock: new FakeClock() });
    expect(pacer.mode()).toBe('normal');
    expect(pacer.rateFactor()).toBe(1);
    pacer.observe({ used: 7999, max: 10_000 });
    expect(pacer.rateFactor()).toBe(1);
    expect(pacer.admits(false)).toBe(true);
  });

  it('reduces the rate in proportion to the headroom left between slowDownAt and stopAt', () => {
    const pacer = new QuotaPacer({ ...config, clock: new FakeClock() });
    pacer.observeHeader('api-usage=8750/10000');
    expect(pacer.mode()).toBe('slow');
    expect(pacer.rateFactor()).toBeCloseTo(0.5, 9);
    pacer.observeHeader('api-usage=9350/10000');
    expect(pacer.rateFactor()).toBeCloseTo(0.1, 9);
    expect(pacer.admits(false)).toBe(true);
  });

  it('holds non-interactive work from stopAt and lets interactive work through slowly', () => {
    const pacer = new QuotaPacer({ ...config, clock: new FakeClock() });
    pacer.observeHeader('api-usage=9500/10000');
    expect(pacer.mode()).toBe('stop');
    expect(pacer.admits(false)).toBe(false);
    expect(pacer.admits(true)).toBe(true);
    expect(pacer.rateFactor()).toBe(0.1);
    expect(pacer.report()).toMatchObject({ mode: 'stop', ratio: 0.95, used: 9500, max: 10_000 });
  });

  it('ignores an older, lower report that arrives late, but follows the rolling window down later', async () => {
    const clock = new FakeClock();
    const pacer = new QuotaPacer({ ...config, clock, reorderToleranceMs: 10_000 });
    pacer.observeHeader('api-usage=9600/10000');
    pacer.observeHeader('api-usage=9100/10000');
    expect(pacer.mode()).toBe('stop');
    await clock.advance(10_000);
    pacer.observeHeader('api-usage=7000/10000');
    expect(pacer.mode()).toBe('normal');
    // A raised allocation is taken at once.
    pacer.observeHeader('api-usage=9600/10000');
    pacer.observeHeader('api-usage=9601/100000');
    expect(pacer.mode()).toBe('normal');
  });

  it('keeps what it knew when a header is unreadable', () => {
    const pacer = new QuotaPacer({ ...config, clock: new FakeClock() });
    pacer.observeHeader('api-usage=9000/10000');
    expect(pacer.observeHeader('api-usage=lots')).toBe(false);
    expect(pacer.report().used).toBe(9000);
  });

  it('holds every class after REQUEST_LIMIT_EXCEEDED until the recheck, then only interactive work', async () => {
    const clock = new FakeClock();
    const pacer = new QuotaPacer({ ...config, clock });
    let changes = 0;
    pacer.onChange(() => changes++);
    pacer.observeHeader('api-usage=5000/10000');
    pacer.limitExceeded();
    expect(changes).toBe(2);
    expect(pacer.mode()).toBe('hold');
    expect(pacer.admits(true)).toBe(false);
    expect(pacer.msUntilRecheck()).toBe(60_000);
    expect(pacer.report().heldUntil).toBe(clock.now() + 60_000);
    await clock.advance(59_999);
    expect(pacer.mode()).toBe('hold');
    await clock.advance(1);
    // The hold is over: one call may probe, at the minimum rate, to learn the current count.
    expect(pacer.mode()).toBe('slow');
    expect(pacer.rateFactor()).toBe(0.1);
    expect(pacer.admits(false)).toBe(true);
    pacer.observeHeader('api-usage=10000/10000');
    expect(pacer.mode()).toBe('stop');
    pacer.observeHeader('api-usage=100/10000');
    expect(pacer.mode()).toBe('stop'); // a lower count right after a higher one is an older answer
    await clock.advance(10_000);
    pacer.observeHeader('api-usage=100/10000');
    expect(pacer.mode()).toBe('normal');
  });

  it('lets held work probe once a stop verdict is recheckMs old, so a quiet flow is not held forever', async () => {
    const clock = new FakeClock();
    const pacer = new QuotaPacer({ ...config, clock });
    pacer.observeHeader('api-usage=9900/10000');
    expect(pacer.admits(false)).toBe(false);
    expect(pacer.msUntilRecheck()).toBe(60_000);
    await clock.advance(60_000);
    expect(pacer.admits(false)).toBe(true);
    expect(pacer.rateFactor()).toBe(0.1);
    pacer.observeHeader('api-usage=9950/10000');
    expect(pacer.admits(false)).toBe(false);
  });

  it('property: the rate factor never rises as usage rises, and stays in [minRateFactor, 1]', () => {
    fc.assert(
      fc.property(fc.nat({ max: 12_000 }), fc.nat({ max: 12_000 }), (a, b) => {
        const [low, high] = a <= b ? [a, b] : [b, a];
        const factor = (used: number): number => {
          const pacer = new QuotaPacer({ ...config, clock: new FakeClock() });
          pacer.observe({ used, max: 10_000 });
          return pacer.rateFactor();
        };
        expect(factor(high)).toBeLessThanOrEqual(factor(low));
        expect(factor(high)).toBeGreaterThanOrEqual(config.minRateFactor);
        expect(factor(low)).toBeLessThanOrEqual(1);
      }),
    );
  });
});
