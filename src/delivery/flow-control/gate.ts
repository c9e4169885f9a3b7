import { SluiceError } from '../../core/errors/index.ts';
import { AdaptiveLimiter, type LimitSignal, type Permit } from './adaptive-limit.ts';
import { type BreakerStateName, type BreakerStateStore, PersistentBreaker } from './breaker.ts';
import { abortReason, type Clock, sleep, systemClock } from './clock.ts';
import { classifyFailure, type Failure, type FailureKind, isRetryable, retryDelayMs } from './failure.ts';
import type { ThrottlePolicy } from './policy.ts';
import { WeightedQueue } from './priority-queue.ts';
import { type QuotaMode, QuotaPacer } from './quota-pacer.ts';
import type { SharedRate } from './shared-rate.ts';
import { TokenBucket } from './token-bucket.ts';
import { isOpen, msUntilOpen } from './windows.ts';

/** What the delivered function gets for one attempt. */
export interface AttemptContext {
  /** 1 for the first attempt. */
  readonly attempt: number;
  readonly priority: string;
  readonly signal: AbortSignal;
  /**
   * Feeds response headers to the quota pacer (`Sforce-Limit-Info`). A result with a `headers: Headers`
   * property (the HTTP layer's JsonResponse) is observed automatically.
   */
  observe(headers: Headers | Readonly<Record<string, string | undefined>>): void;
}

export type GateEvent =
  | {
      readonly type: 'dispatch';
      readonly endpoint: string;
      readonly priority: string;
      readonly attempt: number;
      readonly waitMs: number;
    }
  | {
      readonly type: 'attempt';
      readonly endpoint: string;
      readonly priority: string;
      readonly outcome: 'success' | FailureKind;
      readonly status: number | undefined;
      readonly latencyMs: number;
    }
  | {
      readonly type: 'retry';
      readonly endpoint: string;
      readonly priority: string;
      readonly attempt: number;
      readonly delayMs: number;
      readonly source: 'retry-after' | 'backoff' | 'quota-hold';
    }
  | {
      readonly type: 'rejected';
      readonly endpoint: string;
      readonly priority: string;
      readonly code: 'FLOW_QUEUE_FULL' | 'FLOW_CIRCUIT_OPEN';
    }
  /** Quota mode changes; `hold` and `stop` carry FLOW_QUOTA_HOLD (non-interactive work is held). */
  | {
      readonly type: 'quota';
      readonly endpoint: string;
      readonly mode: QuotaMode;
      readonly code: 'FLOW_QUOTA_HOLD' | undefined;
    }
  | { readonly type: 'breaker'; readonly endpoint: string; readonly state: BreakerStateName }
  | { readonly type: 'breaker-persist-failed'; readonly endpoint: string }
  | { readonly type: 'breaker-restore-refused'; readonly endpoint: string };

export interface DeliveryGateDeps {
  /** Endpoint name: breaker store key and metrics label (never a URL with identifiers in it). */
  readonly endpoint: string;
  readonly clock?: Clock;
  /** Jitter source; default Math.random. */
  readonly random?: () => number;
  readonly breakerStore?: BreakerStateStore;
  /** Share one pacer between the gates of one org (the daily quota is per org); default: the gate's own. */
  readonly quota?: QuotaPacer;
  /** A rate shared with other processes (`throttle.shared`): a turn is taken after admission, before each attempt. */
  readonly shared?: SharedRate;
  readonly onEvent?: (event: GateEvent) => void;
}

export interface GateStats {
  readonly endpoint: string;
  /** Calls waiting for admission (all classes). */
  readonly queueDepth: number;
  readonly queueDepthByClass: Readonly<Record<string, number>>;
  /** Calls sleeping before a retry (not in the queue). */
  readonly retrying: number;
  readonly inFlight: number;
  /** Current adaptive concurrency limit. */
  readonly limit: number;
  /** Total milliseconds calls have waited for admission. */
  readonly waitMsTotal: number;
  readonly tokens: number;
  /** Requests per second currently allowed (policy rate × quota factor). */
  readonly rate: number;
  readonly breakerState: BreakerStateName;
  /** used / max of the target's daily quota, when it reported one. */
  readonly quotaUsage: number | undefined;
  readonly quotaMode: QuotaMode;
  /** Milliseconds left of a server-requested pause (Retry-After on 429/503). */
  readonly pausedForMs: number;
}

