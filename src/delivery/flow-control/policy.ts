import { z } from 'zod';
import { SluiceError } from '../../core/errors/index.ts';

/**
 * The throttle policy of one target endpoint, as configuration. Every part has a default, so `{}` is
 * a valid, conservative policy; objects are strict so a misspelt key is an error. The flow-file schema
 * embeds `ThrottlePolicySchema` (or `ThrottlePoliciesSchema`, keyed by endpoint name).
 */

const className = z
  .string()
  .regex(/^[a-z][a-z0-9-]{0,31}$/, 'a lower-case class name (letters, digits, dashes; up to 32 characters)');

const timeOfDay = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'a 24-hour time of day HH:MM');

export function isTimeZone(value: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: value });
    return true;
  } catch {
    return false;
  }
}

/** A daily window in a named time zone; `start` after `end` spans midnight (22:00–06:00). */
export const WindowSchema = z
  .strictObject({
    start: timeOfDay.describe('Start, HH:MM.'),
    end: timeOfDay.describe('End, HH:MM; before `start` the window spans midnight.'),
    timeZone: z
      .string()
      .refine(isTimeZone, 'an IANA time zone such as Europe/Berlin or America/New_York')
      .describe('IANA time zone of `start` and `end`.'),
  })
  .refine((w) => w.start !== w.end, { message: 'start and end must differ', path: ['end'] });

export const PriorityClassSchema = z.strictObject({
  weight: z
    .number()
    .int()
    .min(1)
    .max(1000)
    .describe('Share of dispatches when several classes wait: weight 4 vs 1 gets four turns to one.'),
  interactive: z
    .boolean()
    .default(false)
    .describe('Interactive work keeps running (slowed) above `quota.stopAt`; other classes are held there.'),
});

const ConcurrencySchema = z
  .strictObject({
    min: z.number().int().min(1).max(1000).default(1).describe('Fewest requests in flight.'),
    max: z.number().int().min(1).max(1000).default(16).describe('Most requests in flight.'),
    initial: z.number().int().min(1).max(1000).default(4).describe('Requests in flight at the start.'),
    latencyTargetMs: z
      .number()
      .positive()
      .max(600_000)
      .default(2000)
      .describe('Responses slower than this count as overload and shrink the limit.'),
    decreaseFactor: z.number().gt(0).lt(1).default(0.7).describe('Multiplicative decrease on overload.'),
  })
  .refine((c) => c.min <= c.initial && c.initial <= c.max, {
    message: 'needs min <= initial <= max',
    path: ['initial'],
  });

const RetrySchema = z
  .strictObject({
    maxAttempts: z
      .number()
      .int()
      .min(1)
      .max(20)
      .default(5)
      .describe('Attempts in all, the first included; 1 disables retries.'),
    baseMs: z
      .number()
      .int()
      .min(1)
      .max(600_000)
      .default(250)
      .describe('Backoff before the first retry; it doubles with each attempt.'),
    maxMs: z.number().int().min(1).max(3_600_000).default(30_000).describe('Longest backoff.'),
    jitter: z
      .enum(['full', 'equal'])
      .default('full')
      .describe(
        '`full`: uniform in [0, c]; `equal`: uniform in [c/2, c], for c = min(maxMs, baseMs·2^(attempt-1)).',
      ),
    maxRetryAfterMs: z
      .number()
      .int()
      .min(0)
      .max(3_600_000)
      .default(120_000)
      .describe(
        "Upper bound on a server's Retry-After; a larger (or malformed epoch) value waits this long.",
      ),
  })
  .refine((r) => r.baseMs <= r.maxMs, { message: 'needs baseMs <= maxMs', path: ['baseMs'] });

const BreakerSchema = z
  .strictObject({
    consecutiveFailures: z
      .number()
      .int()
      .min(1)
      .max(1000)
      .optional()
      .describe('Opens after this many consecutive server failures (the default trip rule, 5).'),
    failureRatio: z
      .number()
      .gt(0)
      .lt(1)
      .optional()
      .describe(
        'Or: opens when this share of calls fails within `samplingWindowMs` (at `minimumRps` or more).',
      ),
    samplingWindowMs: z
      .number()
      .int()
      .min(1000)
      .max(3_600_000)
      .default(30_000)
      .describe('The window `failureRatio` is measured over.'),
    minimumRps: z
      .number()
      .min(0)
      .max(10_000)
      .default(1)
      .describe('Calls per second below which `failureRatio` does not open the breaker.'),
    halfOpenAfterMs: z
      .number()
      .int()
      .min(1)
      .max(86_400_000)
      .default(30_000)
      .describe('Cool-down before one probe call is let through.'),
  })
  .refine((b) => b.consecutiveFailures === undefined || b.failureRatio === undefined, {
    message: 'set consecutiveFailures or failureRatio, not both',
    path: ['failureRatio'],
  });

