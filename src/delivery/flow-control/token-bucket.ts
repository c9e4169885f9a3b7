import { SluiceError } from '../../core/errors/index.ts';
import { abortReason, type Clock, systemClock } from './clock.ts';

export interface TokenBucketOptions {
  /** Tokens added per second. */
  readonly rate: number;
  /** Capacity: the most tokens that can be taken at once after an idle period. */
  readonly burst: number;
  /** Tokens at start; default `burst` (a fresh bucket allows one burst). */
  readonly initialTokens?: number;
  readonly clock?: Clock;
}

interface Waiter {
  readonly n: number;
  readonly resolve: () => void;
  readonly reject: (reason: unknown) => void;
  readonly signal: AbortSignal | undefined;
  readonly onAbort: () => void;
}

/** Slack for floating-point refill arithmetic (a token is never granted more than this early). */
const EPSILON = 1e-9;

/**
 * A token bucket with continuous refill. Grants in any interval of length T never exceed
 * `burst + rate·T`, and the long-run grant rate equals `rate` because refill is computed from elapsed
 * time, not from timer ticks (a late timer only delays a grant, it never loses tokens). Waiters are
 * served first come, first served; waiting is one timer for the head of the line, never polling.
 */
export class TokenBucket {
  readonly burst: number;
  readonly #clock: Clock;
  #rate: number;
  #tokens: number;
  #last: number;
  readonly #waiters: Waiter[] = [];
  #cancelTimer: (() => void) | undefined;

  constructor(options: TokenBucketOptions) {
    if (!(options.rate > 0) || !Number.isFinite(options.rate)) {
      throw new SluiceError('INTERNAL', 'A token bucket needs a positive, finite rate.');
    }
    if (!(options.burst >= 1) || !Number.isFinite(options.burst)) {
      throw new SluiceError('INTERNAL', 'A token bucket needs a burst of at least 1.');
    }
    this.burst = options.burst;
    this.#rate = options.rate;
    this.#clock = options.clock ?? systemClock;
    this.#tokens = Math.min(this.burst, Math.max(0, options.initialTokens ?? this.burst));
    this.#last = this.#clock.now();
  }

  get rate(): number {
    return this.#rate;
  }

  /** Changes the refill rate from now on (tokens earned so far keep the old rate). */
  setRate(rate: number): void {
    if (!(rate > 0) || !Number.isFinite(rate)) {
      throw new SluiceError('INTERNAL', 'A token bucket needs a positive, finite rate.');
    }
    this.#refill();
    this.#rate = rate;
    this.#drain();
  }

  /** Tokens available now (fractional). */
  available(): number {
    this.#refill();
    return this.#tokens;
  }

  /** Requests waiting in `take`. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /** Takes `n` tokens if they are there and nobody is waiting ahead; never waits. */
  tryTake(n = 1): boolean {
    this.#check(n);
    this.#refill();
    if (this.#waiters.length > 0 || this.#tokens + EPSILON < n) return false;
    this.#tokens = Math.max(0, this.#tokens - n);
    return true;
  }

  /** Milliseconds until `n` tokens will be available (0 if they are), ignoring other waiters. */
  msUntil(n = 1): number {
    this.#check(n);
    this.#refill();
    const missing = n - this.#tokens;
    return missing <= EPSILON ? 0 : (missing * 1000) / this.#rate;
  }

  /** Waits until `n` tokens are available, then takes them. Rejects with the signal's reason on abort. */
  take(n = 1, signal?: AbortSignal): Promise<void> {
    this.#check(n);
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    if (this.tryTake(n)) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        n,
        resolve,
        reject,
        signal,
        onAbort: () => {
          const index = this.#waiters.indexOf(waiter);
          if (index < 0) return;
          this.#waiters.splice(index, 1);
          reject(abortReason(signal));
          if (index === 0) this.#drain();
        },
      };
      signal?.addEventListener('abort', waiter.onAbort, { once: true });
      this.#waiters.push(waiter);
      if (this.#waiters.length === 1) this.#drain();
    });
  }

  #check(n: number): void {
    if (!(n > 0) || n > this.burst) {
      throw new SluiceError(
        'INTERNAL',
        `Cannot take ${n} tokens from a bucket of ${this.burst}: it could never be granted.`,
      );
    }
  }

  #refill(): void {
    const now = this.#clock.now();
    if (now > this.#last) {
      this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#last) * this.#rate) / 1000);
    }
    this.#last = Math.max(this.#last, now);
  }

  /** Grants to the head of the line while tokens last, then sleeps until the head can be served. */
  #drain(): void {
    this.#cancelTimer?.();
    this.#cancelTimer = undefined;
    this.#refill();
    for (;;) {
      const head = this.#waiters[0];
      if (!head) return;
      if (this.#tokens + EPSILON < head.n) break;
      this.#tokens = Math.max(0, this.#tokens - head.n);
      this.#waiters.shift();
      head.signal?.removeEventListener('abort', head.onAbort);
      head.resolve();
    }
    const head = this.#waiters[0];
    if (!head) return;
    const wait = Math.max(1, Math.ceil(((head.n - this.#tokens) * 1000) / this.#rate));
    this.#cancelTimer = this.#clock.schedule(wait, () => {
      this.#cancelTimer = undefined;
      this.#drain();
    });
  }
}