export interface DeliveryGate {
  readonly endpoint: string;
  readonly policy: ThrottlePolicy;
  /**
   * Runs `fn` when the policy admits it, retrying transient failures. Resolves with its result or
   * rejects with its last error (FLOW_CIRCUIT_OPEN, FLOW_QUEUE_FULL, FLOW_PRIORITY_UNKNOWN of its own).
   * The promise settles only when the work is done, so a caller that awaits it is held back.
   */
  run<T>(priority: string, fn: (ctx: AttemptContext) => Promise<T>, signal?: AbortSignal): Promise<T>;
  stats(): GateStats;
  /** Stops the gate: waiting calls reject with ABORTED, timers stop, breaker state is saved. */
  close(): void;
}

interface Ticket {
  readonly cls: string;
  readonly enqueuedAt: number;
  readonly dispatch: (permit: Permit) => void;
  readonly fail: (err: unknown) => void;
}

/** The longest the dispatcher sleeps before re-checking windows and quota on its own. */
const MAX_IDLE_WAKE_MS = 60_000;

/**
 * Composes the flow-control parts for one target endpoint. Every attempt (first or retry) passes the
 * same admission path — weighted priority queue → scheduling window → quota pacer → token bucket →
 * adaptive concurrency — and then runs through the persistent circuit breaker. A single dispatcher
 * takes an item from the queue only when all of these admit it at once, so priorities hold even when
 * the rate limit is the bottleneck, and a retry spends a token like any request the server sees.
 * Retry waits (backoff or the server's Retry-After) are spent outside the queue; a 429/503 with
 * Retry-After also pauses the whole endpoint for that long.
 */