const QuotaSchema = z
  .strictObject({
    slowDownAt: z
      .number()
      .min(0)
      .max(1)
      .default(0.8)
      .describe('Usage ratio from which the rate is reduced proportionally to the remaining headroom.'),
    stopAt: z
      .number()
      .min(0)
      .max(1)
      .default(0.95)
      .describe('Usage ratio from which only interactive classes run (at `minRateFactor` of the rate).'),
    minRateFactor: z
      .number()
      .gt(0)
      .max(1)
      .default(0.1)
      .describe('The share of `rate` left at `stopAt` and above, for interactive classes.'),
    recheckMs: z
      .number()
      .int()
      .min(1)
      .max(86_400_000)
      .default(300_000)
      .describe('After a REQUEST_LIMIT_EXCEEDED answer every class waits this long before trying again.'),
  })
  .refine((q) => q.slowDownAt < q.stopAt, { message: 'needs slowDownAt < stopAt', path: ['slowDownAt'] });

export const DEFAULT_PRIORITIES = {
  interactive: { weight: 4, interactive: true },
  backfill: { weight: 1, interactive: false },
} as const;

const SharedRateSchema = z.strictObject({
  redis: z
    .string()
    .regex(/^rediss?:\/\/\S+$/, 'a redis:// or rediss:// URL')
    .describe('The Redis server that counts the shared rate. Credentials in the URL are never printed.'),
  key: z
    .string()
    .regex(/^[A-Za-z0-9._:-]{1,128}$/, 'letters, digits and . _ : - (at most 128)')
    .optional()
    .describe(
      "What the processes that share the rate have in common (e.g. the org's id); default: the target's base URL, hashed.",
    ),
  rate: z.number().positive().max(100_000).describe('Requests per second, all processes together.'),
  burst: z
    .number()
    .int()
    .min(1)
    .max(100_000)
    .default(1)
    .describe('Requests all processes together may send at once after an idle period.'),
});

export const ThrottlePolicySchema = z
  .strictObject({
    rate: z.number().positive().max(100_000).default(10).describe('Sustained requests per second.'),
    burst: z
      .number()
      .int()
      .min(1)
      .max(100_000)
      .default(10)
      .describe('Token bucket size: requests allowed at once after an idle period.'),
    maxQueueDepth: z
      .number()
      .int()
      .min(1)
      .max(1_000_000)
      .default(10_000)
      .describe('Deliveries that may wait for admission; more are refused (FLOW_QUEUE_FULL).'),
    concurrency: ConcurrencySchema.prefault({}).describe(
      'Adaptive concurrency: grows while responses are fast, shrinks on overload (slow answers, 429, 503).',
    ),
    retry: RetrySchema.prefault({}).describe(
      'Retries of failed requests (429, 5xx, network) with exponential backoff and jitter.',
    ),
    breaker: BreakerSchema.prefault({}).describe(
      'Circuit breaker on server failures; open, it holds every request until a probe succeeds.',
    ),
    priorities: z
      .record(className, PriorityClassSchema)
      .refine((p) => Object.keys(p).length > 0, 'needs at least one class')
      .default(() => structuredClone(DEFAULT_PRIORITIES))
      .describe('Priority classes by name (default: `interactive` weight 4, `backfill` weight 1).'),
    windows: z
      .record(className, z.array(WindowSchema).min(1))
      .default(() => ({}))
      .describe('Classes listed here run only inside one of their windows; unlisted classes run any time.'),
    quota: QuotaSchema.prefault({}).describe(
      "Pacing on the org's daily API quota, as the CRM reports it in Sforce-Limit-Info.",
    ),
    shared: SharedRateSchema.optional().describe(
      "A rate every Sluice process sending to the same org keeps together (all flows, all machines), counted in Redis; on top of each process's own `rate`. Redis unreachable: nothing is sent (FLOW_SHARED_LIMIT_UNAVAILABLE), the page is repeated by the next run.",
    ),
  })
  .superRefine((policy, ctx) => {
    for (const name of Object.keys(policy.windows)) {
      if (!Object.hasOwn(policy.priorities, name)) {
        ctx.addIssue({
          code: 'custom',
          message: `names a class that priorities does not define`,
          path: ['windows', name],
        });
      }
    }
  });

export type ThrottlePolicy = z.output<typeof ThrottlePolicySchema>;
export type ThrottlePolicyInput = z.input<typeof ThrottlePolicySchema>;
export type SchedulingWindow = z.output<typeof WindowSchema>;

/** Throttle policies keyed by endpoint name (e.g. `crm-upsert`, `ehr-read`). */
export const ThrottlePoliciesSchema = z.record(
  z.string().regex(/^[a-z][a-z0-9-]{0,63}$/, 'a lower-case endpoint name'),
  ThrottlePolicySchema,
);

export const DEFAULT_THROTTLE_POLICY: ThrottlePolicy = ThrottlePolicySchema.parse({});

/**
 * Validates a policy outside a flow file (tests, programmatic use). Fails with CFG_FLOW_INVALID
 * naming each bad key as a dotted path under `where`.
 */
export function parseThrottlePolicy(input: unknown, where = 'throttle'): ThrottlePolicy {
  const parsed = ThrottlePolicySchema.safeParse(input ?? {});
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.map((i) => `${[where, ...i.path.map(String)].join('.')}: ${i.message}`);
  throw new SluiceError('CFG_FLOW_INVALID', `The throttle policy is invalid: ${issues.join('; ')}.`, {
    details: { issues },
  });
}
