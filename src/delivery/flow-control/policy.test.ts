import { describe, expect, it } from 'vitest';
import { SluiceError } from '../../core/errors/index.ts';
import {
  DEFAULT_THROTTLE_POLICY,
  parseThrottlePolicy,
  ThrottlePoliciesSchema,
  ThrottlePolicySchema,
} from './policy.ts';

function issuesOf(input: unknown): string[] {
  try {
    parseThrottlePolicy(input);
  } catch (err) {
    expect(err).toBeInstanceOf(SluiceError);
    expect((err as SluiceError).code).toBe('CFG_FLOW_INVALID');
    return [...((err as SluiceError).details.issues as readonly string[])];
  }
  throw new Error('expected the policy to be refused');
}

describe('throttle policy', () => {
  it('fills every part with conservative defaults', () => {
    expect(DEFAULT_THROTTLE_POLICY).toEqual({
      rate: 10,
      burst: 10,
      maxQueueDepth: 10_000,
      concurrency: { min: 1, max: 16, initial: 4, latencyTargetMs: 2000, decreaseFactor: 0.7 },
      retry: { maxAttempts: 5, baseMs: 250, maxMs: 30_000, jitter: 'full', maxRetryAfterMs: 120_000 },
      breaker: { samplingWindowMs: 30_000, minimumRps: 1, halfOpenAfterMs: 30_000 },
      priorities: {
        interactive: { weight: 4, interactive: true },
        backfill: { weight: 1, interactive: false },
      },
      windows: {},
      quota: { slowDownAt: 0.8, stopAt: 0.95, minRateFactor: 0.1, recheckMs: 300_000 },
    });
    // Defaults are fresh objects, not shared between parses.
    const a = ThrottlePolicySchema.parse({});
    const b = ThrottlePolicySchema.parse({});
    expect(a.priorities).not.toBe(b.priorities);
  });

  it('accepts a full policy with windows per class in a named time zone', () => {
    const policy = parseThrottlePolicy({
      rate: 40,
      burst: 5,
      concurrency: { min: 2, max: 20, initial: 5, latencyTargetMs: 1500 },
      retry: { maxAttempts: 3, baseMs: 100, maxMs: 5000, jitter: 'equal' },
      breaker: { failureRatio: 0.5, minimumRps: 2, halfOpenAfterMs: 10_000 },
      priorities: { interactive: { weight: 8, interactive: true }, backfill: { weight: 1 } },
      windows: { backfill: [{ start: '22:00', end: '06:00', timeZone: 'Europe/Berlin' }] },
      quota: { slowDownAt: 0.7, stopAt: 0.9 },
    });
    expect(policy.priorities.backfill).toEqual({ weight: 1, interactive: false });
    expect(policy.windows.backfill?.[0]?.timeZone).toBe('Europe/Berlin');
    expect(policy.breaker.consecutiveFailures).toBeUndefined();
    expect(policy.quota.recheckMs).toBe(300_000);
  });

  it('names each bad key by its dotted path', () => {
    const issues = issuesOf({
      rate: 0,
      burst: 0.5,
      concurrency: { min: 5, initial: 2 },
      retry: { baseMs: 10_000, maxMs: 100, jitter: 'none' },
      breaker: { consecutiveFailures: 3, failureRatio: 0.5 },
      windows: { nightly: [{ start: '25:00', end: '06:00', timeZone: 'Mars/Olympus' }] },
      quota: { slowDownAt: 0.95, stopAt: 0.9 },
      rateLimit: 4,
    });
    const paths = issues.map((i) => i.split(':')[0]);
    expect(paths).toEqual(
      expect.arrayContaining([
        'throttle.rate',
        'throttle.burst',
        'throttle.retry.jitter',
        'throttle.windows.nightly.0.start',
        'throttle.windows.nightly.0.timeZone',
        'throttle',
      ]),
    );
    expect(issues.some((i) => i.includes('rateLimit'))).toBe(true);
  });

  it('checks cross-field rules once the fields themselves are valid', () => {
    expect(issuesOf({ concurrency: { min: 5, initial: 2 } })).toEqual([
      'throttle.concurrency.initial: needs min <= initial <= max',
    ]);
    expect(issuesOf({ retry: { baseMs: 10_000, maxMs: 100 } })).toEqual([
      'throttle.retry.baseMs: needs baseMs <= maxMs',
    ]);
    expect(issuesOf({ breaker: { consecutiveFailures: 3, failureRatio: 0.5 } })).toEqual([
      'throttle.breaker.failureRatio: set consecutiveFailures or failureRatio, not both',
    ]);
    expect(issuesOf({ quota: { slowDownAt: 0.95, stopAt: 0.9 } })).toEqual([
      'throttle.quota.slowDownAt: needs slowDownAt < stopAt',
    ]);
    expect(issuesOf({ windows: { nightly: [{ start: '22:00', end: '06:00', timeZone: 'UTC' }] } })).toEqual([
      'throttle.windows.nightly: names a class that priorities does not define',
    ]);
    expect(issuesOf({ windows: { backfill: [{ start: '22:00', end: '22:00', timeZone: 'UTC' }] } })).toEqual([
      'throttle.windows.backfill.0.end: start and end must differ',
    ]);
    expect(issuesOf({ priorities: {} })).toEqual(['throttle.priorities: needs at least one class']);
    expect(issuesOf({ breaker: { failureRatio: 1 } })[0]).toMatch(/^throttle\.breaker\.failureRatio:/);
  });

  it('embeds as a map keyed by endpoint name', () => {
    const parsed = ThrottlePoliciesSchema.parse({ 'crm-upsert': { rate: 20 }, 'ehr-read': {} });
    expect(parsed['crm-upsert']?.rate).toBe(20);
    expect(parsed['ehr-read']?.rate).toBe(10);
    expect(ThrottlePoliciesSchema.safeParse({ 'CRM Upsert': {} }).success).toBe(false);
  });
});
