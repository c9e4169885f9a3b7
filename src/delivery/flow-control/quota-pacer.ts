import { type Clock, systemClock } from './clock.ts';

export interface QuotaUsage {
  readonly used: number;
  readonly max: number;
}

/**
 * Reads `api-usage=N/M` from a Salesforce `Sforce-Limit-Info` header. Tolerates spaces, other keys
 * (`per-app-api-usage=…`) in any order, and either separator; anything unreadable is `undefined`
 * (the pacer keeps what it knew), never an error.
 */
export function parseSforceLimitInfo(value: string | null | undefined): QuotaUsage | undefined {
  if (typeof value !== 'string' || value.length > 4096) return undefined;
  for (const part of value.split(/[;,]/)) {
    const match = /^\s*api-usage\s*=\s*(\d{1,15})\s*\/\s*(\d{1,15})\s*$/i.exec(part);
    if (!match) continue;
    const used = Number(match[1]);
    const max = Number(match[2]);
    if (max > 0) return { used, max };
  }
  return undefined;
}

export type QuotaMode = 'normal' | 'slow' | 'stop' | 'hold';

export interface QuotaPacerOptions {
  readonly slowDownAt: number;
  readonly stopAt: number;
  readonly minRateFactor: number;
  readonly recheckMs: number;
  /**
   * Concurrent answers arrive out of order: a lower count reported within this many ms of a higher one
   * is an older answer and is ignored (the rolling quota only falls slowly). Default 10 s.
   */
  readonly reorderToleranceMs?: number;
  readonly clock?: Clock;
}

export interface QuotaReport {
  readonly mode: QuotaMode;
  /** used / max of the latest accepted report, when there is one. */
  readonly ratio: number | undefined;
  readonly used: number | undefined;
  readonly max: number | undefined;
  /** Share of the configured rate currently allowed. */
  readonly rateFactor: number;
  /** While `mode` is `hold`: epoch ms when the next attempt may go out. */
  readonly heldUntil: number | undefined;
}

/**
 * Paces deliveries against a target's rolling daily API quota. Below `slowDownAt` it does nothing;
 * from there the allowed rate falls in proportion to the headroom left before `stopAt`; from `stopAt`
 * only interactive classes run, at `minRateFactor`; a REQUEST_LIMIT_EXCEEDED answer holds every class
 * until `recheckMs` has passed. Once the last report is `recheckMs` old, calls probe at the minimum rate
 * so the count can recover (the quota is a rolling 24-hour window). One pacer may be shared by the gates of all endpoints of one org,
 * because the quota is per org.
 */
export class QuotaPacer {
  readonly #options: QuotaPacerOptions;
  readonly #clock: Clock;
  #usage: QuotaUsage | undefined;
  #observedAt = Number.NEGATIVE_INFINITY;
  #heldUntil: number | undefined;
  readonly #listeners = new Set<() => void>();

  constructor(options: QuotaPacerOptions) {
    this.#options = options;
    this.#clock = options.clock ?? systemClock;
  }

  /** Calls `fn` when the pacing may have changed (a new report, a hold). */
  onChange(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Feeds one `Sforce-Limit-Info` header; returns whether it was usable. */
  observeHeader(value: string | null | undefined): boolean {
    const usage = parseSforceLimitInfo(value);
    if (usage) this.observe(usage);
    return usage !== undefined;
  }

  observe(usage: QuotaUsage): void {
    const now = this.#clock.now();
    const previous = this.#usage;
    const tolerance = this.#options.reorderToleranceMs ?? 10_000;
    const stale =
      previous !== undefined &&
      usage.max === previous.max &&
      usage.used < previous.used &&
      now - this.#observedAt < tolerance;
    if (stale) return;
    this.#usage = { used: usage.used, max: usage.max };
    this.#observedAt = now;
    this.#emit();
  }

  /** The target answered REQUEST_LIMIT_EXCEEDED: hold everything until the recheck time. */
  limitExceeded(): void {
    const now = this.#clock.now();
    this.#heldUntil = Math.max(this.#heldUntil ?? 0, now + this.#options.recheckMs);
    if (this.#usage)
      this.#usage = { used: Math.max(this.#usage.used, this.#usage.max), max: this.#usage.max };
    this.#observedAt = now;
    this.#emit();
  }

  mode(): QuotaMode {
    const now = this.#clock.now();
    if (this.#heldUntil !== undefined && now < this.#heldUntil) return 'hold';
    const ratio = this.#ratio();
    if (ratio === undefined || ratio < this.#options.slowDownAt) return 'normal';
    if (ratio < this.#options.stopAt) return 'slow';
    // A `stop` verdict older than recheckMs lets calls probe at the minimum rate: only an answer can
    // bring a fresh count, and work that is held sends nothing that would.
    return now - this.#observedAt >= this.#options.recheckMs ? 'slow' : 'stop';
  }

  /** Share of the configured rate allowed now, in [minRateFactor, 1]. */
  rateFactor(): number {
    const { slowDownAt, stopAt, minRateFactor } = this.#options;
    const mode = this.mode();
    switch (mode) {
      case 'normal':
        return 1;
      case 'slow': {
        const headroom = (stopAt - (this.#ratio() ?? 0)) / (stopAt - slowDownAt);
        return Math.min(1, Math.max(minRateFactor, headroom));
      }
      case 'stop':
      case 'hold':
        return minRateFactor;
    }
  }

  /** Whether a call of this kind may go out now. */
  admits(interactive: boolean): boolean {
    const mode = this.mode();
    return mode === 'hold' ? false : mode === 'stop' ? interactive : true;
  }

  /** Milliseconds until a hold ends, or until a `stop` verdict is old enough to probe (0 otherwise). */
  msUntilRecheck(): number {
    const now = this.#clock.now();
    switch (this.mode()) {
      case 'hold':
        return Math.max(0, (this.#heldUntil ?? now) - now);
      case 'stop':
        return Math.max(0, this.#observedAt + this.#options.recheckMs - now);
      case 'normal':
      case 'slow':
        return 0;
    }
  }

  report(): QuotaReport {
    const mode = this.mode();
    return {
      mode,
      ratio: this.#ratio(),
      used: this.#usage?.used,
      max: this.#usage?.max,
      rateFactor: this.rateFactor(),
      heldUntil: mode === 'hold' ? this.#heldUntil : undefined,
    };
  }

  #ratio(): number | undefined {
    return this.#usage ? this.#usage.used / this.#usage.max : undefined;
  }

  #emit(): void {
    for (const fn of this.#listeners) fn();
  }
}