export function createDeliveryGate(policy: ThrottlePolicy, deps: DeliveryGateDeps): DeliveryGate {
  const endpoint = deps.endpoint;
  const clock = deps.clock ?? systemClock;
  const random = deps.random ?? Math.random;
  const emit = (event: GateEvent): void => deps.onEvent?.(event);
  const classes = policy.priorities;
  const queue = new WeightedQueue<Ticket>(
    Object.fromEntries(Object.entries(classes).map(([name, spec]) => [name, spec.weight])),
  );
  const bucket = new TokenBucket({ rate: policy.rate, burst: policy.burst, clock });
  const limiter = new AdaptiveLimiter({ ...policy.concurrency, clock });
  const pacer = deps.quota ?? new QuotaPacer({ ...policy.quota, clock });
  const breaker = new PersistentBreaker({
    endpoint,
    policy: policy.breaker,
    isFailure: (err) => classifyFailure(err).breakerFailure,
    ...(deps.breakerStore ? { store: deps.breakerStore } : {}),
    onEvent: (event) => {
      switch (event.type) {
        case 'state':
          emit({ type: 'breaker', endpoint, state: event.state });
          return;
        case 'restored':
          return;
        case 'restore-refused':
          emit({ type: 'breaker-restore-refused', endpoint });
          return;
        case 'persist-failed':
          emit({ type: 'breaker-persist-failed', endpoint });
          return;
      }
    },
  });
  const closing = new AbortController();

  let seq = 0;
  let waitMsTotal = 0;
  let retrying = 0;
  let pausedUntil = 0;
  let pumping = false;
  let cancelWake: (() => void) | undefined;
  let lastQuotaMode: QuotaMode = pacer.mode();

  const stopListening = [limiter.onCapacity(() => pump()), pacer.onChange(() => pump())];

  function noteQuotaMode(): void {
    const mode = pacer.mode();
    if (mode === lastQuotaMode) return;
    lastQuotaMode = mode;
    const held = mode === 'hold' || mode === 'stop';
    emit({ type: 'quota', endpoint, mode, code: held ? 'FLOW_QUOTA_HOLD' : undefined });
  }

  function syncRate(): void {
    const rate = policy.rate * pacer.rateFactor();
    if (Math.abs(rate - bucket.rate) > 1e-9) bucket.setRate(rate);
  }

  function eligible(cls: string, now: number): boolean {
    const spec = classes[cls];
    return spec !== undefined && isOpen(policy.windows[cls], now) && pacer.admits(spec.interactive);
  }

  /** How long until some waiting class may become eligible (windows open, quota hold ends). */
  function msUntilEligible(now: number): number {
    let best = MAX_IDLE_WAKE_MS;
    for (const cls of queue.waitingClasses()) {
      const spec = classes[cls];
      if (!spec) continue;
      const windowWait = msUntilOpen(policy.windows[cls], now);
      // Held for quota: until the hold ends or a `stop` verdict is old enough to probe (or a new report).
      const quotaWait = pacer.admits(spec.interactive) ? 0 : pacer.msUntilRecheck();
      // 0: the class became eligible since the pump looked (a hold or a window ended meanwhile): look
      // again at once (`wakeIn` waits at least 1 ms), never the idle maximum.
      best = Math.min(best, Math.max(windowWait, quotaWait));
    }
    return best;
  }

  function wakeIn(ms: number): void {
    cancelWake?.();
    cancelWake = clock.schedule(Math.max(1, Math.ceil(Math.min(ms, MAX_IDLE_WAKE_MS))), () => {
      cancelWake = undefined;
      pump();
    });
  }

  function circuitOpenError(retryInMs: number, cause?: unknown): SluiceError {
    return new SluiceError(
      'FLOW_CIRCUIT_OPEN',
      `The circuit breaker for endpoint ${endpoint} is open; a probe is allowed in ${Math.ceil(retryInMs / 1000)} s.`,
      { ...(cause === undefined ? {} : { cause }), details: { endpoint, retryInMs: Math.ceil(retryInMs) } },
    );
  }

  /** The dispatcher: admits as many queued calls as every stage allows right now, then sleeps. */
  function pump(): void {
    if (pumping || closing.signal.aborted) return;
    pumping = true;
    cancelWake?.();
    cancelWake = undefined;
    try {
      noteQuotaMode();
      syncRate();
      const openFor = breaker.retryInMs();
      if (openFor !== undefined && openFor > 0 && queue.size > 0) {
        for (const cls of queue.waitingClasses()) {
          for (let t = queue.shift((c) => c === cls); t; t = queue.shift((c) => c === cls)) {
            emit({ type: 'rejected', endpoint, priority: cls, code: 'FLOW_CIRCUIT_OPEN' });
            t.item.fail(circuitOpenError(openFor));
          }
        }
      }
      while (queue.size > 0) {
        const now = clock.now();
        if (pausedUntil > now) {
          wakeIn(pausedUntil - now);
          return;
        }
        const cls = queue.peekClass((c) => eligible(c, now));
        if (cls === undefined) {
          wakeIn(msUntilEligible(now));
          return;
        }
        if (limiter.inFlight >= limiter.limit) return; // woken by onCapacity
        if (!bucket.tryTake(1)) {
          wakeIn(bucket.msUntil(1));
          return;
        }
        const permit = limiter.tryAcquire();
        const next = queue.shift((c) => c === cls);
        if (!permit || !next) throw new SluiceError('INTERNAL', 'The delivery gate lost an admitted call.');
        const waitMs = Math.max(0, now - next.item.enqueuedAt);
        waitMsTotal += waitMs;
        next.item.dispatch(permit);
      }
    } finally {
      pumping = false;
    }
  }

  function admit(
    cls: string,
    order: number,
    signal: AbortSignal,
  ): Promise<{ permit: Permit; waitMs: number }> {
    return new Promise((resolve, reject) => {
      const enqueuedAt = clock.now();
      const onAbort = (): void => {
        if (queue.remove(cls, ticket)) {
          reject(abortReason(signal));
          pump();
        }
      };
      const ticket: Ticket = {
        cls,
        enqueuedAt,
        dispatch: (permit) => {
          signal.removeEventListener('abort', onAbort);
          resolve({ permit, waitMs: clock.now() - enqueuedAt });
        },
        fail: (err) => {
          signal.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      queue.push(cls, ticket, order);
      pump();
    });
  }

  function observeHeaders(headers: Headers | Readonly<Record<string, string | undefined>>): void {
    const value =
      headers instanceof Headers
        ? headers.get('sforce-limit-info')
        : Object.entries(headers).find(([k]) => k.toLowerCase() === 'sforce-limit-info')?.[1];
    if (value !== null && value !== undefined) pacer.observeHeader(value);
  }

  function limitSignal(failure: Failure): LimitSignal {
    return failure.kind === 'throttled' || failure.kind === 'server' ? 'overload' : 'ignore';
  }

  async function run<T>(
    priority: string,
    fn: (ctx: AttemptContext) => Promise<T>,
    callerSignal?: AbortSignal,
  ): Promise<T> {
    if (!queue.has(priority)) {
      throw new SluiceError(
        'FLOW_PRIORITY_UNKNOWN',
        `Endpoint ${endpoint} has no priority class "${priority}"; it defines ${Object.keys(classes).join(', ')}.`,
        { details: { endpoint, priority } },
      );
    }
    const signal = callerSignal ? AbortSignal.any([callerSignal, closing.signal]) : closing.signal;
    if (signal.aborted) throw abortReason(signal);
    const openFor = breaker.retryInMs();
    if (openFor !== undefined && openFor > 0) {
      emit({ type: 'rejected', endpoint, priority, code: 'FLOW_CIRCUIT_OPEN' });
      throw circuitOpenError(openFor);
    }
    if (queue.size >= policy.maxQueueDepth) {
      emit({ type: 'rejected', endpoint, priority, code: 'FLOW_QUEUE_FULL' });
      throw new SluiceError(
        'FLOW_QUEUE_FULL',
        `Endpoint ${endpoint} already has ${queue.size} calls waiting (maxQueueDepth ${policy.maxQueueDepth}).`,
        { details: { endpoint, priority, queueDepth: queue.size } },
      );
    }
    const order = seq++;
    for (let attempt = 1; ; attempt++) {
      const { permit, waitMs: admitted } = await admit(priority, order, signal);
      let waitMs = admitted;
      if (deps.shared) {
        // The turn all processes share: waited for holding this process's slot, counted as waiting.
        const before = clock.now();
        try {
          await deps.shared.take(signal);
        } catch (err) {
          permit.release('ignore');
          throw err;
        }
        const shared = clock.now() - before;
        waitMs += shared;
        waitMsTotal += shared;
      }
      emit({ type: 'dispatch', endpoint, priority, attempt, waitMs });
      const started = clock.now();
      const ctx: AttemptContext = { attempt, priority, signal, observe: observeHeaders };
      let failure: Failure;
      let error: unknown;
      try {
        const result = await breaker.execute(() => fn(ctx), signal);
        const latencyMs = clock.now() - started;
        // Observe the quota before releasing the slot, so the next dispatch already sees it.
        const headers = (result as { headers?: unknown } | null | undefined)?.headers;
        if (headers instanceof Headers) observeHeaders(headers);
        permit.release('success', latencyMs);
        emit({ type: 'attempt', endpoint, priority, outcome: 'success', status: undefined, latencyMs });
        return result;
      } catch (err) {
        error = err;
        failure = classifyFailure(err, signal);
        permit.release(limitSignal(failure));
        emit({
          type: 'attempt',
          endpoint,
          priority,
          outcome: failure.kind,
          status: failure.status,
          latencyMs: clock.now() - started,
        });
      }
      if (failure.kind === 'circuit-open') throw circuitOpenError(breaker.retryInMs() ?? 0, error);
      if (failure.kind === 'quota') pacer.limitExceeded();
      if (!isRetryable(failure) || attempt >= policy.retry.maxAttempts) throw error;
      const delay =
        failure.kind === 'quota'
          ? { ms: 0, source: 'quota-hold' as const }
          : retryDelayMs(failure, attempt, policy.retry, random);
      if (failure.kind === 'throttled' && delay.source === 'retry-after') {
        pausedUntil = Math.max(pausedUntil, clock.now() + delay.ms);
      }
      emit({ type: 'retry', endpoint, priority, attempt, delayMs: delay.ms, source: delay.source });
      if (delay.ms > 0) {
        retrying++;
        try {
          await sleep(clock, delay.ms, signal);
        } finally {
          retrying--;
        }
      }
    }
  }

  return {
    endpoint,
    policy,
    run,
    stats(): GateStats {
      const byClass: Record<string, number> = {};
      for (const cls of Object.keys(classes)) byClass[cls] = queue.sizeOf(cls);
      const quota = pacer.report();
      return {
        endpoint,
        queueDepth: queue.size,
        queueDepthByClass: byClass,
        retrying,
        inFlight: limiter.inFlight,
        limit: limiter.limit,
        waitMsTotal,
        tokens: bucket.available(),
        rate: policy.rate * quota.rateFactor,
        breakerState: breaker.state,
        quotaUsage: quota.ratio,
        quotaMode: quota.mode,
        pausedForMs: Math.max(0, pausedUntil - clock.now()),
      };
    },
    close(): void {
      if (closing.signal.aborted) return;
      closing.abort(new SluiceError('ABORTED', `The delivery gate for endpoint ${endpoint} was closed.`));
      cancelWake?.();
      for (const stop of stopListening) stop();
      breaker.save();
    },
  };
}
