import { SluiceError } from '../../core/errors/index.ts';
import { abortReason, type Clock, systemClock } from './clock.ts';

/**
 * What one finished call says about the endpoint's capacity:
 * - `success`: answered in time (slower than the latency target counts as `overload`);
 * - `overload`: 429, 503, 5xx, timeout, or a slow answer — shrink;
 * - `ignore`: says nothing about capacity (a 400 for a bad record, a cancelled call).
 */
export type LimitSignal = 'success' | 'overload' | 'ignore';

export interface Permit {
  /** Returns the slot; `latencyMs` turns a slow success into overload. Later calls are ignored. */
  release(signal: LimitSignal, latencyMs?: number): void;
}

export interface AdaptiveLimiterOptions {
  readonly min: number;
  readonly max: number;
  readonly initial: number;
  readonly latencyTargetMs: number;
  /** Multiplicative decrease factor in (0, 1); default 0.7. */
  readonly decreaseFactor?: number;
  readonly clock?: Clock;
}

interface Waiter {
  readonly since: number;
  readonly resolve: (permit: Permit) => void;
  readonly reject: (reason: unknown) => void;
  readonly signal: AbortSignal | undefined;
  readonly onAbort: () => void;
}

/**
 * An AIMD concurrency limit: each good answer while the limit is in use adds 1/limit (about +1 per
 * round of calls), each overload multiplies it by `decreaseFactor`, between `min` and `max`. Only one
 * decrease happens per "generation": calls that started before the last decrease cannot shrink the
 * limit again, so a burst of failures from one congested moment counts once, as in TCP.
 */
export class AdaptiveLimiter {
  readonly min: number;
  readonly max: number;
  readonly #target: number;
  readonly #factor: number;
  readonly #clock: Clock;
  #limit: number;
  #inFlight = 0;
  #generation = 0;
  #waitMsTotal = 0;
  readonly #waiters: Waiter[] = [];
  readonly #listeners = new Set<() => void>();

  constructor(options: AdaptiveLimiterOptions) {
    const { min, max, initial } = options;
    if (!(min >= 1 && min <= initial && initial <= max)) {
      throw new SluiceError('INTERNAL', 'An adaptive limit needs 1 <= min <= initial <= max.');
    }
    this.min = min;
    this.max = max;
    this.#limit = initial;
    this.#target = options.latencyTargetMs;
    this.#factor = options.decreaseFactor ?? 0.7;
    this.#clock = options.clock ?? systemClock;
  }

  /** Current concurrency limit (whole calls). */
  get limit(): number {
    return Math.floor(this.#limit);
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** Callers waiting in `acquire`. */
  get queueDepth(): number {
    return this.#waiters.length;
  }

  /** Total milliseconds callers have spent waiting in `acquire`. */
  get waitMsTotal(): number {
    return this.#waitMsTotal;
  }

  /** Calls `fn` whenever a slot frees up or the limit grows (the gate's dispatcher listens). */
  onCapacity(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** A slot now if one is free and nobody waits ahead; never waits. */
  tryAcquire(): Permit | undefined {
    if (this.#waiters.length > 0 || this.#inFlight >= this.limit) return undefined;
    return this.#grant();
  }

  /** Waits for a slot (first come, first served). Rejects with the signal's reason on abort. */
  acquire(signal?: AbortSignal): Promise<Permit> {
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    const now = this.tryAcquire();
    if (now) return Promise.resolve(now);
    return new Promise<Permit>((resolve, reject) => {
      const waiter: Waiter = {
        since: this.#clock.now(),
        resolve,
        reject,
        signal,
        onAbort: () => {
          const index = this.#waiters.indexOf(waiter);
          if (index < 0) return;
          this.#waiters.splice(index, 1);
          this.#waitMsTotal += this.#clock.now() - waiter.since;
          reject(abortReason(signal));
        },
      };
      signal?.addEventListener('abort', waiter.onAbort, { once: true });
      this.#waiters.push(waiter);
    });
  }

  #grant(): Permit {
    this.#inFlight++;
    const generation = this.#generation;
    // Growth only counts while the limit is in real use (at least half of it), not while the caller
    // sends less than it allows: an app-limited caller would otherwise inflate it to max unseen.
    const saturated = this.#inFlight * 2 >= this.#limit;
    let released = false;
    return {
      release: (signal, latencyMs) => {
        if (released) return;
        released = true;
        this.#inFlight--;
        const effective = signal === 'success' && latencyMs !== undefined && latencyMs > this.#target;
        this.#adjust(effective ? 'overload' : signal, generation, saturated);
        this.#wake();
      },
    };
  }

  #adjust(signal: LimitSignal, generation: number, saturated: boolean): void {
    switch (signal) {
      case 'success':
        if (saturated) this.#limit = Math.min(this.max, this.#limit + 1 / this.#limit);
        return;
      case 'overload':
        if (generation !== this.#generation) return;
        this.#limit = Math.max(this.min, this.#limit * this.#factor);
        this.#generation++;
        return;
      case 'ignore':
        return;
    }
  }

  #wake(): void {
    while (this.#waiters.length > 0 && this.#inFlight < this.limit) {
      const waiter = this.#waiters.shift()!;
      waiter.signal?.removeEventListener('abort', waiter.onAbort);
      this.#waitMsTotal += this.#clock.now() - waiter.since;
      waiter.resolve(this.#grant());
    }
    if (this.#inFlight < this.limit) for (const fn of this.#listeners) fn();
  }
}
